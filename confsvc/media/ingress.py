"""Ingress: decrypted RTP bytes from one publisher's transport -> Packet -> Producer.push.

One Ingress per publish transport. It routes by SSRC (learned from the SDP, or from the MID header
extension for SSRCs the SDP did not list), unwraps RTX, drops and counts malformed packets, and
extracts the two things the node needs from header extensions: the audio level (for speaker
detection, and passed on to subscribers) and abs-send-time (for the REMB estimate sent back
upstream). It never raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confsvc.media.counters import Counters
from confsvc.media.forwarder import ABS_SEND_TIME_ID, AUDIO_LEVEL_ID, Packet, Producer
from confsvc.media.rtp import (
    MalformedPacket,
    abs_send_time,
    parse_extensions,
    parse_header,
    parse_vp8,
    vp8_rewrite,
)

_U16_MAX = 0xFFFF


class Route:
    __slots__ = ("producer", "rtx", "pt")

    def __init__(self, producer: Producer, rtx: bool, pt: int) -> None:
        self.producer = producer
        self.rtx = rtx
        self.pt = pt


class Ingress:
    def __init__(
        self,
        counters: Counters,
        *,
        on_audio_level: Callable[[Producer, int, float], None] | None = None,
        on_abs_send_time: Callable[[Producer, int, int, int], None] | None = None,
        on_missing: Callable[[Producer], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.counters = counters
        self.routes: dict[int, Route] = {}
        self.by_mid: dict[str, tuple[Producer, int, int]] = {}  # mid -> (producer, media pt, rtx pt)
        self.mid_id = 0
        self.level_id = 0
        self.abs_id = 0
        self.on_audio_level = on_audio_level
        self.on_abs_send_time = on_abs_send_time
        self.on_missing = on_missing
        self.clock = clock
        self.wallclock = wallclock
        self.fanout_samples: Any = None  # a deque to record ingress->last-egress seconds (bench)

    def add_producer(self, producer: Producer, pt: int, rtx_pt: int = -1,
                     ssrc: int = 0, rtx_ssrc: int = 0) -> None:
        producer.pt = pt
        producer.rtx_pt = rtx_pt
        self.by_mid[producer.mid] = (producer, pt, rtx_pt)
        if ssrc:
            producer.ssrc = ssrc
            self.routes[ssrc] = Route(producer, False, pt)
        if rtx_ssrc and rtx_pt >= 0:
            producer.rtx_ssrc = rtx_ssrc
            self.routes[rtx_ssrc] = Route(producer, True, rtx_pt)

    def remove_producer(self, producer: Producer) -> None:
        self.by_mid.pop(producer.mid, None)
        for ssrc in [s for s, r in self.routes.items() if r.producer is producer]:
            del self.routes[ssrc]

    async def on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        """The transport tap's entry point (aiortc's receive task: what the direct path left to
        aioice's queue, counted in ``rtp_in_queued``)."""
        self.counters.rtp_in_queued += 1
        self.on_rtp_now(data, arrival_time_ms)

    def on_rtp_now(self, data: bytes, arrival_time_ms: int) -> None:
        """The transport tap's direct entry point (aioice's datagram callback; see hooks)."""
        samples = self.fanout_samples
        if samples is None:
            self.handle(data, arrival_time_ms)
        else:
            t0 = time.perf_counter()
            self.handle(data, arrival_time_ms)
            samples.append(time.perf_counter() - t0)

    def handle(self, data: bytes, arrival_time_ms: int = 0) -> None:
        c = self.counters
        c.rtp_in += 1
        c.rtp_in_bytes += len(data)
        try:
            self._handle(data, arrival_time_ms)
        except MalformedPacket:
            c.malformed_rtp += 1
        except Exception:  # noqa: BLE001 - nothing a peer sends may stop the transport's loop
            c.malformed_rtp += 1

    def _handle(self, data: bytes, arrival_time_ms: int) -> None:
        pt, marker, seq, ts, ssrc, ext_start, ext_len, pstart, pend = parse_header(data)
        route = self.routes.get(ssrc)
        exts = parse_extensions(data, ext_start, ext_len) if ext_start else None
        if route is None:
            route = self._learn(ssrc, pt, exts)
            if route is None:
                self.counters.unknown_ssrc += 1
                return
        if pt != route.pt:
            self.counters.unknown_pt += 1
            return
        producer = route.producer
        if route.rtx:
            if pend - pstart < 2:
                self.counters.padding_in += 1  # RTX padding (bandwidth probing)
                return
            seq = (data[pstart] << 8) | data[pstart + 1]
            pstart += 2
            self.counters.rtx_in += 1
        now = self.clock()
        if pend <= pstart:
            self.counters.padding_in += 1
            producer.skip(Packet(seq, ts, marker, now, b"", b""))
            return
        payload = data[pstart:pend]
        if producer.kind == "audio":
            vad_level = 0x7F
            if exts is not None and self.level_id:
                v = exts.get(self.level_id)
                if v:
                    vad_level = v[0]
            level = vad_level & 0x7F
            producer.level = level
            pkt = Packet(seq, ts, marker, now, payload, bytes(((AUDIO_LEVEL_ID << 4), vad_level, 0, 0)))
            producer.push(pkt)
            if self.on_audio_level is not None:
                self.on_audio_level(producer, level, now)
            return
        info = parse_vp8(payload)
        if info.pid >= 0 and not info.pid_long:
            # normalise a 7-bit picture id to the 15-bit form once, for every slot
            payload = vp8_rewrite(payload, info, info.pid, info.tl0)
            info = parse_vp8(payload)
        ast = abs_send_time(self.wallclock())
        pkt = Packet(seq, ts, marker, now, payload,
                     bytes(((ABS_SEND_TIME_ID << 4) | 2, ast >> 16, (ast >> 8) & 0xFF, ast & 0xFF)))
        pkt.vp8 = info
        pkt.keyframe = info.keyframe
        pkt.start = info.start
        pkt.pid = info.pid
        pkt.tl0 = info.tl0
        pkt.tid = info.tid
        before = len(producer.missing)
        producer.push(pkt)
        if self.on_missing is not None and len(producer.missing) > before:
            self.on_missing(producer)
        if self.on_abs_send_time is not None and exts is not None and self.abs_id:
            v = exts.get(self.abs_id)
            if v is not None and len(v) == 3:
                self.on_abs_send_time(producer, (v[0] << 16) | (v[1] << 8) | v[2], arrival_time_ms,
                                      pend - pstart)

    def _learn(self, ssrc: int, pt: int, exts: dict[int, bytes] | None) -> Route | None:
        """An SSRC the SDP did not announce: route it by its MID extension, once."""
        if exts is None or not self.mid_id:
            return None
        mid_bytes = exts.get(self.mid_id)
        if mid_bytes is None:
            return None
        entry = self.by_mid.get(mid_bytes.decode("ascii", "replace"))
        if entry is None:
            return None
        producer, media_pt, rtx_pt = entry
        if pt == media_pt:
            route = Route(producer, False, media_pt)
            producer.ssrc = ssrc
        elif pt == rtx_pt:
            route = Route(producer, True, rtx_pt)
            producer.rtx_ssrc = ssrc
        else:
            return None
        self.routes[ssrc] = route
        return route

    def stats(self) -> dict[str, Any]:
        return {"routes": len(self.routes)}
