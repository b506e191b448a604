"""Producers, slots and the per-packet path.

A :class:`Producer` is one incoming track. Each incoming packet is parsed once into a
:class:`Packet` (shared by every slot: payload, and the extension elements that are the same for
all subscribers), put in the producer's :class:`PacketCache`, and written to each slot that
carries the producer. A :class:`Slot` owns what differs per subscriber: SSRC, payload type, MID,
and the offsets that keep sequence number, timestamp, VP8 picture id and TL0PICIDX continuous
across switches and dropped packets.

Offsets, not per-packet bookkeeping: a slot never records what it last sent. The last value out
is always ``producer.max_x + slot.x_off`` (a skipped packet decrements the offset), so a switch
can compute the continuation, and the hot loop only adds and packs.

Hooks for issue 4 (layers, temporal caps, allocator): ``Producer.layer`` / ``width`` / ``height``,
``Slot.max_tid`` (packets of higher temporal layers are skipped with seq/picture-id continuity),
``Slot.paused`` (video stops, nothing else changes), ``Slot.retarget`` to another layer's producer.
"""

from __future__ import annotations

import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from confsvc.media import hooks
from confsvc.media.cache import PacketCache
from confsvc.media.counters import Counters
from confsvc.media.keyframes import KeyframeThrottle
from confsvc.media.rtp import Vp8Info, pad4, seq_newer, vp8_rewrite

if hooks.FANOUT is not None:
    # the compiled fan-out (confsvc/media/_fanout.c): Slot's hot fields are C members of Egress
    _Egress: type = hooks.FANOUT.Egress
    _c_fanout: Callable[..., tuple[int, int, list[Any] | None]] | None = hooks.FANOUT.fanout
else:  # pragma: no cover - only where the extension could not be built
    logging.getLogger(__name__).warning(
        "confsvc.media: the compiled fan-out (confsvc/media/_fanout.c) is not built; forwarding "
        "runs in Python (same output, about 1.5x the CPU per packet). pip install -e . builds it.")

    class _Egress:  # the same attributes as plain ones; every packet takes the Python loop
        egress_bound = False

        def egress_bind(self, *args: Any) -> None:
            pass

        def egress_unbind(self) -> None:
            pass

    _c_fanout = None

C_FANOUT = _c_fanout is not None

# extension ids of the node's own offers (aiortc's HEADER_EXTENSIONS; checked in room.py)
MID_ID = 1
AUDIO_LEVEL_ID = 2
ABS_SEND_TIME_ID = 3

_U16 = struct.Struct("!H")
_MAX_EPOCHS = 64


class Packet:
    """One incoming media packet, parsed once, shared by every slot."""

    __slots__ = ("seq", "ts", "m", "arrival", "keyframe", "start", "tid", "pid", "tl0", "vp8",
                 "payload", "ext", "tail", "size", "late")

    def __init__(self, seq: int, ts: int, marker: int, arrival: float, payload: bytes, ext: bytes) -> None:
        self.seq = seq
        self.ts = ts
        self.m = 0x80 if marker else 0
        self.arrival = arrival
        self.keyframe = False
        self.start = True
        self.tid = 0
        self.pid = -1
        self.tl0 = -1
        self.vp8: Vp8Info | None = None
        self.payload = payload
        self.ext = ext  # extension elements common to every slot, padded to 4 bytes
        self.tail = ext + payload
        self.size = len(payload)
        self.late = False


