"""A layered camera source for the adaptation benchmark and tests: several VP8 layers of one
picture (e.g. 1280x720 / 640x360 / 320x180), encoded once with PyAV and cached, published over one
aiortc peer connection (one video m-line per layer, plus Opus audio) by a packetizer that costs
almost nothing at run time, like ``_publisher.Publisher`` for one layer.

Each layer has a keyframe every ``gop`` frames (a browser sends one on a PLI; a fixed loop cannot,
so the loop keeps them frequent). The publisher's ``layers()`` is the ``layers`` list a page sends
with its publish message (see ``confsvc.media.room.parse_layers``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import pickle
import random
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender

from bench._media import AUDIO_CLOCK, AUDIO_PTIME_MS, FPS, VIDEO_CLOCK, encode_vp8_loop
from bench._publisher import _abs_send_time, _ext_block, wait_connected

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
VERSION = 1

CHAIR = ((1280, 720, 1500), (640, 360, 500), (320, 180, 150))  # (width, height, kbps), as issue 4
SMALL = ((640, 360, 800), (320, 180, 250), (160, 90, 80))  # for tests: cheaper to encode and decode

_HDR = struct.Struct("!BBHII")
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AST_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"


@dataclass
class LayeredMedia:
    layers: list[list[tuple[bool, list[bytes]]]]  # per layer: frames of (keyframe, VP8 chunks)
    audio: list[bytes]
    params: dict

    def stats(self) -> dict:
        out = []
        for (w, h, kbps), frames in zip(self.params["layers"], self.layers, strict=True):
            b = sum(len(c) for _, chunks in frames for c in chunks)
            out.append({"size": f"{w}x{h}", "target_kbps": kbps,
                        "kbps": round(b * 8 / (len(frames) / FPS) / 1000, 1),
                        "keyframes": sum(1 for k, _ in frames if k)})
        return {"layers": out, "fps": FPS, "loop_seconds": self.params["seconds"]}


def load_or_build(layers=CHAIR, seconds: int = 10, gop: int = 30) -> LayeredMedia:
    params = {"v": VERSION, "layers": [list(x) for x in layers], "seconds": seconds, "gop": gop, "fps": FPS}
    digest = hashlib.sha1(repr(params).encode()).hexdigest()[:10]
    path = CACHE_DIR / f"layers-{digest}.pkl"
    if path.exists():
        with path.open("rb") as f:
            data = pickle.load(f)
        if data.get("params") == params:
            return LayeredMedia(**data)
    media = _build(params)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{random.getrandbits(32)}.tmp")
    with tmp.open("wb") as f:
        pickle.dump(dataclasses.asdict(media), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return media


def _build(params: dict) -> LayeredMedia:
    import av

    n_frames = params["seconds"] * FPS
    out: list[list[tuple[bool, list[bytes]]]] = []
    for w, h, kbps in params["layers"]:
        frames = encode_vp8_loop(w, h, kbps * 1000, n_frames, params["gop"], minrate=str(kbps * 800),
                                 maxrate=str(kbps * 1200), bufsize=str(kbps * 500))
        out.append(frames)
    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.layout, aenc.format = AUDIO_CLOCK, "mono", "s16"
    aenc.bit_rate = 32_000
    aenc.open()
    spf = AUDIO_CLOCK * AUDIO_PTIME_MS // 1000
    audio: list[bytes] = []
    phase = 0.0
    for i in range(params["seconds"] * 1000 // AUDIO_PTIME_MS + 5):
        samples = bytearray()
        for j in range(spf):
            t = (i * spf + j) / AUDIO_CLOCK
            phase += 2 * math.pi * (330 + 110 * math.sin(math.pi * t)) / AUDIO_CLOCK
            samples += struct.pack("<h", int(6000 * math.sin(phase)))
        af = av.AudioFrame(format="s16", layout="mono", samples=spf)
        af.sample_rate = AUDIO_CLOCK
        af.planes[0].update(bytes(samples))
        af.pts = i * spf
        for p in aenc.encode(af):
            audio.append(bytes(p))
    return LayeredMedia(layers=out, audio=audio[: params["seconds"] * 1000 // AUDIO_PTIME_MS], params=params)


class LayeredPublisher:
    """One aiortc peer connection (audio + one video m-line per layer) for ICE/DTLS/SRTP; RTP is
    written here from the cached loop, each layer paced at 2.5 x its rate like libwebrtc's pacer."""

    def __init__(self, media: LayeredMedia, pc: RTCPeerConnection | None = None) -> None:
        self.media = media
        self.pc = pc or RTCPeerConnection()
        self.sent = {"audio": 0, "video": [0] * len(media.layers)}
        self._task: asyncio.Task | None = None
        self._out: list[dict] = []
        self._audio: dict = {}

    async def offer(self, restrict=None) -> str:
        tr = self.pc.addTransceiver("audio", direction="sendonly")
        tr.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType == "audio/opus"])
        for _ in self.media.layers:
            tr = self.pc.addTransceiver("video", direction="sendonly")
            tr.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"])
        offer = await self.pc.createOffer()
        if restrict is not None:
            restrict(self.pc)
        await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    def layers(self) -> list[dict]:
        """The ``layers`` field of the publish message."""
        ts = self.pc.getTransceivers()[1:]
        return [{"mid": t.mid, "width": w, "height": h, "max_kbps": kbps}
                for t, (w, h, kbps) in zip(ts, self.media.params["layers"], strict=True)]

    async def accept(self, answer_sdp: str) -> None:
        import re

        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        sections = re.split(r"(?m)^(?=m=)", answer_sdp)[1:]
        by_mid = {}
        for sec in sections:
            mid = re.search(r"(?m)^a=mid:(\S+)", sec)
            pts = {m.group(2).lower(): int(m.group(1)) for m in re.finditer(r"(?m)^a=rtpmap:(\d+) ([\w-]+)/", sec)}
            exts = {m.group(2): int(m.group(1)) for m in re.finditer(r"(?m)^a=extmap:(\d+)(?:/\w+)? (\S+)", sec)}
            by_mid[mid.group(1) if mid else ""] = (pts, exts)
        trs = self.pc.getTransceivers()
        for i, tr in enumerate(trs):
            pts, exts = by_mid[tr.mid]
            d = {"pt": pts["vp8" if i else "opus"], "ssrc": tr.sender._ssrc, "mid": tr.mid.encode(),
                 "mid_id": exts.get(MID_URI, 0), "ast_id": exts.get(AST_URI, 0), "level_id": exts.get(LEVEL_URI, 0)}
            if i == 0:
                self._audio = d
            else:
                self._out.append(d)

    async def wait_connected(self, within: float = 20) -> None:
        await wait_connected(self.pc, within)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.pc.close()

    async def _run(self) -> None:
        await self.wait_connected()
        dtls = self.pc.getTransceivers()[0].sender.transport
        pair = dtls.transport._connection._nominated[1]
        srtp, udp, addr = dtls._tx_srtp, pair.protocol.transport, pair.remote_addr
        protect, sendto = srtp.protect, udp.sendto
        media = self.media
        n = len(media.layers)
        seq = [1000 * (i + 1) for i in range(n)]
        ts0 = [random.getrandbits(31) for _ in range(n)]
        queues: list[list[bytes]] = [[] for _ in range(n)]
        budgets = [0.0] * n
        paces = [kbps * 1000 * 2.5 / 8 for _w, _h, kbps in media.params["layers"]]
        aseq, ats0 = 30000, random.getrandbits(31)
        a = self._audio
        frame = apkt = 0
        start = last = time.monotonic()
        next_v = next_a = start
        while True:
            now = time.monotonic()
            if now >= next_v:
                for li in range(n):
                    o = self._out[li]
                    key, chunks = media.layers[li][frame % len(media.layers[li])]
                    pid = frame & 0x7FFF
                    ts = (ts0[li] + frame * (VIDEO_CLOCK // FPS)) & 0xFFFFFFFF
                    for ci, chunk in enumerate(chunks):
                        desc = bytes((0x90 if ci == 0 else 0x80, 0x80, 0x80 | (pid >> 8), pid & 0xFF))
                        marker = 0x80 if ci == len(chunks) - 1 else 0
                        queues[li].append(_HDR.pack(0x90, o["pt"] | marker, seq[li], ts, o["ssrc"]) + b"\x00" + desc + chunk)
                        seq[li] = (seq[li] + 1) & 0xFFFF
                frame += 1
                next_v = start + frame / FPS
            dt = now - last
            last = now
            for li in range(n):
                q = queues[li]
                if not q:
                    budgets[li] = 0.0
                    continue
                budgets[li] = min(budgets[li] + dt * paces[li], max(paces[li] * 0.01, 1500.0))
                o = self._out[li]
                while q and budgets[li] > 0:
                    raw = q.pop(0)
                    hdr, rest = raw[:12], raw[13:]
                    pkt = protect(hdr + _ext_block([(o["mid_id"], o["mid"]), (o["ast_id"], _abs_send_time())]) + rest)
                    sendto(pkt, addr)
                    budgets[li] -= len(pkt)
                    self.sent["video"][li] += 1
            if now >= next_a:
                idx = apkt % len(media.audio)
                ext = _ext_block([(a["mid_id"], a["mid"]), (a["level_id"], b"\x9e")])
                hdr = _HDR.pack(0x90 if ext else 0x80, a["pt"], aseq, (ats0 + apkt * 960) & 0xFFFFFFFF, a["ssrc"])
                sendto(protect(hdr + ext + media.audio[idx]), addr)
                aseq = (aseq + 1) & 0xFFFF
                apkt += 1
                self.sent["audio"] += 1
                next_a = start + apkt * AUDIO_PTIME_MS / 1000
            wake = min(next_v, next_a)
            if any(queues):
                wake = min(wake, time.monotonic() + 0.003)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))


if __name__ == "__main__":
    import json
    import sys

    which = SMALL if "--small" in sys.argv else CHAIR
    t0 = time.time()
    m = load_or_build(which, seconds=6 if which is SMALL else 10)
    print(json.dumps({**m.stats(), "seconds_to_load_or_build": round(time.time() - t0, 1)}))
