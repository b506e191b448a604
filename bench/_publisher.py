"""The benchmark's publisher: one aiortc peer connection for ICE/DTLS/SRTP, and its own packetizer.

aiortc negotiates a send-only audio and video connection (Opus, VP8) and completes the handshake;
its senders carry no track, so they send nothing. The publisher then writes RTP packets itself from
the pre-encoded loop (``_media``): header with the negotiated payload type, the SSRC announced in
the offer, MID, abs-send-time (and audio level for audio) extensions, a VP8 payload descriptor with
a 15-bit picture id; protects them with the connection's SRTP session and hands them straight to
the nominated UDP socket, noting the wall-clock send time of each in a ``FanoutClock``.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from collections import deque

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender

from bench._lightsub import FanoutClock
from bench._media import AUDIO_CLOCK, AUDIO_PTIME_MS, FPS, VIDEO_CLOCK, Media

_HDR = struct.Struct("!BBHII")


def restrict_loopback() -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; the benchmark uses nothing else."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def sdp_sections(sdp: str) -> list[str]:
    parts = re.split(r"(?m)^(?=m=)", sdp)
    return parts[1:]


def section_info(section: str) -> dict:
    """kind, payload types by codec name, extension ids by URI, mid, ssrcs of one m-section."""
    kind = section.split(" ", 1)[0][2:]
    pts = {m.group(2).lower(): int(m.group(1)) for m in re.finditer(r"(?m)^a=rtpmap:(\d+) ([\w-]+)/", section)}
    exts = {m.group(2): int(m.group(1)) for m in re.finditer(r"(?m)^a=extmap:(\d+)(?:/\w+)? (\S+)", section)}
    mid = re.search(r"(?m)^a=mid:(\S+)", section)
    ssrcs = {int(s) for s in re.findall(r"(?m)^a=ssrc:(\d+) ", section)}
    return {"kind": kind, "pts": pts, "exts": exts, "mid": mid.group(1) if mid else None, "ssrcs": ssrcs}


MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AST_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


def _ext_block(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([(i << 4) | (len(v) - 1)]) + v for i, v in elements if i)
    if not body:
        return b""
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


async def wait_connected(pc: RTCPeerConnection, within: float = 20) -> None:
    """Until the publisher's connection is up; RuntimeError when it fails or takes longer."""
    deadline = time.monotonic() + within
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise RuntimeError(f"publisher connection {pc.connectionState}")
        await asyncio.sleep(0.02)