class Producer:
    """One incoming track of a participant (for video: one layer)."""

    def __init__(
        self,
        owner: Any,
        kind: str,
        mid: str,
        clock: int,
        *,
        counters: Counters,
        cache_size: int = 1024,
        keyframe_cache: int = 800,
        pli_interval: float = 0.5,
        layer: int = 0,
    ) -> None:
        self.owner = owner  # the publishing Participant (or a test stand-in)
        self.kind = kind
        self.mid = mid
        self.clock = clock
        self.layer = layer
        self.ssrc = 0
        self.rtx_ssrc = 0
        self.pt = -1
        self.rtx_pt = -1
        self.counters = counters
        self.cache = PacketCache(cache_size, keyframe_cache) if kind == "video" else PacketCache(64, 1)
        self.slots: list[Slot] = []  # slots carrying this producer
        self.waiting: list[Slot] = []  # slots switching to this producer at its next keyframe
        self.keyframes = KeyframeThrottle(pli_interval)
        self.request_keyframe_upstream: Callable[[Producer], None] = lambda p: None
        # highest in-order packet (the base of every slot's continuation)
        self.started = False
        self.max_seq = 0
        self.max_ts = 0
        self.max_pid = 0
        self.max_tl0 = 0
        self.last_arrival = 0.0
        self.base_seq = 0
        self.cycles = 0
        # RTCP: the publisher's latest sender report (its NTP seconds, RTP ts, our time of arrival)
        self.sr_ntp = 0.0
        self.sr_rtp = 0
        self.sr_local = 0.0
        self.sr_lsr = 0
        self.has_sr = False
        # what the stream is
        self.width = 0
        self.height = 0
        self.level = 127  # last audio level
        # layers (issue 4): what the publisher declared, and what the room's ticker measures
        self.rid = ""
        self.max_kbps = 0
        self.temporal = 0  # temporal layers: declared, else seen in the packet cache (0: unknown)
        self.frames = 0
        self.bitrate = 0.0  # bits/s on the wire, smoothed (measured per tick, not per packet)
        self.fps = 0.0
        self.measured_for = 0.0  # seconds of measurement behind bitrate/fps
        self._meas: tuple[float, int, int, int] | None = None  # (time, bytes, packets, frames)
        # counters
        self.packets = 0
        self.bytes = 0
        self.lost_upstream = 0
        self.missing: dict[int, list[float]] = {}  # seq -> [first noticed, tries] for upstream NACK

    # -- ingress ---------------------------------------------------------------------------

    def push(self, pkt: Packet) -> None:
        """A parsed packet from the publisher: cache it and forward it to every slot."""
        self.packets += 1
        self.bytes += pkt.size
        if pkt.m:
            self.frames += 1
        if not self.started:
            self.started = True
            self.base_seq = pkt.seq
            self._advance(pkt)
        elif seq_newer(pkt.seq, self.max_seq):
            gap = (pkt.seq - self.max_seq) & 0xFFFF
            if gap > 1 and self.kind == "video" and gap < 200:
                now = pkt.arrival
                if len(self.missing) > 512:  # bounded even if nobody sends the NACKs
                    self.lost_upstream += len(self.missing)
                    self.missing.clear()
                for i in range(1, gap):
                    self.missing[(self.max_seq + i) & 0xFFFF] = [now, 0.0]
            if pkt.seq < self.max_seq:
                self.cycles += 0x10000
            self._advance(pkt)
        else:
            if self.cache.get(pkt.seq) is not None:
                self.counters.late_in += 1  # a duplicate: already forwarded
                return
            pkt.late = True
            self.counters.late_in += 1
            self.missing.pop(pkt.seq, None)
        self.cache.add(pkt)
        if pkt.keyframe:
            self.counters.keyframes_in += 1
            self.keyframes.keyframe_arrived()
            if pkt.vp8 is not None and pkt.vp8.width:
                self.width, self.height = pkt.vp8.width, pkt.vp8.height
        if self.waiting and (pkt.keyframe or self.kind == "audio") and not pkt.late:
            self._attach_waiting(pkt)
        self.forward(pkt)

    def _advance(self, pkt: Packet) -> None:
        self.max_seq = pkt.seq
        self.max_ts = pkt.ts
        self.last_arrival = pkt.arrival
        if pkt.pid >= 0:
            self.max_pid = pkt.pid
        if pkt.tl0 >= 0:
            self.max_tl0 = pkt.tl0

    def skip(self, pkt: Packet) -> None:
        """A packet no slot must see (padding-only): keep every slot's output gapless."""
        if not self.started:
            self.started = True
            self.base_seq = pkt.seq
        if seq_newer(pkt.seq, self.max_seq) or self.packets == 0:
            self.max_seq = pkt.seq
            for s in self.slots:
                s.seq_off -= 1
                s._new_epoch(self, (pkt.seq + 1) & 0xFFFF)

    def forward(self, pkt: Packet) -> None:
        """The hot path: per slot one header rewrite, one SRTP protect and one send. The common
        case runs in C (``_fanout.fanout``: every slot bound to a UDP socket, no VP8 rewrite, within
        its temporal cap); the slots it hands back, late packets, and everything where the
        extension is not built take the Python loop below, which writes the same bytes."""
        slots = self.slots
        if not slots:
            return
        sent = errors = 0
        if _c_fanout is not None and not pkt.late:
            sent, errors, rest = _c_fanout(slots, pkt.m, pkt.seq, pkt.ts, pkt.tid, pkt.tail, pkt.size)
            if rest is None:
                c = self.counters
                c.rtp_out += sent
                c.rtp_out_bytes += sent * pkt.size
                if errors:
                    c.send_errors += errors
                return
            slots = rest
        seq = pkt.seq
        ts = pkt.ts
        m = pkt.m
        tail = pkt.tail
        size = pkt.size
        late = pkt.late
        tid = pkt.tid
        for s in slots:
            if late or tid > s.max_tid or s.rewrite:
                if not s.special(pkt):
                    continue
                data = s.last_built
            else:
                data = s.hdr_pack(0x90, s.pt | m, (seq + s.seq_off) & 0xFFFF, (ts + s.ts_off) & 0xFFFFFFFF,
                                  s.ssrc, s.prefix) + tail
            try:
                data = s.protect(data)
            except Exception:  # noqa: BLE001 - a closed sink never stops the others
                errors += 1
                continue
            s.packets += 1
            s.octets += size
            sent += 1
            try:
                s.send(data)
            except Exception:  # noqa: BLE001 - a full socket buffer never stops the others
                errors += 1
        c = self.counters
        c.rtp_out += sent
        c.rtp_out_bytes += sent * size
        c.send_errors += errors

    def close(self) -> None:
        self.slots.clear()
        self.waiting.clear()
        self.cache.clear()

    def _attach_waiting(self, pkt: Packet) -> None:
        waiting, self.waiting = self.waiting, []
        for s in waiting:
            if s.pending is self:
                s.attach(self, pkt)

    # -- RTCP bookkeeping --------------------------------------------------------------------

    def on_sender_report(self, ntp: int, rtp_ts: int, now: float) -> None:
        self.sr_ntp = ntp / 4294967296.0
        self.sr_rtp = rtp_ts
        self.sr_local = now
        self.sr_lsr = (ntp >> 16) & 0xFFFFFFFF
        self.has_sr = True

    def rtp_at(self, wall: float, clock_offset: float | None) -> int | None:
        """The producer's RTP timestamp for wall-clock time ``wall`` (Unix seconds), from the
        publisher's sender report mapped onto our clock with the publisher's ``clock_offset``
        (same offset for all its producers, so audio/video alignment is kept exactly)."""
        if not self.has_sr or clock_offset is None:
            return None
        pub_time = wall - clock_offset  # the publisher's NTP seconds at our `wall`
        return (self.sr_rtp + int(round((pub_time - self.sr_ntp) * self.clock))) & 0xFFFFFFFF

    def measure(self, now: float, tau: float = 1.5, overhead: int = 60) -> None:
        """Per tick: update the smoothed bitrate (payload plus ``overhead`` bytes of RTP/SRTP/UDP/IP
        per packet) and frame rate from the counters since the last call."""
        m = self._meas
        self._meas = (now, self.bytes, self.packets, self.frames)
        if m is None:
            return
        dt = now - m[0]
        if dt <= 0:
            return
        rate = ((self.bytes - m[1]) + (self.packets - m[2]) * overhead) * 8 / dt
        fps = (self.frames - m[3]) / dt
        a = min(1.0, dt / tau) if self.measured_for else 1.0
        self.bitrate += a * (rate - self.bitrate)
        self.fps += a * (fps - self.fps)
        self.measured_for += dt

    def seen_temporal_layers(self) -> int:
        """Temporal layers seen among the cached packets (a per-tick scan, not a per-packet test)."""
        top = -1
        for pkt in self.cache._ring:
            if pkt is not None and pkt.tid > top:
                top = pkt.tid
                if top >= 2:
                    break
        return top + 1

    @property
    def packets_expected(self) -> int:
        return self.cycles + ((self.max_seq - self.base_seq) & 0xFFFF) + 1 if self.started else 0

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "mid": self.mid, "layer": self.layer, "ssrc": self.ssrc,
            "packets": self.packets, "bytes": self.bytes, "width": self.width, "height": self.height,
            "slots": len(self.slots), "waiting": len(self.waiting), "rid": self.rid,
            "max_kbps": self.max_kbps, "temporal_layers": self.temporal,
            "bitrate_bps": int(self.bitrate), "fps": round(self.fps, 1),
            "plis_sent": self.keyframes.sent, "plis_throttled": self.keyframes.throttled,
        }


