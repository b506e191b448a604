"""Packet builders and a capturing sink for the media unit tests."""

from __future__ import annotations

import os
import socket
import struct

from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

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


class UdpCapture(Capture):
    """A capturing sink the C fan-out writes to: a real SRTP session and a connected UDP socket
    (``sock``, as hooks.Sink has), read back and unprotected on ``sent``. What the Python path
    sends (replays, retransmissions, the slots the C loop hands back) goes through ``send`` as
    with Capture, to the same socket marked with a leading b"P", so ``sent`` keeps the one order
    in which the receiver got both."""

    opened: list[UdpCapture] = []

    def __init__(self, fail: bool = False) -> None:
        super().__init__(fail)
        key = os.urandom(30)
        out_policy = Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND,
                            srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80)
        out_policy.allow_repeat_tx = True
        self.session = Session(out_policy)
        self._inbound = Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND,
                                       srtp_profile=Policy.SRTP_PROFILE_AES128_CM_SHA1_80))
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.rx.setblocking(False)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(self.rx.getsockname())
        self.sock.setblocking(False)
        self.addr = None  # connected
        if fail:
            self.sock.shutdown(socket.SHUT_WR)  # every send fails (EPIPE), C and Python alike
        self._got: list[bytes] = []
        self.c_packets = 0  # how many came through the C path (SRTP-protected)
        UdpCapture.opened.append(self)

    def send(self, data: bytes) -> int:
        return self.sock.send(b"P" + data)

    @property
    def sent(self) -> list[bytes]:  # type: ignore[override]
        while True:
            try:
                d = self.rx.recv(4096)
            except BlockingIOError:
                break
            if d[:1] == b"P":
                self._got.append(d[1:])
            else:
                self.c_packets += 1
                try:
                    self._got.append(self._inbound.unprotect(d))
                except SrtpError as e:
                    raise AssertionError(f"the C fan-out sent a packet that does not unprotect: {e}") from e
        return self._got

    @sent.setter
    def sent(self, value: list[bytes]) -> None:
        self._got = value

    def close(self) -> None:
        self.sock.close()
        self.rx.close()

    @classmethod
    def close_all(cls) -> None:
        while cls.opened:
            cls.opened.pop().close()


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
