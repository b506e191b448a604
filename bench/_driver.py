"""One benchmark run against one SFU: publisher + N light subscribers in this process, the SFU in
another, measured from /proc. Prints one JSON object. Started by ``bench/forwarding.py`` inside its
private network namespace (run it directly only inside one)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import RTCPeerConnection, RTCSessionDescription

from bench._lightsub import FanoutClock, Kinds, LightSubscriber, window_counts
from bench._media import CACHE_DIR, load_or_build
from bench._publisher import Publisher, restrict_loopback, sdp_sections, section_info

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- /proc ---------------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def udp_errors() -> dict[str, int]:
    with open("/proc/net/snmp") as f:
        lines = [ln.split() for ln in f if ln.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=False))


def loadavg() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def udp_drops_by_port() -> dict[int, int]:
    """Per local UDP port, the datagrams the kernel dropped for a full receive buffer (this netns)."""
    out: dict[int, int] = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            parts = line.split()
            port = int(parts[1].split(":")[1], 16)
            out[port] = out.get(port, 0) + int(parts[-1])
    return out


def self_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def spread(values: list[float], digits: int = 2) -> dict:
    if not values:
        return {}
    return {"min": round(min(values), digits), "p50": round(statistics.median(values), digits),
            "max": round(max(values), digits)}


# -- run -----------------------------------------------------------------------------------------
async def connect_subscriber(target, i: int, clocks, media, join_ms: list[float]) -> LightSubscriber:
    t = time.monotonic()
    offer, answer_cb = await target.subscribe()
    pc = RTCPeerConnection()
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    by_pt: dict[int, str] = {}
    for s in map(section_info, sdp_sections(offer)):
        if "vp8" in s["pts"]:
            by_pt[s["pts"]["vp8"]] = "video"
        if "opus" in s["pts"]:
            by_pt[s["pts"]["opus"]] = "audio"
    kinds = Kinds(by_pt=by_pt, keys={"video": media.video_keys, "audio": media.audio_keys}, clocks=clocks)
    sub = LightSubscriber(f"sub{i}", pc, kinds)
    sub.hijack()
    await answer_cb(pc.localDescription.sdp)
    deadline = time.monotonic() + 30
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise RuntimeError(f"subscriber {i}: connection {pc.connectionState}")
        await asyncio.sleep(0.02)
    join_ms.append((time.monotonic() - t) * 1000)
    return sub


async def run(target, n: int, seconds: float, warmup: float, concurrency: int, pacing: float,
              profile: bool = False, workdir: Path | None = None) -> dict:
    restrict_loopback()
    media = load_or_build()
    clocks = {"video": FanoutClock(media.video_packets_per_loop), "audio": FanoutClock(len(media.audio))}
    out: dict = {"target": target.name, "n": n, "publisher_pacing": f"{pacing:g} x 1 Mbps" if pacing else "none (bursts)"}
    await target.start()
    subs: list[LightSubscriber] = []
    pub = Publisher(media, clocks, pace_bps=pacing * media.params["br"])
    try:
        out["sfu"] = target.describe()
        answer = await target.publish(await pub.offer())
        await pub.accept(answer)
        pub.start()
        await asyncio.sleep(1.5)
        pid = target.pid
        rss0 = proc_rss_bytes(pid)

        join_ms: list[float] = []
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                subs.append(await connect_subscriber(target, i, clocks, media, join_ms))

        t_join = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        join_total = time.monotonic() - t_join
        await asyncio.sleep(warmup)

        # -- the steady window --
        if hasattr(target, "mark"):
            await target.mark()
        snaps0 = [s.snapshot() for s in subs]
        cpu0, self0, mach0, udp0 = proc_cpu_seconds(pid), self_cpu_seconds(), machine_busy_seconds(), udp_errors()
        drops0 = udp_drops_by_port()
        sent0 = dict(pub.sent)
        w0 = time.time()
        m0 = time.monotonic()
        profiler = None
        if profile:
            from bench._profile import Profiler

            profiler = Profiler("c" if target.name == "janus" else "python", pid, seconds,
                                (workdir or CACHE_DIR) / "profile")
            await profiler.start()
        await asyncio.sleep(seconds)
        snaps1 = [s.snapshot() for s in subs]
        cpu1, self1, mach1, udp1 = proc_cpu_seconds(pid), self_cpu_seconds(), machine_busy_seconds(), udp_errors()
        drops1 = udp_drops_by_port()
        client_ports = {s.port for s in subs}
        sent1 = dict(pub.sent)
        w1 = time.time()
        window = time.monotonic() - m0
        rss1 = proc_rss_bytes(pid)
        if hasattr(target, "stats"):
            try:
                own = await target.stats()
                out["sfu_own_counters"] = own.get("counters", own) if isinstance(own, dict) else own
                if isinstance(own, dict) and "fanout" in own:
                    out["sfu_fanout"] = own["fanout"]  # "c" (the compiled loop) or "python"
                if isinstance(own, dict) and "gc" in own:
                    out["sfu_gc_pauses"] = own["gc"]  # per generation, in the window
            except Exception as e:
                out["sfu_own_counters"] = {"error": str(e)}
        await asyncio.sleep(0.5)  # let the last packets of the window arrive before reading delays
        if profiler:
            out["profile"] = await profiler.finish()
    finally:
        await pub.stop() if pub.pc.connectionState != "closed" else None
        for s in subs:
            s.close()
        await asyncio.gather(*(s.pc.close() for s in subs), return_exceptions=True)
        await target.stop()

    # -- figures --
    per_kind: dict[str, dict] = {k: {"received": 0, "expected": 0, "lost": 0, "frames": 0} for k in ("video", "audio")}
    pps: dict[str, list[float]] = {"video": [], "audio": []}
    fps: list[float] = []
    subs_with_loss = 0
    samples = bad = offset_changes = no_offset = 0
    for sub, a, b in zip(subs, snaps0, snaps1, strict=True):
        lost_here = 0
        seen = set()
        for ssrc, snap1 in b.items():
            st = sub.streams[ssrc]
            kind = st.kind
            if kind is None:
                continue
            c = window_counts(a.get(ssrc, (0, -1, 0)), snap1)
            if c["received"] == 0:
                continue
            seen.add(kind)
            for key in per_kind[kind]:
                per_kind[kind][key] += c[key]
            pps[kind].append(c["received"] / window)
            if kind == "video":
                fps.append(c["frames"] / window)
            lost_here += c["lost"]
            samples += st.sampled
            bad += st.bad
            offset_changes += st.offset_changes
            no_offset += st.offset < 0
        for kind in ("video", "audio"):
            if kind not in seen:
                pps[kind].append(0.0)
                if kind == "video":
                    fps.append(0.0)
        subs_with_loss += lost_here > 0
    delivered = per_kind["video"]["received"] + per_kind["audio"]["received"]
    expected = per_kind["video"]["expected"] + per_kind["audio"]["expected"]
    pub_sent = {k: sent1[k] - sent0[k] for k in sent0}
    cpu = cpu1 - cpu0
    busy = mach1[0] - mach0[0]
    delays: dict[str, dict] = {}
    for kind, clock in clocks.items():
        d, nsent, missed = clock.delays(w0, w1 - 0.3, n)
        d_ms = [x * 1000 for x in d]
        delays[kind] = {"p50": _r(pct(d_ms, 50), 3), "p99": _r(pct(d_ms, 99), 3), "max": _r(max(d_ms) if d_ms else None, 3),
                        "packets": len(d_ms), "missed_by_some": missed}
    out.update({
        "window_s": round(window, 2),
        "sfu_pid_cpu": {
            "cpu_s": round(cpu, 2),
            "cores": round(cpu / window, 3),
            "us_per_forwarded_packet": _r(cpu * 1e6 / delivered, 2) if delivered else None,
            "ms_per_subscriber_second": _r(cpu * 1000 / (n * window), 3) if n else None,
            "rss_mb_before_subscribers": round(rss0 / 2**20, 1),
            "rss_mb_after": round(rss1 / 2**20, 1),
            "rss_kb_per_subscriber": _r((rss1 - rss0) / 1024 / n, 1) if n else None,
        },
        "delivery": {
            "forwarded_packets": delivered,
            "expected_packets": expected,
            "publisher_sent": pub_sent,
            "publisher_fps": round(pub_sent["video_frames"] / window, 2),
            "loss_pct": _r(100 * (expected - delivered) / expected, 4) if expected else None,
            # independent of the SFU's sequence numbering (window edges make it differ by ~0.1 %)
            "delivered_vs_publisher_pct": _r(100 * delivered / (n * (pub_sent["video"] + pub_sent["audio"])), 2)
            if n and pub_sent["video"] + pub_sent["audio"] else None,
            "subscribers_with_loss": subs_with_loss,
            "video": per_kind["video"],
            "audio": per_kind["audio"],
            "video_pps_per_subscriber": spread(pps["video"], 1),
            "audio_pps_per_subscriber": spread(pps["audio"], 1),
            "video_fps_per_subscriber": spread(fps, 2),
            "subscribers_below_29_5_fps": sum(1 for f in fps if f < 29.5),
            "srtp_sampled": samples, "srtp_unprotect_failures": bad,
            "streams_without_seq_mapping": no_offset, "seq_mapping_changes": offset_changes,
        },
        "fanout_delay_ms": delays,
        "join": {"total_s": round(join_total, 2), "p50_ms": _r(pct(join_ms, 50), 1), "p99_ms": _r(pct(join_ms, 99), 1)},
        "noise": {
            "machine_busy_cores": round(busy / window, 3),
            "driver_cores": round((self1 - self0) / window, 3),
            "other_cores": round((busy - cpu - (self1 - self0)) / window, 3),
            "udp_rcvbuf_errors": udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
            "udp_sndbuf_errors": udp1.get("SndbufErrors", 0) - udp0.get("SndbufErrors", 0),
            "udp_drops_at_light_clients": sum(v - drops0.get(p, 0) for p, v in drops1.items() if p in client_ports),
            "udp_drops_at_sfu_sockets": sum(v - drops0.get(p, 0) for p, v in drops1.items() if p not in client_ports),
            "loadavg": loadavg(),
        },
    })
    return out


def _r(v, digits):
    return None if v is None else round(v, digits)


def make_target(name: str, workdir: Path):
    cores = os.cpu_count() or 1
    if name == "janus":
        from bench._janus import JanusTarget

        return JanusTarget(workdir / "janus", cores)
    if name == "confsvc":
        from bench._confsvc import ConfsvcTarget

        return ConfsvcTarget(workdir / "confsvc")
    raise SystemExit(f"unknown target {name!r}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--pacing", type=float, default=2.5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the SFU's config and log folder")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    workdir = CACHE_DIR / f"run-{os.getpid()}"
    target = make_target(args.target, workdir)
    try:
        result = asyncio.run(run(target, args.n, args.seconds, args.warmup, args.concurrency, args.pacing,
                                 args.profile, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
