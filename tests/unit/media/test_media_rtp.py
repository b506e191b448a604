import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from media_helpers import rtp, vp8_payload

from confsvc.media.rtp import (
    MalformedPacket,
    build_packet,
    ntp_time,
    ntp_to_unix,
    parse_extensions,
    parse_header,
    parse_vp8,
    seq_newer,
    vp8_rewrite,
)


def test_header_fields_and_extensions():
    data = rtp(96, 65535, 4000000000, 0xDEADBEEF, b"abc", marker=1, exts=bytes((0x10, 0x30, 0x22, 1, 2, 3)))
    pt, m, seq, ts, ssrc, es, el, ps, pe = parse_header(data)
    assert (pt, m, seq, ts, ssrc) == (96, 1, 65535, 4000000000, 0xDEADBEEF)
    assert data[ps:pe] == b"abc"
    assert parse_extensions(data, es, el) == {1: b"0", 2: b"\x01\x02\x03"}


def test_two_byte_extensions():
    body = bytes((5, 2, 9, 9, 0, 7, 1, 4))
    data = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\x10\x00" + struct.pack("!H", 2) + body + b"x"
    _, _, _, _, _, es, el, ps, _ = parse_header(data)
    assert parse_extensions(data, es, el) == {5: b"\x09\x09", 7: b"\x04"}
    assert data[ps:] == b"x"


def test_padding_is_stripped():
    data = rtp(96, 1, 2, 3, b"hello", padding=4)
    *_, ps, pe = parse_header(data)
    assert data[ps:pe] == b"hello"


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x60\x00",  # truncated
        struct.pack("!BBHII", 0x40, 96, 1, 2, 3) + b"x",  # version 1
        struct.pack("!BBHII", 0x8F, 96, 1, 2, 3) + b"x" * 8,  # CSRC count beyond the packet
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\xbe\xde\xff\xff" + b"x" * 16,  # oversize extension
        struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + b"\xbe\xde\x00\x08" + b"x" * 4,  # extension beyond the packet
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"ab\x09",  # padding longer than the payload
        struct.pack("!BBHII", 0xA0, 96, 1, 2, 3) + b"ab\x00",  # padding length zero
    ],
)
def test_malformed_headers_are_refused(data):
    with pytest.raises(MalformedPacket):
        parse_header(data)


@given(st.binary(max_size=80))
def test_parsers_raise_nothing_but_malformed(data):
    try:
        res = parse_header(data)
        parse_extensions(data, res[5], res[6])
        parse_vp8(data[res[7]:res[8]])
    except MalformedPacket:
        pass


def test_vp8_descriptor():
    info = parse_vp8(vp8_payload(start=True, key=True, pid=1234, tl0=7, tid=2, width=640, height=360))
    assert (info.start, info.keyframe, info.pid, info.pid_long, info.tl0, info.tid) == (True, True, 1234, True, 7, 2)
    assert (info.width, info.height) == (640, 360)
    delta = parse_vp8(vp8_payload(start=True, key=False, pid=5, long_pid=False))
    assert (delta.start, delta.keyframe, delta.pid, delta.pid_long) == (True, False, 5, False)
    cont = parse_vp8(vp8_payload(start=False, pid=5))
    assert not cont.start and not cont.keyframe


def test_vp8_rewrite_keeps_the_rest_and_widens_short_ids():
    p = vp8_payload(start=True, key=True, pid=5, tl0=9, tid=1, long_pid=False)
    info = parse_vp8(p)
    q = vp8_rewrite(p, info, 30000, 250)
    qi = parse_vp8(q)
    assert (qi.pid, qi.pid_long, qi.tl0, qi.tid, qi.keyframe) == (30000, True, 250, 1, True)
    assert q[qi.desc_len:] == p[info.desc_len:]


def test_build_packet_roundtrip():
    data = build_packet(111, 1, 70000, 2**32 + 5, 42, bytes((0x10, 0x31)), b"pay")
    pt, m, seq, ts, ssrc, es, el, ps, pe = parse_header(data)
    assert (pt, m, seq, ts, ssrc) == (111, 1, 70000 & 0xFFFF, 5, 42)
    assert parse_extensions(data, es, el) == {1: b"1"}
    assert data[ps:pe] == b"pay"


def test_seq_and_ntp_helpers():
    assert seq_newer(1, 65535) and not seq_newer(65535, 1) and not seq_newer(5, 5)
    assert abs(ntp_to_unix(ntp_time(1700000000.25)) - 1700000000.25) < 1e-6
