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
from confsvc.media.config import MediaConfig
from confsvc.media.counters import Counters
from confsvc.media.forwarder import ABS_SEND_TIME_ID, AUDIO_LEVEL_ID, MID_ID, Producer, Slot
from confsvc.media.ingress import Ingress
from confsvc.media.rtp import URI_ABS_SEND_TIME, URI_AUDIO_LEVEL, URI_MID, ntp_time
from confsvc.media.speakers import SpeakerDetector

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

    # -- publishing --------------------------------------------------------------------------

    @property
    def video(self) -> Producer | None:
        """The primary (first) video producer."""
        return next((p for p in self.producers if p.kind == "video"), None)

    @property
    def audio(self) -> Producer | None:
        return next((p for p in self.producers if p.kind == "audio"), None)

    async def publish(self, offer_sdp: str) -> str:
        """Answer the client's publish offer; returns the answer SDP (with candidates)."""
        if self.pub_pc is not None:
            raise MediaError("this participant already publishes; remove and re-add it to start over")
        try:
            offer = aiortc_sdp.SessionDescription.parse(offer_sdp)
        except Exception as exc:  # noqa: BLE001
            raise MediaError(f"the publish offer is not valid SDP: {exc}") from None
        media = [m for m in offer.media if m.kind in ("audio", "video")]
        if not media:
            raise MediaError("the publish offer has no audio or video")
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
        hooks.restrict_ice(pc, room.config.ice_addresses)
        await pc.setLocalDescription(answer)
        hooks.tune_receive(pc)
        self._setup_ingress(offer, aiortc_sdp.SessionDescription.parse(pc.localDescription.sdp))
        dtls = hooks.dtls_transport(pc)
        self._pub_dtls = dtls
        assert self.ingress is not None
        hooks.tap_transport(dtls, self.ingress.on_rtp, self._on_pub_rtcp)
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
                                pli_interval=cfg.pli_interval, layer=layer, hold=cfg.egress_hold)
            producer.request_keyframe_upstream = self._request_keyframe
            ing.add_producer(producer, codec.payloadType, rtx_pt, ssrc, rtx_ssrc)
            self.producers.append(producer)
        if room.config.measure_fanout:
            ing.fanout_samples = room.fanout_samples
        self.ingress = ing

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
        hooks.restrict_ice(pc, room.config.ice_addresses)
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
                slot.rr_lost = r.packets_lost
                slot.rr_jitter = r.jitter
                sent = slot.sr_sent.get(r.lsr)
                if sent is not None and r.dlsr:
                    rtt = now - sent - r.dlsr / 65536
                    if rtt >= 0:
                        slot.rtt = rtt if slot.rtt is None else 0.85 * slot.rtt + 0.15 * rtt
        elif isinstance(pkt, RtcpRtpfbPacket):
            if pkt.fmt == RTCP_RTPFB_NACK:
                slot = self._slots_by_ssrc.get(pkt.media_ssrc)
                if slot is not None and slot.live:
                    slot.retransmit(pkt.lost)
        elif isinstance(pkt, RtcpPsfbPacket):
            if pkt.fmt == RTCP_PSFB_PLI:
                self._keyframe_for(self._slots_by_ssrc.get(pkt.media_ssrc))
            elif pkt.fmt == RTCP_PSFB_FIR:
                fci = pkt.fci
                for i in range(0, len(fci) - 7, 8):
                    self._keyframe_for(self._slots_by_ssrc.get(int.from_bytes(fci[i:i + 4], "big")))
            elif pkt.fmt == RTCP_PSFB_APP:
                try:
                    self.remb = unpack_remb_fci(pkt.fci)[0]
                except ValueError:
                    c.malformed_rtcp += 1

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
        return {
            "id": self.id,
            "publishing": [p.stats() for p in self.producers],
            "slots": {name: s.stats() for name, s in self.slots.items()},
            "remb": self.remb,
            "subscribe_connected": self.sub_sink is not None,
            "publish_connected": self.pub_sink is not None,
        }

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
        self.fanout_samples: deque[float] = deque(maxlen=cfg.fanout_samples)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    # -- membership ---------------------------------------------------------------------------

    def add_participant(self, pid: str, grid_slots: int = 0) -> Participant:
        if self._closed:
            raise MediaError("the room is closed")
        if pid in self.participants:
            raise MediaError(f"participant {pid!r} is already in the room")
        p = Participant(self, pid, grid_slots)
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

    def set_stage(self, pid: str | None) -> None:
        """Give the floor (the stage slot of everyone) to ``pid``'s video, or clear it. The holder
        itself sees the previous holder."""
        if pid is not None and pid not in self.participants:
            raise MediaError(f"no participant {pid!r} in the room")
        if pid != self.stage:
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

    def _retarget_all(self) -> None:
        for p in list(self.participants.values()):
            self._retarget(p)

    def _retarget(self, p: Participant) -> None:
        if not p.slots or p.closed:
            return
        now = time.monotonic()
        age = self.config.replay_max_age
        # stage
        stage_id = self.stage if self.stage != p.id else self._prev_stage
        holder = self.participants.get(stage_id) if stage_id is not None else None
        target = holder.video if holder is not None and holder is not p else None
        stage = p.slots.get("stage")
        if stage is not None and stage.target is not target:
            stage.retarget(target, now, age)
        # grid
        page = self.grids.get(p.id, [])
        for i in range(p.grid_slots):
            slot = p.slots[f"grid{i}"]
            who = self.participants.get(page[i]) if i < len(page) else None
            prods = [x for x in (who.producers if who is not None else []) if x.kind == "video"]
            target = prods[-1] if prods else None  # the lowest layer
            if slot.target is not target:
                slot.retarget(target, now, age)
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
                self._tick()
            except Exception:  # noqa: BLE001 - the ticker must survive anything
                logger.exception("room ticker step failed")

    def _tick(self) -> None:
        cfg = self.config
        now = time.monotonic()
        wall = time.time()
        for p in list(self.participants.values()):
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

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "counters": self.counters.as_dict(),
            "stage": self.stage,
            "dominant_speaker": self.speakers.dominant,
            "audible": list(self.speakers.audible),
            "participants": {pid: p.stats() for pid, p in self.participants.items()},
        }
