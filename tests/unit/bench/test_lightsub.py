"""The light subscriber's counting (sequence unwrapping, loss, frames, publisher-seq mapping, fan-out
clock) and the publisher's RTP helpers, without any SFU."""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from bench._lightsub import SAMPLE_EVERY, FanoutClock, Kinds, LightSubscriber, StreamCount, window_counts
from bench._media import split
from bench._publisher import _ext_block, section_info


def feed(st: StreamCount, seqs, marker_every: int = 0) -> None:
    for i, s in enumerate(seqs):
        st.add(s & 0xFFFF, 1 if marker_every and i % marker_every == marker_every - 1 else 0)


def test_sequence_wraps_and_counts_loss():
    st = StreamCount()
    feed(st, range(65530, 65536))
    a = st.snapshot()
    feed(st, [x for x in range(65536, 65546) if x not in (65538, 65541)])  # two lost across the wrap
    c = window_counts(a, st.snapshot())
    assert c == {"received": 8, "expected": 10, "lost": 2, "frames": 0}


def test_duplicates_and_late_packets_are_not_progress():
    st = StreamCount()
    feed(st, [100, 101, 101, 103, 102, 104])
    assert st.dups == 1
    assert st.late == 1  # 102 came after 103
    assert st.max_ext == 104 + 65536
    assert st.received == 6


def test_frames_from_marker_bits():
    st = StreamCount()
    a = st.snapshot()
    feed(st, range(1, 41), marker_every=4)  # 4 packets a frame
    assert window_counts(a, st.snapshot())["frames"] == 10


def test_first_snapshot_before_any_packet():
    st = StreamCount()
    a = st.snapshot()
    feed(st, range(500, 510))
    c = window_counts(a, st.snapshot())
    assert c["received"] == 10 and c["lost"] == 0


def test_offset_learning_counts_changes():
    st = StreamCount()
    st.learn_offset(5, 65535)
    assert st.offset == 6
    st.learn_offset(7, 1)
    assert st.offset_changes == 0
    st.learn_offset(9, 1)
    assert st.offset == 8 and st.offset_changes == 1


def test_fanout_clock_last_arrival_over_receivers():
    clock = FanoutClock(loop_len=10)
    clock.on_send(42, 3, 100.0)
    assert clock.seq_of_index[3] == 42
    for t in (100.001, 100.004, 100.002):
        if t > clock.last[42]:
            clock.last[42] = t
        clock.count[42] += 1
    clock.on_send(43, 4, 100.5)  # received by 2 of 3 only
    clock.count[43] = 2
    clock.last[43] = 100.51
    delays, sent, missed = clock.delays(99.0, 101.0, receivers=3)
    assert sent == 2 and missed == 1
    assert len(delays) == 1 and abs(delays[0] - 0.004) < 1e-9


def test_split_keeps_bytes_and_bounds():
    frame = bytes(range(256)) * 20  # 5120 bytes
    chunks = split(frame, 1150)
    assert b"".join(chunks) == frame
    assert len(chunks) == 5 and max(map(len, chunks)) <= 1150
    assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_one_byte_header_extensions():
    block = _ext_block([(4, b"1"), (2, b"\x01\x02\x03"), (0, b"ignored")])
    assert block[:2] == b"\xbe\xde"
    words = struct.unpack("!H", block[2:4])[0]
    assert len(block) == 4 + 4 * words
    assert block[4:6] == bytes([0x40]) + b"1"
    assert block[6:10] == bytes([0x22]) + b"\x01\x02\x03"
    assert _ext_block([]) == b""


def test_section_info():
    sdp = ("m=video 9 UDP/TLS/RTP/SAVPF 97 98\r\na=mid:1\r\na=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
           "a=rtpmap:97 VP8/90000\r\na=rtpmap:98 rtx/90000\r\na=ssrc:1234 cname:x\r\n")
    info = section_info(sdp)
    assert info["kind"] == "video" and info["pts"]["vp8"] == 97 and info["mid"] == "1"
    assert info["exts"]["urn:ietf:params:rtp-hdrext:sdes:mid"] == 3 and info["ssrcs"] == {1234}


class _FakeSrtp:
    def __init__(self) -> None:
        self.calls = 0

    def unprotect(self, data: bytes) -> bytes:
        self.calls += 1
        return data  # "clear" already: the tail identifies the publisher packet


class _FakeProto:
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, data, addr) -> None:
        self.got.append(data)


async def test_reader_counts_rtp_passes_stun_and_maps_to_publisher_seq():
    clock = FanoutClock(loop_len=100)
    keys = {bytes([i]) * 8: i for i in range(100)}  # loop index i has payload tail 8 x i
    kinds = Kinds(by_pt={96: "video"}, keys={"video": keys}, clocks={"video": clock})
    sub = LightSubscriber("t", None, kinds)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    rx.setsockopt(socket.SOL_SOCKET, 35, 1)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sub._sock, sub._proto, sub._srtp = rx, _FakeProto(), _FakeSrtp()
    pub_base, sfu_base = 65500, 7  # the SFU rewrote the publisher's sequence numbers
    now = time.time()
    for i in range(60):
        clock.on_send((pub_base + i) & 0xFFFF, i, now)
        if i == 30:
            continue  # lost between SFU and subscriber
        hdr = struct.pack("!BBHII", 0x80, 96 | (0x80 if i % 3 == 2 else 0), (sfu_base + i) & 0xFFFF, 0, 0xABCD)
        tx.sendto(hdr + b"payload" + bytes([i]) * 8, rx.getsockname())
    tx.sendto(b"\x00\x01" + b"\x00" * 18, rx.getsockname())  # a STUN binding request
    tx.sendto(struct.pack("!BBHI", 0x80, 200, 6, 0xABCD) + b"\x00" * 20, rx.getsockname())  # RTCP SR
    await asyncio.sleep(0.05)
    sub._readable()
    st = sub.streams[0xABCD]
    assert st.received == 59 and st.kind == "video"
    assert st.max_ext - (sfu_base + 65536) == 59
    assert st.markers == 20
    assert st.offset == (sfu_base - pub_base) & 0xFFFF
    assert st.sampled == sub._srtp.calls and 1 <= st.sampled <= 60 // SAMPLE_EVERY + 2
    assert sub.rtcp == 1 and len(sub._proto.got) == 1
    delays, sent, missed = clock.delays(now - 1, now + 1, receivers=1)
    assert sent == 60 and missed == 1 and len(delays) == 59
    assert all(0 <= d < 1 for d in delays)
    rx.close()
    tx.close()
