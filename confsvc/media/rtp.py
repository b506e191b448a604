"""RTP and VP8 wire formats, as plain functions over bytes (no I/O, no aiortc objects).

The forwarder parses each incoming packet once here; everything per subscriber works from the
offsets this module finds.
"""

from __future__ import annotations

import struct
import time

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01

# RFC 8285 URIs the node understands
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

MAX_EXTENSION_BYTES = 1024  # a header extension block longer than this is refused as malformed

_HDR = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class MalformedPacket(ValueError):
    pass


def ntp_time(now: float | None = None) -> int:
    """64-bit NTP timestamp of a Unix time (default: now)."""
    t = time.time() if now is None else now
    return int((t + NTP_EPOCH_OFFSET) * 4294967296.0) & 0xFFFFFFFFFFFFFFFF


def ntp_to_unix(ntp: int) -> float:
    return ntp / 4294967296.0 - NTP_EPOCH_OFFSET


def abs_send_time(now: float) -> int:
    """24-bit 6.18 fixed-point seconds (the abs-send-time extension)."""
    return int(now * 262144.0) & 0xFFFFFF


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number a comes after b."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int, int, int, int]:
    """Parse a fixed RTP header.

    Returns (payload_type, marker, seq, timestamp, ssrc, ext_start, ext_len, payload_start,
    payload_end), where ext_start/ext_len delimit the extension data after its 4-byte header
    (ext_start is 0 when there is none) and ext_len is in bytes. Raises MalformedPacket.
    """
    n = len(data)
    if n < 12:
        raise MalformedPacket("RTP packet shorter than its fixed header")
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    if b0 >> 6 != 2:
        raise MalformedPacket("RTP version is not 2")
    pos = 12 + 4 * (b0 & 0x0F)
    ext_start = ext_len = 0
    if b0 & 0x10:
        if pos + 4 > n:
            raise MalformedPacket("RTP header extension truncated")
        ext_len = 4 * _U16.unpack_from(data, pos + 2)[0]
        if ext_len > MAX_EXTENSION_BYTES:
            raise MalformedPacket("RTP header extension oversize")
        ext_start = pos + 4
        pos = ext_start + ext_len
    if pos > n:
        raise MalformedPacket("RTP header longer than the packet")
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or pos + pad > n:
            raise MalformedPacket("RTP padding length invalid")
        end = n - pad
    return b1 & 0x7F, b1 >> 7, seq, ts, ssrc, ext_start, ext_len, pos, end


def extension_profile(data: bytes, ext_start: int) -> int:
    return _U16.unpack_from(data, ext_start - 4)[0]


def parse_extensions(data: bytes, ext_start: int, ext_len: int) -> dict[int, bytes]:
    """RFC 8285 one-byte (0xBEDE) or two-byte (0x100x) elements: {id: value}. Others give {}."""
    out: dict[int, bytes] = {}
    if not ext_start:
        return out
    profile = extension_profile(data, ext_start)
    pos, end = ext_start, ext_start + ext_len
    if profile == 0xBEDE:
        while pos < end:
            b = data[pos]
            if b == 0:
                pos += 1
                continue
            xid, length = b >> 4, (b & 0x0F) + 1
            if xid == 15:
                break
            if pos + 1 + length > end:
                raise MalformedPacket("RTP header extension element truncated")
            out[xid] = data[pos + 1 : pos + 1 + length]
            pos += 1 + length
    elif profile & 0xFFF0 == 0x1000:
        while pos + 1 < end:
            xid = data[pos]
            if xid == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if pos + 2 + length > end:
                raise MalformedPacket("RTP header extension element truncated")
            out[xid] = data[pos + 2 : pos + 2 + length]
            pos += 2 + length
    return out


