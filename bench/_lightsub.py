"""Light subscriber clients: real ICE and DTLS, then SRTP datagrams counted without unprotecting.

A light client is an aiortc ``RTCPeerConnection`` (so ICE, DTLS and the SRTP keys are real) whose
UDP socket is taken over once created: a non-blocking ``recvmsg`` reader with kernel receive
timestamps (``SO_TIMESTAMPNS``) reads every datagram; STUN and DTLS go on to aioice and aiortc as
before (so consent checks are answered and the handshake completes), while SRTP and SRTCP are only
counted from their clear-text headers. Per media stream it keeps the packet count, the highest
extended sequence number (loss = sequence span - packets received), marker bits (video frames), and
unprotects one packet in ``SAMPLE_EVERY`` to check that the stream is valid SRTP. The unprotected
samples also give, through the payload's tail (see ``_media``), the offset between the SFU's
sequence numbers and the publisher's, after which every arriving packet updates the
``FanoutClock``: the latest arrival of each publisher packet over all subscribers.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from array import array
from dataclasses import dataclass

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RCVBUF = 4 * 2**20
SAMPLE_EVERY = 50
_TS = struct.Struct("qq")


class FanoutClock:
    """Per publisher stream: when each publisher packet (by its sequence number) was sent, and the
    latest kernel arrival of it at any subscriber, and how many subscribers received it."""

    __slots__ = ("sent", "last", "count", "seq_of_index")

    def __init__(self, loop_len: int) -> None:
        self.sent = array("d", bytes(8 * 65536))
        self.last = array("d", bytes(8 * 65536))
        self.count = array("H", bytes(2 * 65536))
        self.seq_of_index = array("l", [-1]) * loop_len  # loop index -> latest publisher seq

    def on_send(self, seq: int, index: int, t: float) -> None:
        self.sent[seq] = t
        self.last[seq] = 0.0
        self.count[seq] = 0
        self.seq_of_index[index] = seq

    def delays(self, t0: float, t1: float, receivers: int) -> tuple[list[float], int, int]:
        """(last-arrival delays in seconds of packets sent in [t0, t1) and received by all
        ``receivers``, packets sent in the window, packets some receiver missed)."""
        out: list[float] = []
        sent = missed = 0
        for seq in range(65536):
            ts = self.sent[seq]
            if t0 <= ts < t1:
                sent += 1
                if self.count[seq] >= receivers:
                    out.append(self.last[seq] - ts)
                else:
                    missed += 1
        return out, sent, missed


class StreamCount:
    """Counters for one received RTP stream (one payload type on one subscriber)."""

    __slots__ = ("kind", "clock", "received", "max_ext", "markers", "dups", "late", "offset",
                 "offset_changes", "sampled", "bad", "since_sample")

    def __init__(self, kind: str | None = None, clock: FanoutClock | None = None) -> None:
        self.kind = kind
        self.clock = clock
        self.received = 0
        self.max_ext = -1  # extended (unwrapped) highest sequence number seen
        self.markers = 0
        self.dups = 0
        self.late = 0  # older than the highest seen (reordered, or a retransmission)
        self.offset = -1  # (subscriber seq - publisher seq) mod 2**16, once learnt
        self.offset_changes = 0
        self.sampled = 0
        self.bad = 0
        self.since_sample = SAMPLE_EVERY  # so that the first packet is sampled

    def add(self, seq: int, marker: int) -> None:
        self.received += 1
        self.markers += marker
        m = self.max_ext
        if m < 0:
            self.max_ext = seq + 65536
            return
        delta = (seq - m) & 0xFFFF
        if delta == 0:
            self.dups += 1
        elif delta < 0x8000:
            self.max_ext = m + delta
        else:
            self.late += 1

    def snapshot(self) -> tuple[int, int, int]:
        return self.received, self.max_ext, self.markers

    def learn_offset(self, seq: int, pub_seq: int) -> None:
        off = (seq - pub_seq) & 0xFFFF
        if self.offset != off:
            if self.offset >= 0:
                self.offset_changes += 1
            self.offset = off


def window_counts(a: tuple[int, int, int], b: tuple[int, int, int]) -> dict:
    """Packets received, expected (sequence span) and lost, and frames, between two snapshots."""
    received = b[0] - a[0]
    expected = (b[1] - a[1]) if a[1] >= 0 else received
    return {"received": received, "expected": expected, "lost": max(0, expected - received),
            "frames": b[2] - a[2]}


@dataclass
class Kinds:
    """What the light clients need to know about the streams: payload type -> (kind, clock, keys)."""

    by_pt: dict[int, str]
    keys: dict[str, dict[bytes, int]]
    clocks: dict[str, FanoutClock]


class LightSubscriber:
    """Takes over the UDP socket of one aiortc peer connection and counts what arrives."""

    def __init__(self, name: str, pc, kinds: Kinds) -> None:
        self.name = name
        self.pc = pc
        self.kinds = kinds
        self.streams: dict[int, StreamCount] = {}  # by SSRC
        self.rtcp = 0
        self.other = 0
        self._sock: socket.socket | None = None
        self._proto = None
        self._srtp = None
        self._loop = asyncio.get_running_loop()

    # -- set-up --------------------------------------------------------------------------------
    def hijack(self) -> None:
        """Install the reader on the connection's only UDP socket (call after setLocalDescription)."""
        ice = self.pc.getTransceivers()[0].receiver.transport.transport
        conn = ice._connection
        protos = list(conn._protocols)
        if len(protos) != 1:
            raise RuntimeError(f"expected one local candidate (127.0.0.1), found {len(protos)}")
        proto = protos[0]
        fd = proto.transport.get_extra_info("socket").fileno()
        sock = socket.socket(fileno=socket.dup(fd))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        try:  # room for a keyframe train even if this process is not scheduled for a while
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self._loop._remove_reader(fd)  # asyncio's transport stops reading this socket
        self._loop.add_reader(sock.fileno(), self._readable)
        self._sock, self._proto = sock, proto

    @property
    def port(self) -> int | None:
        return self._sock.getsockname()[1] if self._sock is not None else None

    def close(self) -> None:
        if self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    # -- hot path ------------------------------------------------------------------------------
    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recvmsg = sock.recvmsg
        streams = self.streams
        while True:
            try:
                data, anc, _flags, addr = recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            b0 = data[0] if data else 0
            if 127 < b0 < 192 and len(data) >= 12:
                b1 = data[1]
                if 191 < b1 < 224:  # RTCP (SR, SDES, ...): payload types 200-206 with M set
                    self.rtcp += 1
                    continue
                ssrc = int.from_bytes(data[8:12], "big")
                st = streams.get(ssrc)
                if st is None:
                    kind = self.kinds.by_pt.get(b1 & 0x7F)
                    st = streams[ssrc] = StreamCount(kind, self.kinds.clocks.get(kind))
                seq = (data[2] << 8) | data[3]
                st.add(seq, b1 >> 7)
                st.since_sample += 1
                if st.since_sample >= SAMPLE_EVERY or st.offset < 0:
                    st.since_sample = 0
                    self._sample(st, seq, data)
                off = st.offset
                if off >= 0 and anc:
                    clock = st.clock
                    sec, nsec = _TS.unpack(anc[0][2])
                    t = sec + nsec * 1e-9
                    ps = (seq - off) & 0xFFFF
                    if t > clock.last[ps]:
                        clock.last[ps] = t
                    clock.count[ps] += 1
            else:
                # STUN (consent checks) and DTLS go on to aioice / aiortc as if nothing happened
                self.other += 1
                self._proto.datagram_received(data, addr)

    def _sample(self, st: StreamCount, seq: int, data: bytes) -> None:
        if self._srtp is None:
            dtls = self.pc.getTransceivers()[0].receiver.transport
            self._srtp = dtls._rx_srtp
            if self._srtp is None:
                return
        st.sampled += 1
        try:
            clear = self._srtp.unprotect(data)
        except Exception:
            st.bad += 1
            return
        if st.kind is None:
            return
        index = self.kinds.keys[st.kind].get(clear[-8:])
        if index is None:
            return
        pub_seq = st.clock.seq_of_index[index]
        if pub_seq >= 0:
            st.learn_offset(seq, pub_seq)

    # -- reporting -----------------------------------------------------------------------------
    def snapshot(self) -> dict[int, tuple[int, int, int]]:
        return {ssrc: st.snapshot() for ssrc, st in self.streams.items()}
