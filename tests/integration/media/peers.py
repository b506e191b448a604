"""Test peers in their own process: aiortc publishers that encode and subscribers that decode.

Run by the integration tests (``python peers.py``); they talk JSON lines on stdin/stdout. Keeping
the peers out of the node's process lets the node's own aiortc encoders and decoders be patched to
raise (proof that the node never transcodes) while the peers still encode and decode, and keeps
the node's task/socket counts clean. Every peer gathers ICE candidates on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import struct
import sys
import time
from fractions import Fraction

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcconfiguration import RTCBundlePolicy
from aiortc.rtp import RtcpPacket, RtcpSrPacket

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

from aiortc.jitterbuffer import JitterBuffer  # noqa: E402

from confsvc.media.hooks import restrict_ice  # noqa: E402
from confsvc.media.rtp import parse_vp8  # noqa: E402


def _browser_like_keyframes() -> None:
    """Subscribers' video jitter buffers drop what precedes a keyframe when a packet is missing
    before it, as a browser's frame buffer does (it never waits for frames a keyframe makes useless).
    aiortc's waits for every missing packet until 512 packets have passed: after a burst of loss on
    a shaped link (lost retransmissions, holes older than its NACK window) that is half a minute
    of frozen video at a low layer, whatever the node does."""
    orig_add = JitterBuffer.add

    def add(self, packet):
        origin = self._origin
        if self._is_video and origin is not None:
            behind = (origin - packet.sequence_number) & 0xFFFF
            if 0 < behind < 0x8000:
                return False, None  # older than what was played: dropped (aiortc resets at 100 behind)
        if self._is_video and origin is not None and packet.payload:
            delta = (packet.sequence_number - origin) & 0xFFFF
            if 0 < delta < self.capacity:
                try:
                    key = parse_vp8(packet.payload).keyframe
                except ValueError:
                    key = False
                if key and any(self._packets[(origin + i) % self.capacity] is None for i in range(delta)):
                    self.remove(delta)
        return orig_add(self, packet)

    JitterBuffer.add = add


_browser_like_keyframes()

# the addresses every peer gathers on: 127.0.0.1, or the subscriber end of a shaped link (a peers
# process started inside that link's network namespace)
ADDRS = os.environ.get("CONFSVC_PEER_ADDRS", "127.0.0.1").split(",")


class DecodeErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "failed to decode" in record.getMessage():
            self.count += 1
            if os.environ.get("ADAPT_DEBUG") and self.count <= 3:
                print("decode error:", record.getMessage(), file=sys.stderr)


class Pattern(VideoStreamTrack):
    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.w, self.h, self.frames = width, height, 0

    async def recv(self) -> av.VideoFrame:
        pts, tb = await self.next_timestamp()
        self.frames += 1
        f = av.VideoFrame(self.w, self.h, "yuv420p")
        for k, plane in enumerate(f.planes):
            plane.update(bytes([(self.frames * 7 + k * 60) % 256]) * plane.buffer_size)
        f.pts, f.time_base = pts, tb
        return f


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self, freq: float = 440.0, amplitude: int = 8000) -> None:
        super().__init__()
        self.freq = freq
        self.amplitude = amplitude
        self.n = 0
        self.start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.time()
        wait = self.start + self.n * 0.02 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        samples = 960
        pcm = b"".join(struct.pack("<h", int(self.amplitude * math.sin(2 * math.pi * self.freq * (self.n * samples + i) / 48000)))
                       for i in range(samples))
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(pcm)
        frame.sample_rate = 48000
        frame.pts = self.n * samples
        frame.time_base = Fraction(1, 48000)
        self.n += 1
        return frame


class Sub:
    def __init__(self, name: str, drop: float, seed: int) -> None:
        self.name = name
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.drop = drop
        self.stalled = asyncio.Event()
        self.rng = random.Random(seed)
        self.dropped = 0
        self.video: dict[str, dict] = {}
        self.audio: dict[str, int] = {}
        self.srs: list[dict] = []
        self.last_rtp: dict[int, tuple[int, float]] = {}
        self.tasks: list[asyncio.Task] = []
        self.created = time.monotonic()
        self.pc.on("track", self.on_track)

    def on_track(self, track: MediaStreamTrack) -> None:
        mid = next((t.mid for t in self.pc.getTransceivers() if t.receiver.track is track), "?")
        self.tasks.append(asyncio.ensure_future(self.read(track, mid)))

    async def read(self, track: MediaStreamTrack, mid: str) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001
                return
            now = time.monotonic()
            if track.kind == "video":
                v = self.video.setdefault(mid, {"frames": 0, "first": now, "sizes": [], "by_size": {},
                                                "last": now, "gaps": []})
                gap = now - v["last"]
                if gap > 0.5:  # a freeze: no decoded frame for over 500 ms
                    v["gaps"].append([round(v["last"], 3), round(gap, 3)])
                v["last"] = now
                v["frames"] += 1
                size = f"{frame.width}x{frame.height}"
                v["by_size"][size] = v["by_size"].get(size, 0) + 1
                if not v["sizes"] or v["sizes"][-1][1] != size:
                    v["sizes"].append([now, size])
                v.setdefault("times", []).append([now, size])
                if len(v["times"]) > 2000:
                    del v["times"][:1000]
            else:
                self.audio[mid] = self.audio.get(mid, 0) + 1

    def instrument(self) -> None:
        dtls = self.pc.getTransceivers()[0].receiver.transport
        ice = dtls.transport
        recv = ice._recv

        async def lossy_recv() -> bytes:
            while True:
                if self.stalled.is_set():  # stop reading: the socket's buffer fills, the kernel drops
                    await asyncio.Event().wait()
                data = await recv()
                if self.drop and len(data) > 1 and 127 < data[0] < 192 and not (192 <= data[1] <= 223):
                    if self.rng.random() < self.drop:
                        self.dropped += 1
                        continue
                return data

        ice._recv = lossy_recv
        orig_rtp, orig_rtcp = dtls._handle_rtp_data, dtls._handle_rtcp_data

        async def on_rtp(data: bytes, arrival_time_ms: int) -> None:
            if len(data) >= 12:
                ts, ssrc = struct.unpack_from("!II", data, 4)
                self.last_rtp[ssrc] = (ts, time.time())
            await orig_rtp(data, arrival_time_ms=arrival_time_ms)

        async def on_rtcp(data: bytes) -> None:
            try:
                for p in RtcpPacket.parse(data):
                    if isinstance(p, RtcpSrPacket):
                        last = self.last_rtp.get(p.ssrc)
                        self.srs.append({"ssrc": p.ssrc, "ntp": p.sender_info.ntp_timestamp,
                                         "rtp": p.sender_info.rtp_timestamp, "at": time.time(),
                                         "last_rtp": last[0] if last else None, "last_at": last[1] if last else None,
                                         "packets": p.sender_info.packet_count})
            except Exception:  # noqa: BLE001
                pass
            await orig_rtcp(data)

        dtls._handle_rtp_data = on_rtp
        dtls._handle_rtcp_data = on_rtcp
        self.tasks.append(asyncio.ensure_future(self.renack()))

    async def renack(self) -> None:
        """Like a browser, ask again every 100 ms for packets still missing: aiortc asks once, and its
        video jitter buffer then waits for a lost retransmission until 512 packets have passed."""
        while True:
            await asyncio.sleep(0.1)
            for t in self.pc.getTransceivers():
                r = t.receiver
                gen = getattr(r, "_RTCRtpReceiver__nack_generator", None)
                streams = getattr(r, "_RTCRtpReceiver__remote_streams", {})
                if gen is None or not gen.missing or not streams:
                    continue
                jb = getattr(r, "_RTCRtpReceiver__jitter_buffer", None)
                origin = getattr(jb, "_origin", None)
                if origin is not None:  # nothing from before what the buffer already let go of
                    gen.missing = {q for q in gen.missing if ((q - origin) & 0xFFFF) < 0x8000}
                    if not gen.missing:
                        continue
                try:
                    for ssrc in list(streams):
                        await r._send_rtcp_nack(ssrc, sorted(gen.missing))
                except Exception:  # noqa: BLE001
                    pass

    def stats(self) -> dict:
        return {"video": self.video, "audio": self.audio, "srs": self.srs[-40:], "dropped": self.dropped,
                "signaling": self.pc.signalingState, "connection": self.pc.connectionState}


class Peers:
    def __init__(self) -> None:
        self.pubs: dict[str, tuple[RTCPeerConnection, list]] = {}
        self.subs: dict[str, Sub] = {}
        self.layered: dict = {}
        self.light: dict = {}
        self.errors = DecodeErrors()
        # aiortc reports a failed decode at WARNING: count it (the process logs only errors)
        rlog = logging.getLogger("aiortc.rtcrtpreceiver")
        rlog.setLevel(logging.WARNING)
        rlog.propagate = False
        rlog.addHandler(self.errors)

    async def op_publish(self, name: str, width: int = 320, height: int = 240, audio: bool = False,
                         video: bool = True, freq: float = 440.0, amplitude: int = 8000) -> dict:
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        tracks: list = []
        if audio:
            tracks.append(Tone(freq, amplitude))
            pc.addTrack(tracks[-1])
        if video:
            tracks.append(Pattern(width, height))
            pc.addTrack(tracks[-1])
        offer = await pc.createOffer()
        restrict_ice(pc, ADDRS)
        await pc.setLocalDescription(offer)
        self.pubs[name] = (pc, tracks)
        return {"offer": pc.localDescription.sdp}

    async def op_publish_layers(self, name: str, small: bool = True, seconds: int = 6) -> dict:
        """A layered camera (bench/_layers.py: pre-encoded VP8 layers + Opus): the offer and the
        ``layers`` list of its publish message."""
        from bench import _layers

        media = _layers.load_or_build(_layers.SMALL if small else _layers.CHAIR, seconds=seconds)
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        pub = _layers.LayeredPublisher(media, pc)
        offer = await pub.offer(restrict=lambda pc: restrict_ice(pc, ADDRS))
        self.pubs[name] = (pc, [])
        self.layered[name] = pub
        return {"offer": offer, "layers": pub.layers()}

    async def op_answer(self, name: str, sdp: str) -> dict:
        pub = self.layered.get(name)
        if pub is not None:
            await pub.accept(sdp)
            pub.start()
            return {}
        await self.pubs[name][0].setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        return {}

    async def op_subscribe(self, name: str, offer: str, drop: float = 0.0, seed: int = 1) -> dict:
        sub = Sub(name, drop, seed)
        self.subs[name] = sub
        await sub.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await sub.pc.createAnswer()
        restrict_ice(sub.pc, ADDRS)
        await sub.pc.setLocalDescription(answer)
        sub.instrument()
        return {"answer": sub.pc.localDescription.sdp}

    async def op_malformed(self, name: str) -> dict:
        """Send malformed RTP (SRTP-protected, so it reaches the node's parser) and RTCP."""
        pc = self.pubs[name][0] if name in self.pubs else self.subs[name].pc
        dtls = pc.getTransceivers()[0].receiver.transport
        sent = 0
        refused: list[str] = []
        # fresh SSRCs: libsrtp refuses a packet far behind an SSRC's current index
        bad_rtp = [
            struct.pack("!BBHII", 0x80, 55, 1, 2, 0x1234) + b"unknown payload type and ssrc",
            # oversize header extension (1200 bytes, all present)
            struct.pack("!BBHII", 0x90, 96, 1, 2, 0x1235) + b"\xbe\xde" + struct.pack("!H", 300) + b"\x00" * 1200,
            # two-byte extension element longer than its block
            struct.pack("!BBHII", 0x90, 96, 1, 2, 0x1236) + b"\x10\x00\x00\x01" + b"\x05\x09\x00\x00" + b"x",
        ]
        for d in bad_rtp:
            try:
                await dtls._send_rtp(d)
            except Exception as exc:  # noqa: BLE001
                refused.append(f"{d[:2].hex()} {exc!r}")
                continue
            sent += 1
        # RTCP: an SR claiming 5 report blocks but carrying none, and an unknown packet type
        bad_rtcp = [struct.pack("!BBHI", 0x85, 200, 6, 0x1234) + b"\x00" * 20,
                    struct.pack("!BBHI", 0x80, 210, 2, 0x1234) + b"\x00" * 4]
        for d in bad_rtcp:
            try:
                await dtls._send_rtp(d)
            except Exception as exc:  # noqa: BLE001
                refused.append(f"{d[:2].hex()} {exc!r}")
                continue
            sent += 1
        return {"sent": sent, "refused": refused}

    async def op_subscribe_light(self, name: str, offer: str) -> dict:
        """A light subscriber (bench/_lightsub.py): real ICE and DTLS, then RTP only counted (frames by
        marker bits), never decoded; it sends no receiver reports or REMB."""
        from bench._lightsub import Kinds, LightSubscriber

        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await pc.createAnswer()
        restrict_ice(pc, ADDRS)
        await pc.setLocalDescription(answer)
        light = LightSubscriber(name, pc, Kinds(by_pt={}, keys={}, clocks={}))
        light.hijack()
        self.light[name] = light
        return {"answer": pc.localDescription.sdp}

    async def op_light_stats(self) -> dict:
        return {"light": {n: {str(ssrc): [st.received, st.markers] for ssrc, st in li.streams.items()}
                          for n, li in self.light.items()}, "now": time.monotonic()}

    async def op_set_drop(self, name: str, drop: float) -> dict:
        """Random loss at this subscriber's socket from now on (where tc netem is missing)."""
        self.subs[name].drop = drop
        return {}

    async def op_stall(self, name: str) -> dict:
        self.subs[name].stalled.set()
        return {}

    async def op_stats(self) -> dict:
        return {
            "pubs": {n: {"frames": sum(getattr(t, "frames", 0) for t in tr), "connection": pc.connectionState,
                         **({"sent": self.layered[n].sent} if n in self.layered else {})}
                     for n, (pc, tr) in self.pubs.items()},
            "subs": {n: s.stats() for n, s in self.subs.items()},
            "decode_errors": self.errors.count,
            "now": time.monotonic(),
        }

    async def op_close(self, name: str) -> dict:
        if name in self.layered:
            await self.layered.pop(name).stop()
        if name in self.pubs:
            await self.pubs.pop(name)[0].close()
        if name in self.subs:
            sub = self.subs.pop(name)
            await sub.pc.close()
            for t in sub.tasks:
                t.cancel()
        return {}

    async def close_all(self) -> None:
        for light in self.light.values():
            light.close()
            await light.pc.close()
        for name in list(self.pubs) + list(self.subs):
            await self.op_close(name)


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    peers = Peers()
    out = sys.stdout
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        op = msg.pop("op")
        if op == "quit":
            break
        try:
            result = await getattr(peers, f"op_{op}")(**msg)
            reply = {"ok": True, **result}
        except Exception as exc:  # noqa: BLE001
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    await peers.close_all()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    asyncio.run(main())
