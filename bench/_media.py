"""Pre-encoded media for the forwarding benchmark, made once with PyAV and cached.

The publisher must cost almost nothing at run time, so the VP8 video (a moving test pattern with a
little noise, about 1 Mbps at 30 fps, a keyframe every 2.5 s) and the Opus audio (a warbling tone
with noise, 20 ms packets) are encoded once and kept as RTP-ready payloads under ``bench/.cache``:
each video frame is already split into VP8 payload chunks (RFC 7741), each audio packet is one Opus
payload. The loop is ``SECONDS`` long and replays forever.

Every payload also gets a *tail key* (its last 8 bytes): the light subscriber, which unprotects only
a sample of the SRTP packets it receives, uses it to tell which publisher packet a sample is, so that
it can map the SFU's rewritten sequence numbers back to the publisher's. Keys that occur twice in the
loop are dropped from the map (ambiguous).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
import random
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
VERSION = 1

WIDTH, HEIGHT, FPS = 640, 360, 30
VIDEO_BITRATE = 1_000_000
GOP = 75  # frames: a keyframe every 2.5 s
SECONDS = 20
AUDIO_RATE = 48_000
AUDIO_PTIME_MS = 20
AUDIO_BITRATE = 48_000
MAX_CHUNK = 1150  # VP8 bytes per RTP packet (plus a 4-byte descriptor, header and extensions)
TAIL = 8

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000


@dataclass
class Media:
    """The cached loop: video frames as lists of VP8 chunks (no descriptor yet), audio payloads."""

    video: list[tuple[bool, list[bytes]]]
    audio: list[bytes]
    params: dict
    video_keys: dict[bytes, int] = field(default_factory=dict)  # tail -> index into flat video packets
    audio_keys: dict[bytes, int] = field(default_factory=dict)

    @property
    def video_packets_per_loop(self) -> int:
        return sum(len(chunks) for _, chunks in self.video)

    def stats(self) -> dict:
        vbytes = sum(len(c) for _, chunks in self.video for c in chunks)
        seconds = len(self.video) / FPS
        return {
            "resolution": f"{WIDTH}x{HEIGHT}",
            "fps": FPS,
            "loop_seconds": round(seconds, 2),
            "video_kbps": round(vbytes * 8 / seconds / 1000, 1),
            "video_packets_per_s": round(self.video_packets_per_loop / seconds, 1),
            "keyframes_per_loop": sum(1 for k, _ in self.video if k),
            "audio_kbps": round(sum(len(a) for a in self.audio) * 8 / (len(self.audio) * AUDIO_PTIME_MS / 1000) / 1000, 1),
            "audio_packets_per_s": 1000 // AUDIO_PTIME_MS,
        }


def _params() -> dict:
    return {
        "v": VERSION, "w": WIDTH, "h": HEIGHT, "fps": FPS, "br": VIDEO_BITRATE, "gop": GOP, "s": SECONDS,
        "abr": AUDIO_BITRATE, "ptime": AUDIO_PTIME_MS, "chunk": MAX_CHUNK,
    }


def cache_path() -> Path:
    digest = hashlib.sha1(repr(sorted(_params().items())).encode()).hexdigest()[:10]
    return CACHE_DIR / f"media-{digest}.pkl"


def load_or_build() -> Media:
    path = cache_path()
    if path.exists():
        with path.open("rb") as f:
            data = pickle.load(f)
        if isinstance(data, dict) and data.get("params") == _params():
            return Media(**data)
    media = build()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(dataclasses.asdict(media), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return media


def split(frame: bytes, size: int = MAX_CHUNK) -> list[bytes]:
    """Split a frame into nearly equal chunks of at most ``size`` bytes."""
    n = max(1, math.ceil(len(frame) / size))
    step = math.ceil(len(frame) / n)
    return [frame[i : i + step] for i in range(0, len(frame), step)]


def _keys(payloads: list[bytes]) -> dict[bytes, int]:
    seen: dict[bytes, int] = {}
    dup: set[bytes] = set()
    for i, p in enumerate(payloads):
        k = p[-TAIL:]
        if k in seen:
            dup.add(k)
        seen[k] = i
    for k in dup:
        del seen[k]
    return seen


def encode_vp8_loop(width: int, height: int, bit_rate: int, n_frames: int, gop: int,
                    **options: str) -> list[tuple[bool, list[bytes]]]:
    """A moving test pattern encoded once with real-time VP8 settings, like a browser's (no alt-ref
    frames, no look-ahead): per frame (keyframe?, RTP-sized chunks). Starts with a keyframe."""
    import av

    graph = av.filter.Graph()
    src = graph.add("testsrc2", f"size={width}x{height}:rate={FPS}")
    noise = graph.add("noise", "alls=6:allf=t")
    fmt = graph.add("format", "pix_fmts=yuv420p")
    sink = graph.add("buffersink")
    src.link_to(noise)
    noise.link_to(fmt)
    fmt.link_to(sink)
    graph.configure()
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = Fraction(1, FPS)
    enc.framerate = Fraction(FPS, 1)
    enc.bit_rate = bit_rate
    enc.options = {
        "deadline": "realtime", "cpu-used": "8", "auto-alt-ref": "0", "lag-in-frames": "0",
        "error-resilient": "1", "g": str(gop), "keyint_min": str(gop), **options,
    }
    enc.open()
    video: list[tuple[bool, list[bytes]]] = []
    for i in range(n_frames):
        frame = sink.pull()
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.NONE  # testsrc marks every frame as a keyframe
        for p in enc.encode(frame):
            video.append((bool(p.is_keyframe), split(bytes(p))))
    for p in enc.encode(None):
        video.append((bool(p.is_keyframe), split(bytes(p))))
    video = video[:n_frames]
    if not video[0][0]:
        raise RuntimeError(f"the {width}x{height} VP8 loop must start with a keyframe")
    return video


def build() -> Media:
    import av  # only needed once, to fill the cache

    n_frames = SECONDS * FPS
    video = encode_vp8_loop(WIDTH, HEIGHT, VIDEO_BITRATE, n_frames, GOP)

    aenc = av.CodecContext.create("libopus", "w")
    aenc.sample_rate, aenc.layout, aenc.format = AUDIO_RATE, "stereo", "s16"
    aenc.bit_rate = AUDIO_BITRATE
    aenc.open()
    spf = AUDIO_RATE * AUDIO_PTIME_MS // 1000
    rnd = random.Random(7)
    audio: list[bytes] = []
    n_audio = SECONDS * 1000 // AUDIO_PTIME_MS
    phase = 0.0
    for i in range(n_audio + 5):
        samples = bytearray()
        for j in range(spf):
            t = (i * spf + j) / AUDIO_RATE
            freq = 330 + 110 * math.sin(2 * math.pi * 0.5 * t)
            phase += 2 * math.pi * freq / AUDIO_RATE
            v = int(6000 * math.sin(phase) + rnd.uniform(-800, 800))
            samples += struct.pack("<hh", v, v)
        af = av.AudioFrame(format="s16", layout="stereo", samples=spf)
        af.sample_rate = AUDIO_RATE
        af.planes[0].update(bytes(samples))
        af.pts = i * spf
        for p in aenc.encode(af):
            audio.append(bytes(p))
    audio = audio[:n_audio]

    flat_video = [c for _, chunks in video for c in chunks]
    return Media(video=video, audio=audio, params=_params(), video_keys=_keys(flat_video), audio_keys=_keys(audio))


if __name__ == "__main__":
    import json

    m = load_or_build()
    print(json.dumps({"cache": str(cache_path()), **m.stats(),
                      "unique_video_keys": len(m.video_keys), "unique_audio_keys": len(m.audio_keys)}))
