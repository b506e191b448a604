"""Packet builders and a capturing sink for the media unit tests."""

from __future__ import annotations

import struct

from confsvc.media.rtp import parse_extensions, parse_header, parse_vp8


def vp8_payload(*, start: bool, key: bool = False, pid: int | None = 100, tl0: int | None = None,
                tid: int | None = None, body: bytes = b"\x55" * 40, width: int = 320, height: int = 240,
                long_pid: bool = True) -> bytes:
    x = 0
    if pid is not None:
        x |= 0x80
    if tl0 is not None:
        x |= 0x40
    if tid is not None:
        x |= 0x20
    b0 = (0x80 if x else 0) | (0x10 if start else 0)
    out = bytes((b0,)) + (bytes((x,)) if x else b"")
    if pid is not None:
        out += struct.pack("!H", 0x8000 | pid) if long_pid else bytes((pid & 0x7F,))
    if tl0 is not None:
        out += bytes((tl0,))
    if tid is not None:
        out += bytes((tid << 6,))
    if start:
        frame_tag = b"\x00\x00\x00" if key else b"\x01\x00\x00"
        if key:
            frame_tag += b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
        return out + frame_tag + body
    return out + body


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, *, marker: int = 0, exts: bytes = b"",
        padding: int = 0) -> bytes:
    b0 = 0x80 | (0x10 if exts else 0) | (0x20 if padding else 0)
    hdr = struct.pack("!BBHII", b0, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    if exts:
        body = exts + b"\x00" * (-len(exts) % 4)
        hdr += b"\xbe\xde" + struct.pack("!H", len(body) // 4) + body
    pad = (b"\x00" * (padding - 1) + bytes((padding,))) if padding else b""
    return hdr + payload + pad


class Capture:
    """A stand-in for hooks.Sink: protect is the identity, send records."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[bytes] = []
        self.fail = fail

    def protect(self, data: bytes) -> bytes:
        return data

    def protect_rtcp(self, data: bytes) -> bytes:
        return data

    def send(self, data: bytes) -> int:
        if self.fail:
            raise BlockingIOError("socket buffer full")
        self.sent.append(data)
        return len(data)


def decode(data: bytes) -> dict:
    """What a receiver sees in one forwarded packet."""
    pt, marker, seq, ts, ssrc, es, el, ps, pe = parse_header(data)
    payload = data[ps:pe]
    out = {"pt": pt, "marker": marker, "seq": seq, "ts": ts, "ssrc": ssrc,
           "ext": parse_extensions(data, es, el), "payload": payload}
    try:
        info = parse_vp8(payload)
        out.update(pid=info.pid, tl0=info.tl0, key=info.keyframe, start=info.start, pid_long=info.pid_long,
                   vp8_rest=payload[info.desc_len:])
    except ValueError:
        pass
    return out