class Slot(_Egress):
    """One outgoing track to one subscriber; retargetable without renegotiation.

    Its base, ``_fanout.Egress``, holds the fields the C fan-out reads (seq_off, ts_off, ssrc, pt,
    max_tid, rewrite, packets, octets, prefix) and the slot's own dup of its subscriber's socket
    while bound (see :meth:`bind`)."""

    def __init__(
        self,
        owner: Any,
        name: str,
        kind: str,
        mid: str,
        ssrc: int,
        pt: int,
        clock: int,
        *,
        counters: Counters,
        on_change: Callable[[Slot], None] | None = None,
    ) -> None:
        self.owner = owner  # the subscribing Participant (or a test stand-in)
        self.name = name
        self.kind = kind
        self.mid = mid
        self.ssrc = ssrc
        self.pt = pt
        self.clock = clock
        self.counters = counters
        self.on_change = on_change
        mid_el = pad4(bytes(((MID_ID << 4) | (len(mid.encode()) - 1),)) + mid.encode())
        # every packet carries one 4-byte shared element (abs-send-time or audio level) after the mid
        self.prefix = b"\xbe\xde" + _U16.pack((len(mid_el) + 4) // 4) + mid_el
        self.hdr_pack = struct.Struct(f"!BBHII{len(self.prefix)}s").pack
        # output
        self.live = False
        self.protect: Callable[[bytes], bytes] = _closed
        self.send: Callable[[bytes], Any] = _closed
        # what it carries
        self.producer: Producer | None = None
        self.pending: Producer | None = None
        self.target: Producer | None = None
        self.pending_since = 0.0
        self.seq_off = 0
        self.ts_off = 0
        self.pid_off = 0
        self.tl0_off = 0
        self.rewrite = False  # VP8 picture id / TL0PICIDX must be rewritten
        self.max_tid = 255  # temporal cap (issue 4)
        self.paused = False
        self.started = False
        self.last_seq = 0
        self.last_ts = 0
        self.last_pid = 0
        self.last_tl0 = 0
        self.last_arrival = 0.0
        self.last_built = b""
        self.epochs: deque[tuple[Producer, int, int, int, int, int, int]] = deque(maxlen=_MAX_EPOCHS)
        # counters for sender reports and stats
        self.packets = 0
        self.octets = 0
        self.switches = 0
        self.nacks = 0
        self.plis = 0
        # what the subscriber reports (for the estimator of issue 4)
        self.rr_fraction_lost = 0
        self.rr_lost = 0
        self.rr_jitter = 0
        self.rtt: float | None = None
        self.rr_count = 0  # receiver reports about this slot (the estimator takes the fresh ones)
        self.sr_sent: dict[int, float] = {}  # lsr (middle 32 bits) -> our time
        # what the allocator chose (issue 4): whose video, which layer, why
        self.source: Any = None  # the Participant whose video a video slot shows
        self.layer = -1  # the chosen layer index (-1: paused or nothing)
        self.layer_name = "off"
        self.reason = ""
        self.bitrate = 0.0  # what this slot sends, bits/s, smoothed per tick
        self.probe_packets = 0  # duplicates sent as bandwidth probes
        self.fresh_out_seq = 0  # the out seq of the keyframe this slot last switched at
        self.has_fresh = False
        self.superseded = 0  # NACKs of packets from before the last switch's keyframe (not resent)
        self.probe_bytes = 0
        self._meas: tuple[float, int, int] | None = None

    # -- output binding ----------------------------------------------------------------------

    def bind(self, sink: Any) -> None:
        """Start writing to a connected subscriber transport (a hooks.Sink) or stop (None)."""
        if sink is None:
            self.egress_unbind()
            self.live = False
            self.protect, self.send = _closed, _closed
            if self.producer is not None and self in self.producer.slots:
                self.producer.slots.remove(self)
            return
        self.protect, self.send = sink.protect, sink.send
        sock = getattr(sink, "sock", None)
        if C_FANOUT and sock is not None:
            try:
                self.egress_bind(sock.fileno(), sink.addr, *hooks.srtp_pointers(sink.session), sink.session)
            except (OSError, ValueError):  # a closed socket or odd address: the Python path sends
                self.egress_unbind()
        else:
            self.egress_unbind()  # TURN relay (or no extension): the Python path sends
        if not self.live:
            self.live = True
            # a video receiver must start at a keyframe: (re)start through retarget
            producer = self._leave()
            if producer is not None:
                self.target = None
                self.retarget(producer)

    # -- switching ---------------------------------------------------------------------------

    def retarget(self, producer: Producer | None, now: float | None = None, replay_max_age: float = 1.5) -> None:
        """Carry ``producer`` (or nothing). Audio switches at its next packet; video at the
        target's next keyframe, or at once from the cached keyframe run when it is recent."""
        if now is None:
            now = time.monotonic()
        self.target = producer
        self._cancel_pending()
        if producer is None:
            self.detach()
            return
        if producer is self.producer or self.paused:
            return
        if producer.kind == "video" and self.live:
            run = producer.cache.keyframe_run(now, replay_max_age)
            if run:
                self.attach(producer, run[0])
                self.replay(run)
                return
        self.pending = producer
        self.pending_since = now
        producer.waiting.append(self)
        if producer.kind == "video":
            self.plis += 1
            producer.request_keyframe_upstream(producer)

    def pause(self) -> None:
        """Stop sending video (the allocator's last resort), keeping the numbering for resume."""
        if self.paused:
            return
        self.paused = True
        self._leave()
        self._cancel_pending()

    def resume(self, now: float | None = None, replay_max_age: float = 1.5) -> None:
        """Send again, from a keyframe of the target (cached run or PLI)."""
        if not self.paused:
            return
        self.paused = False
        target, self.target = self.target, None
        self.retarget(target, now, replay_max_age)

    def detach(self) -> None:
        if self._leave() is not None and self.on_change is not None:
            self.on_change(self)

    def _leave(self) -> Producer | None:
        """Stop carrying the current producer, remembering where the numbering got to."""
        old = self.producer
        if old is not None:
            self._snapshot(old)
            if self in old.slots:
                old.slots.remove(self)
            self.producer = None
        return old

    def _cancel_pending(self) -> None:
        if self.pending is not None and self in self.pending.waiting:
            self.pending.waiting.remove(self)
        self.pending = None

    def _snapshot(self, old: Producer) -> None:
        self.last_seq = (old.max_seq + self.seq_off) & 0xFFFF
        self.last_ts = (old.max_ts + self.ts_off) & 0xFFFFFFFF
        self.last_pid = (old.max_pid + self.pid_off) & 0x7FFF
        self.last_tl0 = (old.max_tl0 + self.tl0_off) & 0xFF
        self.last_arrival = old.last_arrival

    def attach(self, producer: Producer, first: Packet) -> None:
        """Carry ``producer`` from packet ``first`` on, continuing this slot's numbering."""
        self._leave()
        if self.pending is producer:
            self.pending = None
        if self.started:
            gap = int((first.arrival - self.last_arrival) * producer.clock)
            min_gap = producer.clock // 50 if producer.kind == "audio" else producer.clock // 90
            gap = max(min_gap, min(gap, producer.clock * 10))
            self.seq_off = (self.last_seq + 1 - first.seq) & 0xFFFF
            self.ts_off = (self.last_ts + gap - first.ts) & 0xFFFFFFFF
            if first.pid >= 0:
                self.pid_off = (self.last_pid + 1 - first.pid) & 0x7FFF
            if first.tl0 >= 0:
                self.tl0_off = (self.last_tl0 + 1 - first.tl0) & 0xFF
        else:
            # a new outgoing stream starts at random sequence number and timestamp (RFC 3550); the
            # VP8 picture ids go through unchanged until the first switch (no payload rewrite)
            self.started = True
            self.seq_off = random.getrandbits(16)
            self.ts_off = random.getrandbits(32)
            self.pid_off = self.tl0_off = 0
        self.rewrite = bool(self.pid_off or self.tl0_off) or (first.vp8 is not None and first.pid >= 0 and not first.vp8.pid_long)
        self._new_epoch(producer, first.seq)
        if first.keyframe or producer.kind == "audio":
            # a decoder needs nothing sent before this point any more (see retransmit)
            self.fresh_out_seq = (first.seq + self.seq_off) & 0xFFFF
            self.has_fresh = self.started and self.switches > 0
        self.producer = producer
        self.switches += 1
        self.counters.switches += 1
        if self.live and not self.paused:
            producer.slots.append(self)
        if self.on_change is not None:
            self.on_change(self)

    def _new_epoch(self, producer: Producer, in_seq: int) -> None:
        self.epochs.append((producer, in_seq, (in_seq + self.seq_off) & 0xFFFF,
                            self.seq_off, self.ts_off, self.pid_off, self.tl0_off))

    def replay(self, run: list[Packet]) -> None:
        """Send cached packets (keyframe run) through this slot only."""
        protect, send = self.protect, self.send
        n = 0
        for pkt in run:
            data = self.build(pkt, self.seq_off, self.ts_off, self.pid_off, self.tl0_off)
            try:
                send(protect(data))
            except Exception:  # noqa: BLE001
                self.counters.send_errors += 1
                continue
            self.packets += 1
            self.octets += pkt.size
            n += 1
        self.counters.replayed += n
        self.counters.rtp_out += n

    # -- the unusual packets ------------------------------------------------------------------

    def special(self, pkt: Packet) -> bool:
        """Late packets, temporal-layer drops and VP8 rewrites. Sets last_built; False = skip."""
        if pkt.tid > self.max_tid and not pkt.late:
            # skip with continuity: the receiver sees no sequence or picture-id gap
            self.seq_off = (self.seq_off - 1) & 0xFFFF
            if pkt.start and pkt.pid >= 0:
                self.pid_off = (self.pid_off - 1) & 0x7FFF
                self.rewrite = True
            self._new_epoch(pkt_producer(self), (pkt.seq + 1) & 0xFFFF)
            return False
        if pkt.late:
            offs = self._offsets_for_in(pkt.seq)
            if offs is None:
                self.counters.dropped_wrong_epoch += 1
                return False
            self.last_built = self.build(pkt, *offs)
            return True
        self.last_built = self.build(pkt, self.seq_off, self.ts_off, self.pid_off, self.tl0_off)
        return True

    def build(self, pkt: Packet, seq_off: int, ts_off: int, pid_off: int, tl0_off: int) -> bytes:
        hdr = self.hdr_pack(0x90, self.pt | pkt.m, (pkt.seq + seq_off) & 0xFFFF, (pkt.ts + ts_off) & 0xFFFFFFFF,
                            self.ssrc, self.prefix)
        vp8 = pkt.vp8
        if vp8 is not None and vp8.pid_pos >= 0 and (pid_off or tl0_off or not vp8.pid_long):
            payload = vp8_rewrite(pkt.payload, vp8, pkt.pid + pid_off, pkt.tl0 + tl0_off)
            return b"".join((hdr, pkt.ext, payload))
        return hdr + pkt.tail

    def _offsets_for_in(self, in_seq: int) -> tuple[int, int, int, int] | None:
        producer = self.producer
        for ep in reversed(self.epochs):
            if ep[0] is producer and not seq_newer(ep[1], in_seq):
                return ep[3], ep[4], ep[5], ep[6]
        return None

    def lookup_out(self, out_seq: int) -> tuple[Producer, Packet, tuple[int, int, int, int]] | None:
        """For a NACK: which cached packet went out as ``out_seq``, with the offsets it had."""
        for ep in reversed(self.epochs):
            if not seq_newer(ep[2], out_seq):
                producer = ep[0]
                pkt = producer.cache.get((out_seq - ep[3]) & 0xFFFF)
                if pkt is None:
                    return None
                return producer, pkt, (ep[3], ep[4], ep[5], ep[6])
        return None

    def retransmit(self, out_seqs: list[int]) -> int:
        """Answer a NACK from the packet cache. A packet sent before the keyframe this slot last
        switched at (a layer or source change) is of no use to the decoder any more and is not
        resent: on a link that is often why the switch happened, it would only delay the new layer
        (a browser stops asking for packets before a keyframe it has)."""
        n = 0
        fresh = self.fresh_out_seq if self.has_fresh else -1
        for out_seq in out_seqs:
            self.nacks += 1
            self.counters.nack_in += 1
            if fresh >= 0 and seq_newer(fresh, out_seq) and ((fresh - out_seq) & 0xFFFF) < 4096:
                self.superseded += 1
                continue
            found = self.lookup_out(out_seq)
            if found is None:
                self.counters.nack_missed += 1
                continue
            _producer, pkt, offs = found
            try:
                self.send(self.protect(self.build(pkt, *offs)))
            except Exception:  # noqa: BLE001
                self.counters.send_errors += 1
                continue
            n += 1
        self.counters.nack_repaired += n
        return n

    def probe_send(self, nbytes: int, ext: bytes, max_packets: int = 48) -> int:
        """Bandwidth probe (per tick, never per packet): resend up to ``nbytes`` of the packets this
        slot sent last, newest first, each as it went out but with ``ext`` (a fresh abs-send-time
        element, padded to 4 bytes). They load the link like the next layer would; the receiver's
        SRTP replay check discards them before its bandwidth estimator (aiortc, libwebrtc), so the
        receiver's estimate sees them only through the queueing delay and loss of the media behind
        them. Returns the bytes sent."""
        p = self.producer
        if p is None or not self.live or self.paused or nbytes <= 0:
            return 0
        last = (p.max_seq + self.seq_off) & 0xFFFF
        sent = n = 0
        for k in range(max_packets):
            found = self.lookup_out((last - k) & 0xFFFF)
            if found is None:
                break
            _producer, pkt, (seq_off, ts_off, pid_off, tl0_off) = found
            hdr = self.hdr_pack(0x90, self.pt | pkt.m, (pkt.seq + seq_off) & 0xFFFF,
                                (pkt.ts + ts_off) & 0xFFFFFFFF, self.ssrc, self.prefix)
            vp8 = pkt.vp8
            if vp8 is not None and vp8.pid_pos >= 0 and (pid_off or tl0_off or not vp8.pid_long):
                payload = vp8_rewrite(pkt.payload, vp8, pkt.pid + pid_off, pkt.tl0 + tl0_off)
            else:
                payload = pkt.payload
            data = b"".join((hdr, ext, payload))
            try:
                self.send(self.protect(data))
            except Exception:  # noqa: BLE001
                self.counters.send_errors += 1
                break
            sent += len(data)
            n += 1
            if sent >= nbytes:
                break
        self.probe_packets += n
        self.probe_bytes += sent
        return sent

    # -- sender report ------------------------------------------------------------------------

    def sender_report_values(self, wall: float, clock_offset: float | None) -> tuple[int, int, int] | None:
        """(rtp timestamp at ``wall``, packet count, octet count) for an SR, or None if idle."""
        p = self.producer
        if p is None or not p.started or not self.started:
            return None
        rtp = p.rtp_at(wall, clock_offset)
        if rtp is None:
            # no publisher SR yet: extrapolate from the newest packet's arrival
            mono_now = time.monotonic()
            rtp = (p.max_ts + int((mono_now - p.last_arrival) * p.clock)) & 0xFFFFFFFF
        return (rtp + self.ts_off) & 0xFFFFFFFF, self.packets & 0xFFFFFFFF, self.octets & 0xFFFFFFFF

    def stats(self) -> dict[str, Any]:
        p = self.producer
        return {
            "kind": self.kind, "mid": self.mid, "ssrc": self.ssrc, "live": self.live,
            "shows": getattr(p.owner, "id", None) if p is not None else None,
            "pending": getattr(self.pending.owner, "id", None) if self.pending is not None else None,
            "packets": self.packets, "octets": self.octets, "switches": self.switches,
            "nacks": self.nacks, "plis": self.plis, "fraction_lost": self.rr_fraction_lost,
            "lost": self.rr_lost, "jitter": self.rr_jitter, "rtt": self.rtt,
            "layer": self.layer_name, "layer_index": self.layer, "paused": self.paused,
            "max_tid": self.max_tid if self.max_tid != 255 else None,
            "width": p.width if p is not None else 0, "height": p.height if p is not None else 0,
            "fps": round(self.fps(), 1), "bitrate_bps": int(self.bitrate), "reason": self.reason,
        }

    def fps(self) -> float:
        """The frame rate this slot passes on: its producer's, cut by the temporal cap (L1T3:
        tid 0 is a quarter, tid 1 half of the frames)."""
        p = self.producer
        if p is None or self.paused:
            return 0.0
        if self.max_tid >= 2 or p.temporal <= 1:
            return p.fps
        return p.fps / (4 if self.max_tid == 0 else 2)

    def measure(self, now: float, tau: float = 1.5, overhead: int = 60) -> float:
        """Per tick: smoothed bits/s sent on this slot (payload plus per-packet overhead)."""
        m = self._meas
        self._meas = (now, self.octets, self.packets)
        if m is None or now <= m[0]:
            return self.bitrate
        rate = ((self.octets - m[1]) + (self.packets - m[2]) * overhead) * 8 / (now - m[0])
        self.bitrate += min(1.0, (now - m[0]) / tau) * (rate - self.bitrate)
        return self.bitrate


def pkt_producer(slot: Slot) -> Producer:
    assert slot.producer is not None
    return slot.producer


def _closed(data: bytes) -> bytes:
    raise ConnectionError("slot is not bound to a connected transport")
