"""Micro-benchmark of the media plane's per-packet path, without ICE/DTLS set-up.

One video Producer fans out to N slots, each bound to its own SRTP session and UDP socket.
Packets enter through Ingress.handle (the same entry as the transport tap), so the figure covers
parse, cache, header rewrite, SRTP protect and send (the C fan-out when built, else Python;
``--python`` forces the Python loop for an A/B of the two).

Two modes:
- default: as fast as possible, to a 127.0.0.1 socket that never reads (pure send-path cost);
- ``--readers K``: N receiving sockets read by K other processes (asyncio, like light
  subscribers), packets paced like a 1 Mbps 30 fps publisher (frames of --ppf packets, --gap
  seconds apart). Here the kernel's wake-up of the receiver is part of each send.

It prints one JSON object; with --profile it also writes a cProfile table to stderr.

    python bench/forwarding_micro.py --n 50 --packets 4000
    python bench/forwarding_micro.py --n 50 --packets 600 --readers 4 --python
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing as mp
import os
import pstats
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pylibsrtp import Policy, Session  # noqa: E402

from confsvc.media import forwarder  # noqa: E402
from confsvc.media.counters import Counters  # noqa: E402
from confsvc.media.forwarder import Producer, Slot  # noqa: E402
from confsvc.media.hooks import Sink, fast_protect  # noqa: E402
from confsvc.media.ingress import Ingress  # noqa: E402

PROFILES = {  # name: (libsrtp profile, key+salt length)
    "cm": (Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 30),
    "gcm": (Policy.SRTP_PROFILE_AEAD_AES_256_GCM, 44),  # what aiortc negotiates first
}
SRTP = "cm"
CONNECT = False


def make_sink(sock: socket.socket, addr: tuple[str, int]) -> Sink:
    """A hooks.Sink on ``sock`` with an SRTP session like aiortc's (profile as --srtp)."""
    profile, keylen = PROFILES[SRTP]
    policy = Policy(key=os.urandom(keylen), ssrc_type=Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
    policy.allow_repeat_tx = True  # as aiortc sets it
    policy.window_size = 1024
    if CONNECT:
        sock.connect(addr)
    return Sink.udp(Session(policy), sock, addr, CONNECT)


def vp8_packets(count: int, payload_size: int, pkts_per_frame: int = 4) -> list[bytes]:
    out = []
    seq, ts, pid = 1000, 90000, 300
    for i in range(count):
        first = i % pkts_per_frame == 0
        last = i % pkts_per_frame == pkts_per_frame - 1
        key = first and (i // pkts_per_frame) % 60 == 0
        desc = bytes((0x90 if first else 0x80, 0x80)) + struct.pack("!H", 0x8000 | pid)
        body = bytes(((0 if key else 1),)) + b"\x00" * (payload_size - 1) if first else b"\x55" * payload_size
        ext = bytes((0x10, ord("0"), 0x32, 1, 2, 3, 0, 0))  # mid "0", abs-send-time, padding
        hdr = struct.pack("!BBHII", 0x90, (0x80 if last else 0) | 96, seq & 0xFFFF, ts, 0x1234) + \
            b"\xbe\xde" + struct.pack("!H", len(ext) // 4) + ext
        out.append(hdr + desc + body)
        seq += 1
        if last:
            ts += 3000
            pid = (pid + 1) & 0x7FFF
    return out


def _reader(count: int, ports: mp.Queue, stop: mp.Event) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class Count(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple) -> None:
                pass

        got = []
        for _ in range(count):
            _t, _p = await loop.create_datagram_endpoint(Count, local_addr=("127.0.0.1", 0))
            got.append(_t.get_extra_info("sockname"))
        ports.put(got)
        await loop.run_in_executor(None, stop.wait)

    asyncio.run(main())


def run(n: int, packets: int, payload: int, profile: bool, readers: int = 0,
        ppf: int = 4, gap: float = 0.0038) -> dict:
    counters = Counters()
    ing = Ingress(counters)
    ing.mid_id, ing.abs_id = 1, 3
    prod = Producer(None, "video", "0", 90000, counters=counters)
    ing.add_producer(prod, 96, 97, 0x1234, 0x5678)
    sink_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink_sock.bind(("127.0.0.1", 0))
    sink_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    addr = sink_sock.getsockname()
    addrs = [addr] * n
    procs = []
    stop = mp.Event()
    if readers:
        q: mp.Queue = mp.Queue()
        per = [n // readers + (1 if i < n % readers else 0) for i in range(readers)]
        procs = [mp.Process(target=_reader, args=(c, q, stop), daemon=True) for c in per]
        for pr in procs:
            pr.start()
        addrs = sum((q.get() for _ in procs), [])
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
        slot = Slot(None, "stage", "video", "0", 0x10000 + i, 97, 90000, counters=counters)
        slot.bind(make_sink(s, tuple(addrs[i])))
        slot.target = prod
        prod.slots.append(slot)
        slot.producer = prod
        slot.started = True
    data = vp8_packets(packets + 200, payload, ppf)
    warm = data[:200]
    for d in warm:
        ing.handle(d)
    data = data[200:]
    prof = cProfile.Profile() if profile else None
    spent: list[float] = []  # paced mode: wall time of each ingress packet (fan-out, sends included)
    c0 = time.process_time()
    w0 = time.perf_counter()
    if prof:
        prof.enable()
    if readers:
        # paced: a frame every 1/30 s, its packets `gap` apart
        start = time.perf_counter()
        for i, d in enumerate(data):
            frame, k = divmod(i, ppf)
            due = start + frame / 30 + k * gap
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            ing.handle(d)
            spent.append(time.perf_counter() - t0)
    else:
        for d in data:
            ing.handle(d)
    if prof:
        prof.disable()
    cpu = time.process_time() - c0
    wall = time.perf_counter() - w0
    forwarded = len(data) * n

    # the parts, measured alone on the same packet size
    sample = data[5]
    spare = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sess = make_sink(spare, addr).session
    spare.close()
    k = 20000
    t0 = time.process_time()
    fp = fast_protect(sess)
    for _ in range(k):
        fp(sample)
    srtp_us = (time.process_time() - t0) / k * 1e6
    t0 = time.process_time()
    send = socks[0].sendto
    out = sess.protect(sample)
    for _ in range(k):
        try:
            send(out, addr)
        except OSError:
            pass
    send_us = (time.process_time() - t0) / k * 1e6
    result = {
        "subscribers": n,
        "srtp_profile": SRTP,
        "packets_in": len(data),
        "payload_bytes": payload,
        "forwarded": forwarded,
        "send_errors": counters.send_errors,
        "cpu_us_per_forwarded_packet": round(cpu / forwarded * 1e6, 3),
        "wall_us_per_forwarded_packet": round(wall / forwarded * 1e6, 3),
        "srtp_protect_us": round(srtp_us, 3),
        "sendto_us": round(send_us, 3),
        "python_overhead_us": round(cpu / forwarded * 1e6 - srtp_us - send_us, 3),
        "readers": readers,
        "paced": bool(readers),
        "c_fanout": forwarder._c_fanout is not None,
        "handle_ms": _spread_ms(spent),
        "connected_sockets": CONNECT,
        "packets_per_frame": ppf,
        "profiled": profile,
    }
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
        print(buf.getvalue(), file=sys.stderr)
    for s in socks:
        s.close()
    sink_sock.close()
    stop.set()
    for pr in procs:
        pr.join(5)
    return result


def _spread_ms(values: list[float]) -> dict | None:
    if not values:
        return None
    v = sorted(values)
    return {q: round(v[min(len(v) - 1, int(p * len(v)))] * 1000, 3) for q, p in (("p50", 0.5), ("p99", 0.99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="subscribers (slots)")
    ap.add_argument("--packets", type=int, default=3000)
    ap.add_argument("--payload", type=int, default=1100)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--srtp", choices=sorted(PROFILES), default="cm")
    ap.add_argument("--connect", action="store_true", help="connect() each socket (MediaConfig.connect_udp)")
    ap.add_argument("--readers", type=int, default=0, help="reader processes (0: a socket that never reads)")
    ap.add_argument("--python", action="store_true", help="the Python fan-out loop, not the C one")
    ap.add_argument("--ppf", type=int, default=4, help="packets per frame")
    ap.add_argument("--gap", type=float, default=0.0038, help="publisher pacing between packets (s)")
    args = ap.parse_args()
    global SRTP, CONNECT
    SRTP = args.srtp
    CONNECT = args.connect
    if args.python:
        forwarder._c_fanout = None
    print(json.dumps(run(args.n, args.packets, args.payload, args.profile, args.readers, args.ppf, args.gap)))


if __name__ == "__main__":
    main()