class Publisher:
    def __init__(self, media: Media, clocks: dict[str, FanoutClock], pace_bps: float = 0) -> None:
        self.media = media
        self.pace_bps = pace_bps
        self.clocks = clocks
        self.pc = RTCPeerConnection()
        self.sent = {"audio": 0, "video": 0, "video_frames": 0}
        self._task: asyncio.Task | None = None
        self._out: dict[str, dict] = {}

    async def offer(self) -> str:
        for kind, codec in (("audio", "audio/opus"), ("video", "video/VP8")):
            tr = self.pc.addTransceiver(kind, direction="sendonly")
            caps = RTCRtpSender.getCapabilities(kind)
            tr.setCodecPreferences([c for c in caps.codecs if c.mimeType == codec])
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def accept(self, answer_sdp: str, wait: float = 15) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        offer = {s["kind"]: s for s in map(section_info, sdp_sections(self.pc.localDescription.sdp))}
        answer = {s["kind"]: s for s in map(section_info, sdp_sections(answer_sdp))}
        for tr in self.pc.getTransceivers():
            kind = tr.kind
            codec = "vp8" if kind == "video" else "opus"
            exts = answer[kind]["exts"]
            self._out[kind] = {
                "pt": answer[kind]["pts"][codec],
                "ssrc": tr.sender._ssrc,
                "mid": (tr.mid or offer[kind]["mid"]).encode(),
                "mid_id": exts.get(MID_URI, 0),
                "ast_id": exts.get(AST_URI, 0),
                "level_id": exts.get(LEVEL_URI, 0),
            }
        await wait_connected(self.pc, wait)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.pc.close()

    def _transport(self):
        dtls = self.pc.getTransceivers()[0].sender.transport
        pair = dtls.transport._connection._nominated[1]
        addr = (pair.remote_candidate.host, pair.remote_candidate.port)
        return dtls._tx_srtp, pair.protocol.transport, addr

    async def _run(self) -> None:
        srtp, udp, addr = self._transport()
        protect, sendto = srtp.protect, udp.sendto
        v, a = self._out["video"], self._out["audio"]
        vclock, aclock = self.clocks["video"], self.clocks["audio"]
        video, audio = self.media.video, self.media.audio
        vseq, aseq = 1000, 30000
        vts0, ats0 = 123456, 654321
        vframe = apkt = 0
        vindex = 0  # index of the next video packet in the flat loop
        v_interval, a_interval = 1 / FPS, AUDIO_PTIME_MS / 1000
        vts_step, ats_step = VIDEO_CLOCK // FPS, AUDIO_CLOCK * AUDIO_PTIME_MS // 1000
        # Video goes through a pacer, like libwebrtc's: every 5 ms it may send pace_bps * 5 ms bytes
        # (plus what it did not use last time), so a keyframe leaves in a train, not in one burst.
        pace = self.pace_bps / 8 if self.pace_bps else 0.0
        vx = 0x90 if (v["mid_id"] or v["ast_id"]) else 0x80
        queue: deque[tuple[bytes, bytes, int, int]] = deque()  # (header, payload, seq, loop index)
        budget = 0.0
        last_pace = start = time.monotonic()
        next_v = next_a = start
        while True:
            now = time.monotonic()
            if now >= next_v:
                _key, chunks = video[vframe % len(video)]
                if vframe % len(video) == 0:
                    vindex = 0
                ts = (vts0 + vframe * vts_step) & 0xFFFFFFFF
                pid = vframe & 0x7FFF
                last = len(chunks) - 1
                for i, chunk in enumerate(chunks):
                    desc = bytes((0x90 if i == 0 else 0x80, 0x80, 0x80 | (pid >> 8), pid & 0xFF))
                    hdr = _HDR.pack(vx, v["pt"] | (0x80 if i == last else 0), vseq, ts, v["ssrc"])
                    queue.append((hdr, desc + chunk, vseq, vindex))
                    vseq = (vseq + 1) & 0xFFFF
                    vindex += 1
                vframe += 1
                next_v = start + vframe * v_interval
            if queue:
                if pace:
                    budget = min(budget + (now - last_pace) * pace, max(pace * 0.01, 1500.0))
                last_pace = now
                while queue and (not pace or budget > 0):
                    hdr, body, seq, index = queue.popleft()
                    ext = _ext_block([(v["mid_id"], v["mid"]), (v["ast_id"], _abs_send_time())])
                    pkt = protect(hdr + ext + body)
                    vclock.on_send(seq, index, time.time())
                    sendto(pkt, addr)
                    budget -= len(pkt)
                    self.sent["video"] += 1
                    if hdr[1] & 0x80:
                        self.sent["video_frames"] += 1
            else:
                budget, last_pace = 0.0, now
            if now >= next_a:
                idx = apkt % len(audio)
                ts = (ats0 + apkt * ats_step) & 0xFFFFFFFF
                ext = _ext_block([(a["mid_id"], a["mid"]), (a["level_id"], b"\x9e")])  # voice, -30 dBov
                hdr = _HDR.pack(0x80 | (0x10 if ext else 0), a["pt"], aseq, ts, a["ssrc"])
                pkt = protect(hdr + ext + audio[idx])
                aclock.on_send(aseq, idx, time.time())
                sendto(pkt, addr)
                aseq = (aseq + 1) & 0xFFFF
                apkt += 1
                self.sent["audio"] += 1
                next_a = start + apkt * a_interval
            wake = min(next_v, next_a)
            if queue:
                wake = min(wake, time.monotonic() + 0.003)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))


def _abs_send_time() -> bytes:
    # 6.18 fixed-point seconds, 24 bits (http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time)
    v = int(time.time() * (1 << 18)) & 0xFFFFFF
    return v.to_bytes(3, "big")