class Vp8Info:
    """What the forwarder needs from a VP8 payload descriptor (RFC 7741)."""

    __slots__ = ("desc_len", "start", "keyframe", "pid", "pid_pos", "pid_long", "tl0", "tl0_pos",
                 "tid", "sync", "width", "height")

    def __init__(self) -> None:
        self.desc_len = 1
        self.start = False
        self.keyframe = False
        self.pid = -1
        self.pid_pos = -1
        self.pid_long = False
        self.tl0 = -1
        self.tl0_pos = -1
        self.tid = 0
        self.sync = False
        self.width = 0
        self.height = 0


def parse_vp8(payload: bytes) -> Vp8Info:
    n = len(payload)
    if n < 1:
        raise MalformedPacket("VP8 payload empty")
    info = Vp8Info()
    b0 = payload[0]
    pos = 1
    if b0 & 0x80:
        if n < 2:
            raise MalformedPacket("VP8 descriptor truncated")
        x = payload[1]
        pos = 2
        if x & 0x80:  # I: picture id
            if pos >= n:
                raise MalformedPacket("VP8 picture id truncated")
            info.pid_pos = pos
            if payload[pos] & 0x80:
                if pos + 2 > n:
                    raise MalformedPacket("VP8 picture id truncated")
                info.pid = _U16.unpack_from(payload, pos)[0] & 0x7FFF
                info.pid_long = True
                pos += 2
            else:
                info.pid = payload[pos]
                pos += 1
        if x & 0x40:  # L: TL0PICIDX
            if pos >= n:
                raise MalformedPacket("VP8 TL0PICIDX truncated")
            info.tl0_pos = pos
            info.tl0 = payload[pos]
            pos += 1
        if x & 0x30:  # T or K
            if pos >= n:
                raise MalformedPacket("VP8 TID/KEYIDX truncated")
            if x & 0x20:
                info.tid = payload[pos] >> 6
                info.sync = bool(payload[pos] & 0x20)
            pos += 1
    info.desc_len = pos
    info.start = bool(b0 & 0x10) and (b0 & 0x0F) == 0
    if info.start and pos < n:
        info.keyframe = not (payload[pos] & 0x01)
        # keyframe header: 3-byte frame tag, start code 9d 01 2a, then 14-bit width and height
        if info.keyframe and pos + 10 <= n and payload[pos + 3 : pos + 6] == b"\x9d\x01\x2a":
            info.width = (payload[pos + 6] | (payload[pos + 7] << 8)) & 0x3FFF
            info.height = (payload[pos + 8] | (payload[pos + 9] << 8)) & 0x3FFF
    return info


def vp8_rewrite(payload: bytes, info: Vp8Info, pid: int, tl0: int) -> bytes:
    """The payload with its picture id (always written in the 15-bit form) and TL0PICIDX replaced."""
    if info.pid_pos < 0:
        return payload
    after_pid = info.pid_pos + (2 if info.pid_long else 1)
    if info.tl0_pos < 0:
        return b"".join((payload[: info.pid_pos], _U16.pack(0x8000 | (pid & 0x7FFF)), payload[after_pid:]))
    return b"".join((
        payload[: info.pid_pos],
        _U16.pack(0x8000 | (pid & 0x7FFF)),
        bytes((tl0 & 0xFF,)),
        payload[info.tl0_pos + 1 :],
    ))


def one_byte_extension(xid: int, value: bytes) -> bytes:
    return bytes(((xid << 4) | (len(value) - 1),)) + value


def pad4(block: bytes) -> bytes:
    return block + b"\x00" * (-len(block) % 4)


def build_packet(pt: int, marker: int, seq: int, ts: int, ssrc: int, ext_block: bytes, payload: bytes) -> bytes:
    """A plain RTP packet; ext_block is the RFC 8285 element bytes (padded here), or b''."""
    if ext_block:
        body = pad4(ext_block)
        return b"".join((
            _HDR.pack(0x90, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc),
            b"\xbe\xde", _U16.pack(len(body) // 4), body, payload,
        ))
    return _HDR.pack(0x80, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload
