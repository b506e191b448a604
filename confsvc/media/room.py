"""Room and Participant: peer connections, slot assignment, RTCP, the room ticker.

A Participant has a publish peer connection (the client offers; the node answers and receives)
and a subscribe peer connection (the node offers fixed slots: stage video, audio slots, grid
videos; the client answers). aiortc runs ICE, DTLS and SDP for both; the hooks in
:mod:`confsvc.media.hooks` divert media to :mod:`confsvc.media.ingress` / ``forwarder``.

One task per room (the ticker) does everything periodic: sender reports, receiver reports and
REMB upstream, upstream NACK retries, keyframe retries, speaker decisions, and noticing when a
subscribe transport comes up or goes away. Closing the room cancels it and closes every peer
connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import HEADER_EXTENSIONS
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from confsvc.media import hooks
from confsvc.media.allocator import (
    ALL_TIDS,
    PAUSED,
    Allocator,
    AllocatorConfig,
    Choice,
    Demand,
    Estimator,
    EstimatorConfig,
    layer_name,
)
from confsvc.media.config import MediaConfig
from confsvc.media.counters import Counters
from confsvc.media.forwarder import ABS_SEND_TIME_ID, AUDIO_LEVEL_ID, C_FANOUT, MID_ID, Producer, Slot
from confsvc.media.ingress import Ingress
from confsvc.media.rtp import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, abs_send_time, ntp_time
from confsvc.media.speakers import SpeakerDetector

TICK_SLICE = 16  # participants per slice of a ticker step (the loop serves packets between slices)
logger = logging.getLogger(__name__)

hooks.check()


def _check_extension_ids() -> None:
    ids = {(kind, e.uri): e.id for kind, exts in HEADER_EXTENSIONS.items() for e in exts}
    expected = {("audio", URI_MID): MID_ID, ("video", URI_MID): MID_ID,
                ("audio", URI_AUDIO_LEVEL): AUDIO_LEVEL_ID, ("video", URI_ABS_SEND_TIME): ABS_SEND_TIME_ID}
    for key, want in expected.items():
        if ids.get(key) != want:
            raise hooks.HookError(f"aiortc offers {key} with extension id {ids.get(key)}, expected {want}")


_check_extension_ids()


class MediaError(ValueError):
    """Bad input from a client (SDP we cannot use, a call in the wrong state)."""


PINS = ("high", "mid", "low", "off")
MAX_LAYERS = 3
_LAYER_KEYS = {"mid", "rid", "width", "height", "max_kbps", "temporal"}
# fallback bitrates (bits/s) of a source's layers before they are measured, by count of layers
_DEFAULT_BPS = {1: [500_000], 2: [1_000_000, 200_000], 3: [1_500_000, 500_000, 150_000]}


def parse_layers(layers: Any, video_mids: list[str]) -> dict[str, dict[str, Any]]:
    """Validate the ``layers`` of a publish message: a list of at most 3 objects
    ``{"mid": "0", "rid": "h", "width": 1280, "height": 720, "max_kbps": 1500, "temporal": 3}``
    (``mid`` required: a video m-line of the offer; the rest optional; ``temporal`` 1..3 is the
    number of VP8 temporal layers, e.g. 3 for L1T3). Returns {mid: entry}; raises MediaError."""
    if not isinstance(layers, list) or not 1 <= len(layers) <= MAX_LAYERS:
        raise MediaError(f"layers must be a list of 1 to {MAX_LAYERS} objects")
    out: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(layers):
        if not isinstance(e, dict):
            raise MediaError(f"layers[{i}] must be an object")
        unknown = set(e) - _LAYER_KEYS
        if unknown:
            raise MediaError(f"layers[{i}] has unknown field(s): {', '.join(sorted(unknown))}")
        mid = e.get("mid")
        if not isinstance(mid, str) or mid not in video_mids:
            raise MediaError(f"layers[{i}].mid must name a video m-line of the offer ({', '.join(video_mids)})")
        if mid in out:
            raise MediaError(f"layers[{i}].mid {mid!r} is listed twice")
        for key, lo, hi in (("width", 16, 7680), ("height", 16, 4320), ("max_kbps", 10, 50_000), ("temporal", 1, 3)):
            v = e.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
                raise MediaError(f"layers[{i}].{key} must be an integer within {lo}..{hi}")
        rid = e.get("rid", "")
        if not isinstance(rid, str) or len(rid) > 16:
            raise MediaError(f"layers[{i}].rid must be a string of at most 16 characters")
        out[mid] = dict(e)
    return out


def _codec_caps(kind: str, mime: str) -> list[Any]:
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == mime]


class Participant:
    """One connected site."""

    def __init__(self, room: Room, pid: str, grid_slots: int = 0) -> None:
        self.room = room
        self.id = pid
        self.grid_slots = grid_slots
        self.pub_pc: RTCPeerConnection | None = None
        self.sub_pc: RTCPeerConnection | None = None
        self.producers: list[Producer] = []
        self.slots: dict[str, Slot] = {}
        self.ingress: Ingress | None = None
        self.pub_sink: hooks.Sink | None = None
        self.sub_sink: hooks.Sink | None = None
        self.rtcp_ssrc = random.getrandbits(32) or 1
        self.cname = f"confsvc-{pid}"
        self.clock_offset: float | None = None  # our wall clock minus the publisher's NTP clock
        self.remb: int | None = None  # the subscriber's REMB estimate, bps (for issue 4's estimator)
        self._remb_estimator = RemoteBitrateEstimator()
        self._remb_out: int | None = None
        self._slots_by_ssrc: dict[int, Slot] = {}
        self._sub_dtls: Any = None
        self._pub_dtls: Any = None
        self._next_sr = 0.0
        self._next_rr = 0.0
        self.closed = False
        # bandwidth adaptation (issue 4)
        cfg = room.config
        self.ice_addresses: tuple[str, ...] = room.config.ice_addresses
        self.remb_at = float("-inf")
        self.estimator = Estimator(EstimatorConfig(initial_bps=cfg.initial_bps))
        self.allocator = Allocator(AllocatorConfig(
            up_hold=cfg.up_hold, stable_hold=cfg.stable_hold, probe_window=cfg.probe_window,
            probe_backoff=cfg.probe_backoff, probe_backoff_max=cfg.probe_backoff_max,
            low_data_bps=cfg.low_data_bps))
        self.pin: str | None = None  # the chair's pin of what this site receives
        self.declared_layers = False
        self.audio_bps = 0.0
        self.sent_bps = 0.0
        self.remb_covers_audio = True
        self._rtt_sample: float | None = None  # the largest raw RTT of receiver reports since the last tick
        self._probe_mark: tuple[float, int, int] | None = None  # probing: (time, slot octets, packets)
        self._resent: dict[int, dict[int, float]] = {}  # per slot SSRC: out seq -> when it was resent
        self.nack_throttled = 0  # NACKed packets not resent: already resent within the last RTT
        self._layers_cache: tuple[list[int | None], int] | None = None  # per tick: (layer_bps, temporal)

    # -- publishing --------------------------------------------------------------------------

    @property
    def video(self) -> Producer | None:
        """The primary (first) video producer."""
        return next((p for p in self.producers if p.kind == "video"), None)

    @property
    def audio(self) -> Producer | None:
        return next((p for p in self.producers if p.kind == "audio"), None)

    @property
    def video_layers(self) -> list[Producer]:
        """The video producers as layers of one source, highest (layer 0) first."""
        return sorted((p for p in self.producers if p.kind == "video"), key=lambda p: p.layer)

    async def publish(self, offer_sdp: str, layers: list[dict[str, Any]] | None = None) -> str:
        """Answer the client's publish offer; returns the answer SDP (with candidates).

        Every video track of the offer is a layer of the participant's one camera source.
        ``layers`` (optional, see :func:`parse_layers`) says which m-line (mid) is which layer:
        they are ordered by declared resolution (largest is layer 0, "high"); without it, by the
        resolution the keyframes show, and until then in offer order."""
        if self.pub_pc is not None:
            raise MediaError("this participant already publishes; remove and re-add it to start over")
        try:
            offer = aiortc_sdp.SessionDescription.parse(offer_sdp)
        except Exception as exc:  # noqa: BLE001
            raise MediaError(f"the publish offer is not valid SDP: {exc}") from None
        media = [m for m in offer.media if m.kind in ("audio", "video")]
        if not media:
            raise MediaError("the publish offer has no audio or video")
        video_mids = [m.rtp.muxId for m in media if m.kind == "video"]
        if len(video_mids) > MAX_LAYERS:
            raise MediaError(f"the publish offer has {len(video_mids)} video tracks; at most {MAX_LAYERS} layers")
        declared = parse_layers(layers, video_mids) if layers is not None else {}
        room = self.room
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(room.config.ice_servers) or None,
                                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pub_pc = pc
        # one recvonly transceiver per offered track, accepting only VP8 (with RTX) and Opus
        for m in media:
            t = pc.addTransceiver(m.kind, direction="recvonly")
            if m.kind == "video":
                t.setCodecPreferences(_codec_caps("video", "video/vp8") + _codec_caps("video", "video/rtx"))
            else:
                t.setCodecPreferences(_codec_caps("audio", "audio/opus"))
            hooks.capture_receive(t.receiver, lambda params: None)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            answer = await pc.createAnswer()
        except Exception as exc:  # noqa: BLE001
            await self._close_pc(pc)
            self.pub_pc = None
            raise MediaError(f"cannot use the publish offer: {exc}") from None
        hooks.restrict_ice(pc, self.ice_addresses)
        await pc.setLocalDescription(answer)
        hooks.tune_receive(pc)
        self._setup_ingress(offer, aiortc_sdp.SessionDescription.parse(pc.localDescription.sdp))
        self._declare_layers(declared)
        dtls = hooks.dtls_transport(pc)
        self._pub_dtls = dtls
        assert self.ingress is not None
        hooks.tap_transport(dtls, self.ingress.on_rtp, self._on_pub_rtcp, direct_rtp=self.ingress.on_rtp_now,
                            on_rejected=self._on_srtp_rejected)
        pc.on("connectionstatechange", lambda: room._poke())
        for p in self.producers:
            room._producer_added(p)
        return pc.localDescription.sdp

    def _setup_ingress(self, offer: Any, answer: Any) -> None:
        room = self.room
        ing = Ingress(room.counters, on_audio_level=room._on_audio_level,
                      on_abs_send_time=self._on_abs_send_time, on_missing=self._send_nacks)
        for om in offer.media:
            if om.kind not in ("audio", "video"):
                continue
            am = next((a for a in answer.media if a.rtp.muxId == om.rtp.muxId), None)
            if am is None or am.direction not in ("recvonly", "sendrecv") or am.port == 0:
                continue
            codecs = [c for c in am.rtp.codecs if c.mimeType.lower() != f"{om.kind}/rtx"]
            if not codecs:
                continue
            codec = codecs[0]
            rtx_pt = next((c.payloadType for c in am.rtp.codecs if c.mimeType.lower().endswith("/rtx")
                           and c.parameters.get("apt") == codec.payloadType), -1)
            for ext in am.rtp.headerExtensions:
                if ext.uri == URI_MID:
                    ing.mid_id = ext.id
                elif ext.uri == URI_AUDIO_LEVEL:
                    ing.level_id = ext.id
                elif ext.uri == URI_ABS_SEND_TIME:
                    ing.abs_id = ext.id
            ssrc = om.ssrc[0].ssrc if om.ssrc else 0
            rtx_ssrc = 0
            for group in om.ssrc_group:
                if group.semantic == "FID" and len(group.items) == 2 and int(group.items[0]) == ssrc:
                    rtx_ssrc = int(group.items[1])
            cfg = room.config
            layer = sum(1 for p in self.producers if p.kind == om.kind)
            producer = Producer(self, om.kind, om.rtp.muxId, codec.clockRate, counters=room.counters,
                                cache_size=cfg.nack_cache, keyframe_cache=cfg.keyframe_cache,
                                pli_interval=cfg.pli_interval, layer=layer)
            producer.request_keyframe_upstream = self._request_keyframe
            ing.add_producer(producer, codec.payloadType, rtx_pt, ssrc, rtx_ssrc)
            self.producers.append(producer)
        if room.config.measure_fanout:
            ing.fanout_samples = room.fanout_samples
        self.ingress = ing

    def _declare_layers(self, declared: dict[str, dict[str, Any]]) -> None:
        for p in self.producers:
            e = declared.get(p.mid)
            if e is not None:
                p.rid = e.get("rid", "")
                p.max_kbps = e.get("max_kbps") or 0
                p.temporal = e.get("temporal") or 0
                p.width, p.height = e.get("width") or 0, e.get("height") or 0
        self.declared_layers = bool(declared)
        if declared:
            video = [p for p in self.producers if p.kind == "video"]
            order = sorted(video, key=lambda p: (p.mid not in declared, -(p.width * p.height), video.index(p)))
            for i, p in enumerate(order):
                p.layer = i

    def _sort_layers_by_resolution(self) -> bool:
        """Undeclared layers: order them by the resolution their keyframes show, once known."""
        if self.declared_layers:
            return False
        video = [p for p in self.producers if p.kind == "video"]
        if len(video) < 2 or any(not p.width for p in video):
            return False
        order = sorted(video, key=lambda p: (-(p.width * p.height), p.layer))
        if all(p.layer == i for i, p in enumerate(order)):
            return False
        for i, p in enumerate(order):
            p.layer = i
        return True

    def layer_bps(self) -> list[int | None]:
        """Each layer's bitrate (highest first) for the allocator: measured once there is a second
        of it, else declared, else a default; None for a layer that stopped flowing."""
        layers = self.video_layers
        defaults = _DEFAULT_BPS.get(len(layers), [])
        out: list[int | None] = []
        for i, p in enumerate(layers):
            if p.measured_for >= 1.0:
                bps = p.bitrate
                if p.max_kbps:  # an encoder keeps to its cap; above it is a burst (a late publisher catching up)
                    bps = min(bps, p.max_kbps * 1200)
                out.append(int(bps) if p.bitrate >= 8_000 else None)
            elif p.max_kbps:
                out.append(p.max_kbps * 1000)
            else:
                out.append(defaults[i] if i < len(defaults) else 150_000)
        return out

    def temporal_layers(self) -> int:
        low = self.video_layers[-1:] or [None]
        return low[0].temporal if low[0] is not None else 1

    def _request_keyframe(self, producer: Producer) -> None:
        c = self.room.counters
        if producer.keyframes.request(time.monotonic()):
            self._send_pli(producer)
        else:
            c.pli_throttled += 1

    def _send_pli(self, producer: Producer) -> None:
        sink = self.pub_sink
        if sink is None or not producer.ssrc:
            return
        pkt = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=self.rtcp_ssrc, media_ssrc=producer.ssrc)
        if sink.send_rtcp(bytes(pkt)):
            self.room.counters.pli_out += 1
            self.room.counters.rtcp_out += 1

    def _send_nacks(self, producer: Producer, retry: bool = False) -> None:
        sink = self.pub_sink
        if sink is None or not producer.missing or not producer.ssrc:
            return
        now = time.monotonic()
        lost = []
        for seq, entry in list(producer.missing.items()):
            if now - entry[0] > 1.0 or entry[1] >= 3:
                del producer.missing[seq]
                producer.lost_upstream += 1
                continue
            if retry and now - entry[0] < 0.05 * (entry[1] + 1):
                continue
            entry[1] += 1
            lost.append(seq)
        if not lost:
            return
        pkt = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=self.rtcp_ssrc, media_ssrc=producer.ssrc)
        pkt.lost = sorted(lost)
        if sink.send_rtcp(bytes(pkt)):
            self.room.counters.nack_out += 1
            self.room.counters.rtcp_out += 1

    def _on_abs_send_time(self, producer: Producer, ast: int, arrival_ms: int, size: int) -> None:
        remb = self._remb_estimator.add(arrival_time_ms=arrival_ms, abs_send_time=ast,
                                        payload_size=size, ssrc=producer.ssrc)
        if remb is not None:
            self._remb_out = remb[0]
            self._send_remb(remb[0], remb[1])

    def _send_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        sink = self.pub_sink
        if sink is None:
            return
        pkt = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self.rtcp_ssrc, media_ssrc=0,
                             fci=pack_remb_fci(bitrate, ssrcs))
        if sink.send_rtcp(bytes(pkt)):
            self.room.counters.rtcp_out += 1

    def _rtcp_packets(self, data: bytes) -> list[Any]:
        """Parsed RTCP from a peer, or [] (counted) when it is malformed."""
        c = self.room.counters
        try:
            packets = RtcpPacket.parse(data)
        except Exception:  # noqa: BLE001
            c.malformed_rtcp += 1
            return []
        c.rtcp_in += 1
        return packets

    async def _on_pub_rtcp(self, data: bytes) -> None:
        try:
            for pkt in self._rtcp_packets(data):
                if isinstance(pkt, RtcpSrPacket):
                    producer = self._producer_by_ssrc(pkt.ssrc)
                    if producer is not None:
                        info = pkt.sender_info
                        if self.clock_offset is None:
                            self.clock_offset = time.time() - info.ntp_timestamp / 4294967296.0
                        producer.on_sender_report(info.ntp_timestamp, info.rtp_timestamp, time.monotonic())
        except Exception:  # noqa: BLE001
            self.room.counters.malformed_rtcp += 1

    def _producer_by_ssrc(self, ssrc: int) -> Producer | None:
        for p in self.producers:
            if p.ssrc == ssrc:
                return p
        return None

    def _send_receiver_reports(self) -> None:
        sink = self.pub_sink
        if sink is None:
            return
        reports = []
        now = time.monotonic()
        for p in self.producers:
            if not p.started or not p.ssrc:
                continue
            expected = p.packets_expected
            lost = max(0, expected - p.packets)
            prev_exp, prev_rcv = getattr(p, "_rr_prev", (0, 0))
            exp_int, rcv_int = expected - prev_exp, p.packets - prev_rcv
            p._rr_prev = (expected, p.packets)  # type: ignore[attr-defined]
            fraction = 0 if exp_int <= 0 or exp_int <= rcv_int else ((exp_int - rcv_int) << 8) // exp_int
            dlsr = int((now - p.sr_local) * 65536) if p.has_sr else 0
            reports.append(RtcpReceiverInfo(ssrc=p.ssrc, fraction_lost=min(fraction, 255),
                                            packets_lost=min(lost, 0x7FFFFF),
                                            highest_sequence=(p.cycles + p.max_seq) & 0xFFFFFFFF,
                                            jitter=0, lsr=p.sr_lsr if p.has_sr else 0, dlsr=dlsr & 0xFFFFFFFF))
        if reports:
            data = bytes(RtcpRrPacket(ssrc=self.rtcp_ssrc, reports=reports[:31]))
            if self._remb_out:
                data += bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=self.rtcp_ssrc, media_ssrc=0,
                                             fci=pack_remb_fci(self._remb_out, [p.ssrc for p in self.producers
                                                                                if p.kind == "video" and p.ssrc])))
            if sink.send_rtcp(data):
                self.room.counters.rtcp_out += 1

    # -- subscribing -------------------------------------------------------------------------

    async def subscribe_offer(self) -> str:
        """The node's offer for this participant's subscribe connection (with candidates)."""
        if self.sub_pc is not None:
            raise MediaError("this participant already has a subscribe connection")
        room = self.room
        pc = RTCPeerConnection(RTCConfiguration(iceServers=list(room.config.ice_servers) or None,
                                                bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.sub_pc = pc
        names = ["stage"] + [f"audio{i}" for i in range(room.config.audio_slots)] + \
                [f"grid{i}" for i in range(self.grid_slots)]
        transceivers = []
        for name in names:
            kind = "audio" if name.startswith("audio") else "video"
            t = pc.addTransceiver(kind, direction="sendonly")
            t.setCodecPreferences(_codec_caps("video", "video/vp8") if kind == "video" else _codec_caps("audio", "audio/opus"))
            hooks.capture_send(t.sender, lambda params: None)
            transceivers.append((name, kind, t))
        offer = await pc.createOffer()
        hooks.restrict_ice(pc, self.ice_addresses)
        await pc.setLocalDescription(offer)
        hooks.tune_receive(pc)
        local = aiortc_sdp.SessionDescription.parse(pc.localDescription.sdp)
        for name, kind, t in transceivers:
            m = next(m for m in local.media if m.rtp.muxId == t.mid)
            codec = m.rtp.codecs[0]
            slot = Slot(self, name, kind, t.mid, hooks.sender_ssrc(t.sender), codec.payloadType, codec.clockRate,
                        counters=room.counters, on_change=room._slot_changed)
            self.slots[name] = slot
            self._slots_by_ssrc[slot.ssrc] = slot
        dtls = hooks.dtls_transport(pc)
        self._sub_dtls = dtls
        hooks.tap_transport(dtls, self._on_sub_rtp, self._on_sub_rtcp)
        pc.on("connectionstatechange", lambda: room._poke())
        return pc.localDescription.sdp

    async def subscribe_answer(self, answer_sdp: str) -> None:
        if self.sub_pc is None or self.sub_pc.signalingState != "have-local-offer":
            raise MediaError("no subscribe offer is waiting for an answer")
        try:
            await self.sub_pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:  # noqa: BLE001
            raise MediaError(f"cannot use the subscribe answer: {exc}") from None
        self.room._retarget(self)

    async def _on_sub_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        # a subscribe connection carries no media towards the node
        self.room.counters.unknown_ssrc += 1

    async def _on_sub_rtcp(self, data: bytes) -> None:
        try:
            for pkt in self._rtcp_packets(data):
                self._handle_sub_rtcp(pkt)
        except Exception:  # noqa: BLE001
            self.room.counters.malformed_rtcp += 1

    def _handle_sub_rtcp(self, pkt: Any) -> None:
        c = self.room.counters
        if isinstance(pkt, (RtcpRrPacket, RtcpSrPacket)):
            now = time.time()
            for r in pkt.reports:
                slot = self._slots_by_ssrc.get(r.ssrc)
                if slot is None:
                    continue
                slot.rr_fraction_lost = r.fraction_lost
                slot.rr_count += 1
                slot.rr_lost = r.packets_lost
                slot.rr_jitter = r.jitter
                sent = slot.sr_sent.get(r.lsr)
                if sent is not None and r.dlsr:
                    rtt = now - sent - r.dlsr / 65536
                    if rtt >= 0:
                        slot.rtt = rtt if slot.rtt is None else 0.85 * slot.rtt + 0.15 * rtt
                        if slot.kind == "video" and (self._rtt_sample is None or rtt > self._rtt_sample):
                            self._rtt_sample = rtt  # raw, for the estimator's queue-delay signal
        elif isinstance(pkt, RtcpRtpfbPacket):
            if pkt.fmt == RTCP_RTPFB_NACK:
                slot = self._slots_by_ssrc.get(pkt.media_ssrc)
                if slot is not None and slot.live:
                    lost = self._not_in_flight(slot, pkt.lost, time.monotonic())
                    if lost:
                        slot.retransmit(lost)
        elif isinstance(pkt, RtcpPsfbPacket):
            if pkt.fmt == RTCP_PSFB_PLI:
                self._keyframe_for(self._slots_by_ssrc.get(pkt.media_ssrc))
            elif pkt.fmt == RTCP_PSFB_FIR:
                fci = pkt.fci
                for i in range(0, len(fci) - 7, 8):
                    self._keyframe_for(self._slots_by_ssrc.get(int.from_bytes(fci[i:i + 4], "big")))
            elif pkt.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(pkt.fci)
                    self.remb = bitrate
                    self.remb_at = time.monotonic()
                    # a browser's REMB covers the whole session; some receivers (aiortc) send one per
                    # video stream, which leaves audio out of it
                    audio = {s.ssrc for s in self.slots.values() if s.kind == "audio"}
                    self.remb_covers_audio = not ssrcs or bool(audio.intersection(ssrcs))
                except ValueError:
                    c.malformed_rtcp += 1

    def _not_in_flight(self, slot: Slot, lost: list[int], now: float) -> list[int]:
        """The NACKed packets not resent within the last RTT (the slot's, queues included). A
        receiver that asks again before the first resend could arrive (every 100 ms, whatever the
        RTT) would otherwise get each packet twice or more, which on a link that is full already
        (the reason they were lost) keeps it full: as libwebrtc's sender, at most once per RTT."""
        wait = min(max(slot.rtt if slot.rtt is not None else 0.1, 0.02), 0.5)
        resent = self._resent.get(slot.ssrc)
        if resent is None:
            resent = self._resent[slot.ssrc] = {}
        elif len(resent) > 1024:
            for seq in [q for q, t in resent.items() if now - t >= wait]:
                del resent[seq]
        out = []
        for seq in lost:
            t = resent.get(seq)
            if t is not None and now - t < wait:
                self.nack_throttled += 1
                continue
            resent[seq] = now
            out.append(seq)
        return out

    def _keyframe_for(self, slot: Slot | None) -> None:
        if slot is None:
            return
        self.room.counters.pli_in += 1
        slot.plis += 1
        producer = slot.producer or slot.pending
        if producer is not None and producer.kind == "video":
            producer.request_keyframe_upstream(producer)

    def _send_sender_reports(self, wall: float) -> None:
        sink = self.sub_sink
        if sink is None:
            return
        data = b""
        ntp = ntp_time(wall)
        lsr = (ntp >> 16) & 0xFFFFFFFF
        ssrcs = []
        for slot in self.slots.values():
            p = slot.producer
            values = slot.sender_report_values(wall, p.owner.clock_offset if p is not None else None)
            if values is None:
                continue
            rtp_ts, packets, octets = values
            data += bytes(RtcpSrPacket(ssrc=slot.ssrc, sender_info=RtcpSenderInfo(
                ntp_timestamp=ntp, rtp_timestamp=rtp_ts, packet_count=packets, octet_count=octets)))
            slot.sr_sent[lsr] = wall
            if len(slot.sr_sent) > 8:
                slot.sr_sent.pop(next(iter(slot.sr_sent)))
            ssrcs.append(slot.ssrc)
        if not data:
            return
        data += bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=s, items=[(1, self.cname.encode())]) for s in ssrcs[:31]]))
        if sink.send_rtcp(data):
            self.room.counters.rtcp_out += 1

    def _on_srtp_rejected(self) -> None:
        self.room.counters.srtp_rejected += 1

    def _refresh_sinks(self) -> bool:
        """Bind slots to the subscribe transport when it is up, unbind when it goes; True on change."""
        changed = False
        if self._pub_dtls is not None:
            self.pub_sink = hooks.Sink.of(self._pub_dtls, previous=self.pub_sink)
        if self._sub_dtls is not None:
            sink = hooks.Sink.of(self._sub_dtls, connect=self.room.config.connect_udp, previous=self.sub_sink)
            if sink is None and self.sub_sink is not None:
                self.sub_sink = None
                for slot in self.slots.values():
                    slot.bind(None)
                changed = True
            elif sink is not None and sink is not self.sub_sink:
                self.sub_sink = sink
                for slot in self.slots.values():
                    slot.bind(sink)
                changed = True
        return changed

    # -- introspection / closing ---------------------------------------------------------------

    def slot_map(self) -> dict[str, str | None]:
        return {name: (s.producer.owner.id if s.producer is not None else None) for name, s in self.slots.items()}

    def mids(self) -> dict[str, str]:
        return {name: s.mid for name, s in self.slots.items()}

    def stats(self) -> dict[str, Any]:
        """Everything the chair's wall and /metrics show about this site. Per slot: ``shows`` (whose
        video), ``layer`` ("high" | "mid" | "low" | "off"), ``layer_index``, ``width``/``height``,
        ``fps`` (what passes the temporal cap), ``max_tid`` (None: no cap), ``paused``,
        ``bitrate_bps`` (sent), ``reason`` (the allocator's last word). ``estimate``: the
        downlink estimate (``estimate_bps``, ``remb_bps``, ``loss`` 0..1, ``rtt_ms``, ``sent_bps``)
        and the allocator's state; ``low_data`` and ``pin`` are the people's choices."""
        return {
            "id": self.id,
            "publishing": [p.stats() for p in self.producers],
            "slots": {name: s.stats() for name, s in self.slots.items()},
            "remb": self.remb,
            "nack_throttled": self.nack_throttled,
            "estimate": {**self.estimator.stats(), **self.allocator.stats(), "audio_bps": int(self.audio_bps)},
            "low_data": self.allocator.low_data,
            "pin": self.pin,
            "subscribe_connected": self.sub_sink is not None,
            "publish_connected": self.pub_sink is not None,
        }

    # -- bandwidth adaptation (issue 4) ----------------------------------------------------------

    def _measure(self, now: float) -> None:
        """Per allocation tick: what this participant was sent, the fresh receiver-report loss."""
        total = audio = 0.0
        loss: float | None = None
        rtts = []
        for s in self.slots.values():
            bps = s.measure(now)
            total += bps
            if s.kind == "audio":
                audio += bps
            elif s.rr_count != getattr(s, "_rr_seen", 0):
                s._rr_seen = s.rr_count  # type: ignore[attr-defined]
                if s.producer is not None:
                    f = s.rr_fraction_lost / 256.0
                    loss = f if loss is None else max(loss, f)
            if s.rtt is not None:
                rtts.append(s.rtt)
        self.sent_bps, self.audio_bps = total, audio
        # the estimate is of what the REMB covers: all we send, or (REMB per video stream) video only
        covered = total if self.remb_covers_audio or self.remb is None else total - audio
        self.estimator.update(now, remb=self.remb, remb_at=self.remb_at if self.remb is not None else None,
                              loss=loss, rtt=min(rtts) if rtts else None, sent_bps=int(covered),
                              rtt_sample=self._rtt_sample)
        self._rtt_sample = None

    @property
    def audio_reserve(self) -> int:
        """What the allocator sets aside for audio out of the estimate."""
        return int(self.audio_bps) if self.remb_covers_audio or self.remb is None else 0

    def _demands(self) -> list[Demand]:
        out = []
        for name, s in self.slots.items():
            if s.kind != "video":
                continue
            src = s.source
            if src is None or not src.video_layers:
                out.append(Demand(name, None, []))
                continue
            cached = src._layers_cache
            bps, temporal = cached if cached is not None else (src.layer_bps(), src.temporal_layers())
            out.append(Demand(name, src.id, bps, temporal,
                              lowest_only=name.startswith("grid"),
                              pin=self.pin if name == "stage" else None))
        return out

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for slot in self.slots.values():
            slot.retarget(None)
            slot.bind(None)
        self.sub_sink = self.pub_sink = None
        for pc in (self.pub_pc, self.sub_pc):
            if pc is not None:
                await self._close_pc(pc)

    @staticmethod
    async def _close_pc(pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        except Exception:  # noqa: BLE001
            logger.debug("closing a peer connection failed", exc_info=True)


class Room:
    """One live briefing on this node."""

    def __init__(self, config: MediaConfig | None = None) -> None:
        self.config = config or MediaConfig()
        self.counters = Counters()
        self.participants: dict[str, Participant] = {}
        self.stage: str | None = None
        self._prev_stage: str | None = None
        self.grids: dict[str, list[str]] = {}
        self.muted: set[str] = set()
        cfg = self.config
        self.speakers = SpeakerDetector(speech_level=cfg.speech_level, window=cfg.speaker_window,
                                        min_activity=cfg.speaker_min_activity, hold=cfg.speaker_hold,
                                        slots=cfg.audio_slots + 1)
        self.on_slot_change: Callable[[str, str, str | None], None] | None = None
        self.on_dominant_speaker: Callable[[str | None], None] | None = None
        self.on_audio_speakers: Callable[[list[str]], None] | None = None
        # issue 4: (participant_id, slot_name, slot.stats()-like dict) when the allocator changes a
        # slot's layer, temporal cap or pause; signaling pushes it to the chair's wall
        self.on_layer_change: Callable[[str, str, dict[str, Any]], None] | None = None
        self._next_alloc = 0.0
        self.fanout_samples: deque[float] = deque(maxlen=cfg.fanout_samples)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    # -- membership ---------------------------------------------------------------------------

    def add_participant(self, pid: str, grid_slots: int = 0, ice_addresses: tuple[str, ...] | None = None) -> Participant:
        """``ice_addresses``: this participant's host candidates, if not the room's (e.g. a test
        whose subscriber sits behind a shaped link in a network namespace)."""
        if self._closed:
            raise MediaError("the room is closed")
        if pid in self.participants:
            raise MediaError(f"participant {pid!r} is already in the room")
        p = Participant(self, pid, grid_slots)
        if ice_addresses:
            p.ice_addresses = tuple(ice_addresses)
        self.participants[pid] = p
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"confsvc-room-ticker-{id(self)}")
        return p

    def participant(self, pid: str) -> Participant:
        try:
            return self.participants[pid]
        except KeyError:
            raise MediaError(f"no participant {pid!r} in the room") from None

    async def remove_participant(self, pid: str) -> None:
        p = self.participants.pop(pid, None)
        if p is None:
            return
        self.speakers.remove(pid)
        # everyone who watched or listened to p stops; p's own slots stop
        for other in self.participants.values():
            for slot in other.slots.values():
                if (slot.producer is not None and slot.producer.owner is p) or \
                   (slot.pending is not None and slot.pending.owner is p):
                    slot.retarget(None)
        for producer in p.producers:
            producer.close()
        await p.close()
        self._retarget_all()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for pid in list(self.participants):
            await self.remove_participant(pid)

    # -- what slots show ----------------------------------------------------------------------

    def set_stage(self, pid: str | None, holder_sees: str | None = None) -> None:
        """Give the floor (the stage slot of everyone) to ``pid``'s video, or clear it. The holder
        itself sees ``holder_sees`` (the chair, say) when given, else the previous holder."""
        if pid is not None and pid not in self.participants:
            raise MediaError(f"no participant {pid!r} in the room")
        if holder_sees is not None:
            self._prev_stage = holder_sees
        elif pid != self.stage:
            self._prev_stage = self.stage
        self.stage = pid
        self._retarget_all()

    def set_grid(self, viewer: str, pids: list[str]) -> None:
        p = self.participant(viewer)
        if len(pids) > p.grid_slots:
            raise MediaError(f"{viewer!r} has {p.grid_slots} grid slots, {len(pids)} asked")
        self.grids[viewer] = list(pids)
        self._retarget(p)

    def set_muted(self, pid: str, muted: bool) -> None:
        self.participant(pid)
        if muted:
            self.muted.add(pid)
        else:
            self.muted.discard(pid)
        self.speakers.set_muted(pid, muted)
        self._update_speakers(time.monotonic(), force=True)

    def set_low_data(self, pid: str, on: bool) -> None:
        """A site's "low data" choice: cap what it receives at MediaConfig.low_data_bps."""
        p = self.participant(pid)
        p.allocator.low_data = bool(on)
        self._allocate(p, time.monotonic())

    def pin_layer(self, pid: str, layer: str | None) -> None:
        """The chair pins the quality a site receives on its stage slot: "high", "mid", "low",
        "off" (no video, audio goes on), or None (automatic, the allocator decides)."""
        p = self.participant(pid)
        if layer is not None and layer not in PINS:
            raise MediaError(f"pin must be one of {', '.join(PINS)} or null, not {layer!r}")
        p.pin = layer
        self._allocate(p, time.monotonic())

    def _allocate(self, p: Participant, now: float) -> None:
        """Run p's allocator on its current estimate and apply the choices to its video slots."""
        if not p.slots or p.closed:
            return
        demands = p._demands()
        if self.config.adapt:
            choices = p.allocator.update(now, p.estimator, demands, p.audio_reserve)
        else:
            choices = {d.name: Choice(0 if d.source else PAUSED, ALL_TIDS, 0, "adaptation off") for d in demands}
        for d in demands:
            slot = p.slots[d.name]
            c = choices[d.name]
            # a step up from a layer that shows waits for the new layer's keyframe (PLI) unless the
            # cached one is fresh: the old layer goes on meanwhile, and a replayed run of up to
            # replay_max_age seconds of the higher layer would arrive as one burst, the loss that a
            # link which just proved it carries the layer's *rate* reports right after an upgrade
            age = self.config.replay_max_age
            if c.reason.startswith("up") and not slot.paused:
                age = min(age, self.config.up_replay_age)
            src = slot.source
            layers = src.video_layers if src is not None else []
            before = (slot.layer, slot.max_tid, slot.paused)
            slot.reason = c.reason
            if not layers:
                if slot.paused:
                    slot.paused = False
                if slot.target is not None or slot.pending is not None or slot.producer is not None:
                    slot.retarget(None, now, age)
                slot.layer, slot.layer_name = PAUSED, "off"
                continue
            if c.paused:
                if not slot.paused:
                    slot.pause()
                slot.target = layers[-1]
                slot.layer, slot.layer_name = PAUSED, "off"
            else:
                target = layers[min(c.layer, len(layers) - 1)]
                slot.max_tid = c.tid
                if slot.paused:
                    slot.target = target
                    slot.resume(now, age)
                elif slot.target is not target:
                    slot.retarget(target, now, age)
                slot.layer = target.layer
                slot.layer_name = layer_name(target.layer, len(layers))
            if (slot.layer, slot.max_tid, slot.paused) != before:
                # one line per change (seconds apart at most per slot): why a site's picture is what it is
                logger.info("%s %s: layer %s, temporal cap %s (%s; estimate %d kbps, rtt %s ms)",
                            p.id, d.name, slot.layer_name, "-" if slot.max_tid == ALL_TIDS else slot.max_tid,
                            c.reason, p.estimator.bps // 1000,
                            "?" if p.estimator.rtt is None else round(p.estimator.rtt * 1000))
                if self.on_layer_change is not None:
                    try:
                        self.on_layer_change(p.id, d.name, slot.stats())
                    except Exception:  # noqa: BLE001
                        logger.exception("on_layer_change callback failed")

    def _retarget_all(self) -> None:
        for p in list(self.participants.values()):
            self._retarget(p)

    def _retarget(self, p: Participant) -> None:
        if not p.slots or p.closed:
            return
        now = time.monotonic()
        age = self.config.replay_max_age
        # video slots: who each shows; which layer is the allocator's choice (_allocate)
        stage_id = self.stage if self.stage != p.id else self._prev_stage
        holder = self.participants.get(stage_id) if stage_id is not None else None
        stage = p.slots.get("stage")
        if stage is not None:
            stage.source = holder if holder is not None and holder is not p else None
        page = self.grids.get(p.id, [])
        for i in range(p.grid_slots):
            who = self.participants.get(page[i]) if i < len(page) else None
            p.slots[f"grid{i}"].source = who
        self._allocate(p, now)
        # audio: the audible speakers but p itself, sticky per slot
        want = [self.participants[k].audio for k in self.speakers.audible
                if k != p.id and k in self.participants and self.participants[k].audio is not None]
        want = want[: self.config.audio_slots]
        audio_slots = [p.slots[f"audio{i}"] for i in range(self.config.audio_slots)]
        keep = {s.target for s in audio_slots if s.target in want}
        free = [x for x in want if x not in keep]
        for s in audio_slots:
            if s.target in want:
                continue
            s.retarget(free.pop(0) if free else None, now, age)

    def _producer_added(self, producer: Producer) -> None:
        if producer.kind == "audio":
            self.speakers.add(producer.owner.id)
            if producer.owner.id in self.muted:
                self.speakers.set_muted(producer.owner.id, True)
            self._update_speakers(time.monotonic(), force=True)
        self._retarget_all()

    def _slot_changed(self, slot: Slot) -> None:
        cb = self.on_slot_change
        if cb is not None:
            shows = slot.producer.owner.id if slot.producer is not None else None
            try:
                cb(slot.owner.id, slot.name, shows)
            except Exception:  # noqa: BLE001
                logger.exception("on_slot_change callback failed")

    # -- speakers -----------------------------------------------------------------------------

    def _on_audio_level(self, producer: Producer, level: int, now: float) -> None:
        self.speakers.feed(producer.owner.id, level, now)

    def _update_speakers(self, now: float, force: bool = False) -> None:
        dom_changed, aud_changed = self.speakers.update(now)
        if dom_changed and self.on_dominant_speaker is not None:
            try:
                self.on_dominant_speaker(self.speakers.dominant)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001
                logger.exception("on_dominant_speaker callback failed")
        if aud_changed or force:
            if aud_changed and self.on_audio_speakers is not None:
                try:
                    self.on_audio_speakers(list(self.speakers.audible))  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001
                    logger.exception("on_audio_speakers callback failed")
            self._retarget_all()

    # -- the ticker ---------------------------------------------------------------------------

    def _poke(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        cfg = self.config
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), cfg.tick)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._tick()
            except Exception:  # noqa: BLE001 - the ticker must survive anything
                logger.exception("room ticker step failed")

    async def _tick(self) -> None:
        cfg = self.config
        now = time.monotonic()
        wall = time.time()
        if now >= self._next_alloc:
            self._next_alloc = now + cfg.alloc_interval
            self._adapt(now)
        self._send_probes(now, wall)
        for i, p in enumerate(list(self.participants.values())):
            if i % TICK_SLICE == TICK_SLICE - 1:
                # a tick over many participants takes milliseconds: let media packets in between
                await asyncio.sleep(0)
                now = time.monotonic()
                wall = time.time()
            if p.closed:
                continue
            if p._refresh_sinks():
                self._retarget(p)
            for producer in p.producers:
                if producer.keyframes.due(now):
                    p._send_pli(producer)
                if producer.missing:
                    p._send_nacks(producer, retry=True)
                for slot in producer.waiting:
                    if now - slot.pending_since >= cfg.pli_retry:
                        slot.pending_since = now
                        p._request_keyframe(producer)
                        break
            if p.sub_sink is not None and now >= p._next_sr:
                p._next_sr = now + cfg.sr_interval * (0.75 + 0.5 * random.random())
                p._send_sender_reports(wall)
            if p.pub_sink is not None and now >= p._next_rr:
                p._next_rr = now + cfg.rr_interval * (0.75 + 0.5 * random.random())
                p._send_receiver_reports()
        self._update_speakers(now)

    def _adapt(self, now: float) -> None:
        """Per allocation tick (not per packet): measure every layer, then each subscriber's
        estimate, then allocate."""
        resorted = False
        for p in self.participants.values():
            for producer in p.producers:
                producer.measure(now)
                if producer.kind == "video" and not p.declared_layers and producer.measured_for >= 1.0 \
                        and int(producer.measured_for / self.config.alloc_interval) % 8 == 0:
                    producer.temporal = producer.seen_temporal_layers()
            resorted |= p._sort_layers_by_resolution()
            # computed once per tick per source, not once per subscriber that shows it
            p._layers_cache = (p.layer_bps(), p.temporal_layers()) if p.video_layers else None
        for p in list(self.participants.values()):
            if p.slots and not p.closed:
                p._measure(now)
                self._allocate(p, now)
        if resorted:
            self._retarget_all()

    def _send_probes(self, now: float, wall: float) -> None:
        """Pad the slots that the allocators probe on, at the probed extra rate, a burst per tick."""
        ext = None
        for p in self.participants.values():
            probe = p.allocator.probe_target(now)
            if probe is not None and p.remb is not None and p.remb_at > p.estimator.remb_at and \
                    p.remb < (p.estimator.remb or 0) * p.estimator.cfg.remb_drop:
                # a REMB drop while probing: the probe is over now, not at the next allocation tick
                p._measure(now)
                self._allocate(p, now)
                probe = p.allocator.probe_target(now)
            slot = p.slots.get(probe[0]) if probe is not None else None
            if probe is None or slot is None:
                p._probe_mark = None
                continue
            mark, p._probe_mark = p._probe_mark, (now, slot.octets, slot.packets)
            if mark is None:
                continue  # the first tick of a probe: from here on
            dt = min(max(now - mark[0], 0.0), 0.3)
            _name, base, extra = probe
            # the probe tops up what the slot sent to the rate it probes (its step's plus the extra):
            # a keyframe burst leaves less room for padding, so the link sees the probed rate, not
            # the probed rate plus the burst (which would slow the keyframe down behind the padding)
            media = (slot.octets - mark[1]) + (slot.packets - mark[2]) * 60
            nbytes = min(int(extra / 8 * dt), int((base + extra) / 8 * dt) - media)
            if nbytes <= 0:
                continue
            if ext is None:
                ast = abs_send_time(wall)
                ext = bytes(((ABS_SEND_TIME_ID << 4) | 2, ast >> 16, (ast >> 8) & 0xFF, ast & 0xFF))
            slot.probe_send(nbytes, ext)

    # -- stats ------------------------------------------------------------------------------

    def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        """Prometheus-friendly samples: (name, labels, value). Gauges unless the name ends in
        _total. Per participant: estimate, REMB, loss, RTT, sent; per slot: layer index (-1 off),
        fps, bitrate, paused; per published layer: bitrate and fps; the room's counters."""
        out: list[tuple[str, dict[str, str], float]] = []
        for pid, p in self.participants.items():
            lab = {"participant": pid}
            e = p.estimator
            out.append(("confsvc_media_estimate_bps", lab, float(e.bps)))
            out.append(("confsvc_media_remb_bps", lab, float(e.remb or 0)))
            out.append(("confsvc_media_loss_ratio", lab, float(e.loss)))
            out.append(("confsvc_media_rtt_seconds", lab, float(e.rtt or 0.0)))
            out.append(("confsvc_media_sent_bps", lab, float(p.sent_bps)))
            out.append(("confsvc_media_low_data", lab, 1.0 if p.allocator.low_data else 0.0))
            out.append(("confsvc_media_probes_total", lab, float(p.allocator.probes)))
            out.append(("confsvc_media_failed_probes_total", lab, float(p.allocator.failed_probes)))
            for name, s in p.slots.items():
                if s.kind != "video":
                    continue
                sl = {"participant": pid, "slot": name}
                out.append(("confsvc_media_slot_layer", sl, float(s.layer)))
                out.append(("confsvc_media_slot_fps", sl, float(s.fps())))
                out.append(("confsvc_media_slot_bitrate_bps", sl, float(s.bitrate)))
                out.append(("confsvc_media_slot_paused", sl, 1.0 if s.paused else 0.0))
                out.append(("confsvc_media_slot_switches_total", sl, float(s.switches)))
            for prod in p.producers:
                if prod.kind == "video":
                    ll = {"participant": pid, "layer": str(prod.layer)}
                    out.append(("confsvc_media_layer_bitrate_bps", ll, float(prod.bitrate)))
                    out.append(("confsvc_media_layer_fps", ll, float(prod.fps)))
        for k, v in self.counters.as_dict().items():
            out.append((f"confsvc_media_{k}_total", {}, float(v)))
        return out

    def stats(self) -> dict[str, Any]:
        return {
            "counters": self.counters.as_dict(),
            "fanout": "c" if C_FANOUT else "python",
            "stage": self.stage,
            "dominant_speaker": self.speakers.dominant,
            "audible": list(self.speakers.audible),
            "participants": {pid: p.stats() for pid, p in self.participants.items()},
        }
