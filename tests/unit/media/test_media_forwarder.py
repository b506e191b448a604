"""The per-packet path: Ingress -> Producer -> Slot -> a capturing sink.

Every test runs twice: with ``Capture`` (no socket: the Python fan-out loop) and with
``UdpCapture`` (a real SRTP session and UDP socket: the C fan-out, with the Python path for what
it hands back), so both paths are held to the same behaviour."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from media_helpers import Capture, UdpCapture, decode, rtp, vp8_payload

from confsvc.media import forwarder
from confsvc.media.counters import Counters
from confsvc.media.forwarder import Producer, Slot
from confsvc.media.ingress import Ingress

VP8_PT, RTX_PT, OPUS_PT = 96, 97, 111


@pytest.fixture(autouse=True, params=["python", "c"])
def fanout_path(request, monkeypatch):
    if request.param == "c":
        if not forwarder.C_FANOUT:
            pytest.fail("the C fan-out (confsvc/media/_fanout.c) is not built: pip install -e .")
        monkeypatch.setitem(globals(), "Capture", UdpCapture)
    yield request.param
    UdpCapture.close_all()


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Rig:
    """Two video publishers (A, B) and an audio one, on one ingress each, and slots."""

    def __init__(self):
        self.c = Counters()
        self.clock = Clock()
        self.ing = Ingress(self.c, clock=self.clock)
        self.ing.mid_id, self.ing.abs_id, self.ing.level_id = 1, 3, 2
        self.plis = []
        self.A = self.producer("a", 0xA, 0xAA)
        self.B = self.producer("b", 0xB, 0xBB)
        self.M = Producer(None, "audio", "m", 48000, counters=self.c)
        self.ing.add_producer(self.M, OPUS_PT, -1, 0xC)
        self.seq = {0xA: 1000, 0xB: 50000, 0xC: 7}
        self.ts = {0xA: 10_000, 0xB: 4_000_000_000, 0xC: 0}
        self.pid = {0xA: 200, 0xB: 32760}
        self.tl0 = {0xA: 10, 0xB: 250}

    def producer(self, mid, ssrc, rtx):
        p = Producer(None, "video", mid, 90000, counters=self.c)
        p.request_keyframe_upstream = lambda prod: self.plis.append(prod)
        self.ing.add_producer(p, VP8_PT, RTX_PT, ssrc, rtx)
        return p

    def slot(self, name="stage", kind="video", sink=None):
        s = Slot(None, name, kind, "0", 0x51, 100 if kind == "video" else 109, 90000 if kind == "video" else 48000,
                 counters=self.c)
        s.bind(sink or Capture())
        return s

    def frame(self, ssrc, key=False, packets=3, tid=None, send=True):
        """One VP8 frame of `packets` packets from publisher ssrc; returns the raw packets."""
        out = []
        for i in range(packets):
            payload = vp8_payload(start=i == 0, key=key and i == 0, pid=self.pid[ssrc], tl0=self.tl0[ssrc],
                                  tid=tid if tid is not None else 0, body=bytes((i,)) * 30)
            data = rtp(VP8_PT, self.seq[ssrc], self.ts[ssrc], ssrc, payload, marker=int(i == packets - 1),
                       exts=bytes((0x22, 1, 2, 3)))
            self.seq[ssrc] = (self.seq[ssrc] + 1) & 0xFFFF
            out.append(data)
            if send:
                self.ing.handle(data)
        self.ts[ssrc] = (self.ts[ssrc] + 3000) & 0xFFFFFFFF
        self.pid[ssrc] = (self.pid[ssrc] + 1) & 0x7FFF
        if tid in (None, 0):
            self.tl0[ssrc] = (self.tl0[ssrc] + 1) & 0xFF
        self.clock.t += 1 / 30
        return out

    def audio(self, level=30):
        data = rtp(OPUS_PT, self.seq[0xC], self.ts[0xC], 0xC, b"opus" * 10, exts=bytes((0x20, level)))
        self.seq[0xC] += 1
        self.ts[0xC] += 960
        self.clock.t += 0.02
        self.ing.handle(data)


def assert_continuous(pkts):
    """One stream, as a receiver must see it: gapless seq, rising ts, gapless picture ids."""
    for a, b in zip(pkts, pkts[1:], strict=False):
        assert b["seq"] == (a["seq"] + 1) & 0xFFFF, (a["seq"], b["seq"])
        assert b["ssrc"] == a["ssrc"]
        dts = (b["ts"] - a["ts"]) & 0xFFFFFFFF
        assert dts < 0x80000000
        if b.get("start"):
            assert dts > 0
            assert b["pid"] == (a["pid"] + 1) & 0x7FFF, (a["pid"], b["pid"])
        elif "pid" in b:
            assert b["pid"] == a["pid"] and dts == 0


def test_slot_rewrites_ssrc_pt_mid_and_keeps_payload():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.A, now=r.clock.t)
    assert r.plis == [r.A]  # nothing cached: a keyframe is requested upstream
    r.frame(0xA)  # delta frame: the slot waits
    assert sink.sent == []
    raw = r.frame(0xA, key=True)
    out = [decode(d) for d in sink.sent]
    assert len(out) == 3 and out[0]["key"]
    for o, d in zip(out, raw, strict=True):
        assert (o["ssrc"], o["pt"]) == (0x51, 100)
        assert o["ext"][1] == b"0" and len(o["ext"][3]) == 3  # MID and a fresh abs-send-time
        assert o["payload"] == d[-len(o["payload"]):]
    assert s.producer is r.A and r.c.rtp_out == 3


def test_switch_waits_for_keyframe_and_stream_stays_continuous():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)
    for _ in range(3):
        r.frame(0xA)
        r.frame(0xB)
    r.B.cache.clear()  # no usable run: the switch must wait for B's keyframe
    s.retarget(r.B, now=r.clock.t)
    r.frame(0xB)  # delta: not yet
    r.frame(0xA)  # A still flows meanwhile
    assert s.producer is r.A
    r.frame(0xB, key=True)
    assert s.producer is r.B
    for _ in range(3):
        r.frame(0xA)
        r.frame(0xB)
    out = [decode(d) for d in sink.sent]
    assert len(out) == 3 * (1 + 3 + 1 + 1 + 3)
    assert_continuous(out)
    # the TL0PICIDX continues too
    starts = [o for o in out if o["start"]]
    assert all(b["tl0"] == (a["tl0"] + 1) & 0xFF for a, b in zip(starts, starts[1:], strict=False))


def test_fast_start_replays_the_cached_keyframe_run():
    r = Rig()
    r.frame(0xB, key=True)
    r.frame(0xB)
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.B, now=r.clock.t)
    assert r.plis == []  # no keyframe request needed
    assert len(sink.sent) == 6 and decode(sink.sent[0])["key"]
    r.frame(0xB)
    assert_continuous([decode(d) for d in sink.sent])
    assert r.c.replayed == 6


def test_temporal_cap_drops_upper_layers_without_gaps():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    r.frame(0xA, key=True)
    s.retarget(r.A, now=r.clock.t)
    s.max_tid = 0
    for i in range(8):
        r.frame(0xA, tid=[0, 2, 1, 2][i % 4])
    out = [decode(d) for d in sink.sent]
    assert len(out) == 3 * (1 + 2)  # the keyframe and the two TL0 frames
    assert_continuous(out)


def test_padding_only_packets_leave_no_gap():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    r.frame(0xA, key=True)
    s.retarget(r.A, now=r.clock.t)
    r.ing.handle(rtp(VP8_PT, r.seq[0xA], r.ts[0xA], 0xA, b"", padding=200))
    r.seq[0xA] += 1
    r.frame(0xA)
    assert_continuous([decode(d) for d in sink.sent])
    assert r.c.padding_in == 1


def test_nack_is_answered_with_the_bytes_first_sent():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)
    r.frame(0xA)
    s.retarget(r.B, now=r.clock.t)  # replay of B's run is not possible (none yet): waits
    r.frame(0xB, key=True)
    r.frame(0xB)
    sent = list(sink.sent)
    seqs = [decode(d)["seq"] for d in sent]
    # ask again for one packet from before the switch and one after: the one after comes back as
    # first sent; the one before the switch's keyframe is superseded and not resent
    assert s.retransmit([seqs[1], seqs[-1], (seqs[-1] + 100) & 0xFFFF]) == 1
    assert sink.sent[-1] == sent[-1] and len(sink.sent) == len(sent) + 1 and s.superseded == 1
    assert (r.c.nack_repaired, r.c.nack_missed) == (1, 1)


def test_nack_before_any_switch_is_answered_with_the_bytes_first_sent():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)
    r.frame(0xA)
    sent = list(sink.sent)
    assert s.retransmit([decode(sent[0])["seq"]]) == 1 and sink.sent[-1] == sent[0] and s.superseded == 0


def test_rtx_from_publisher_repairs_a_gap_in_order_for_the_slot():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.A, now=r.clock.t)
    raw = r.frame(0xA, key=True, packets=4, send=False)
    for i in (0, 1, 3):
        r.ing.handle(raw[i])
    assert len(r.A.missing) == 1  # noticed: upstream NACK due
    lost = raw[2]
    osn = lost[2:4]
    rtx = rtp(RTX_PT, 9, struct.unpack("!I", lost[4:8])[0], 0xAA, osn + lost[12 + 8:], exts=bytes((0x22, 1, 2, 3)))
    r.ing.handle(rtx)
    out = sorted((decode(d) for d in sink.sent), key=lambda o: o["seq"])
    assert len(out) == 4 and r.A.missing == {}
    assert_continuous(out)
    assert r.c.rtx_in == 1


def test_late_packet_goes_only_to_slots_that_carried_its_time():
    r = Rig()
    early, late = Capture(), Capture()
    s1 = r.slot(sink=early)
    s1.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)
    held = r.frame(0xA, send=False)  # lost upstream, repaired later
    r.clock.t += 10  # the keyframe run is too old to replay for a new slot
    s2 = r.slot(sink=late)
    s2.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)  # s2 starts here
    n1, n2 = len(early.sent), len(late.sent)
    for d in held:
        r.ing.handle(d)
    assert len(early.sent) == n1 + 3  # s1 carried A then: it gets the repair, renumbered in place
    assert len(late.sent) == n2  # s2 started after: never renumbered onto its earlier sequence numbers
    assert r.c.dropped_wrong_epoch == 3
    assert_continuous(sorted((decode(d) for d in early.sent), key=lambda o: o["seq"]))


def test_one_blocked_subscriber_does_not_stop_the_others():
    r = Rig()
    bad, good = Capture(fail=True), Capture()
    s1, s2 = r.slot(sink=bad), r.slot(sink=good)
    r.frame(0xA, key=True)
    s1.retarget(r.A, now=r.clock.t)
    s2.retarget(r.A, now=r.clock.t)
    r.frame(0xA)
    assert len(good.sent) == 6 and r.c.send_errors >= 3


def test_audio_switch_is_immediate_and_continuous():
    r = Rig()
    sink = Capture()
    s = r.slot("audio0", "audio", sink)
    s.retarget(r.M, now=r.clock.t)
    for _ in range(5):
        r.audio(level=25)
    out = [decode(d) for d in sink.sent]
    assert len(out) == 5 and all(o["ext"][2] == bytes((25,)) for o in out)
    assert [o["seq"] for o in out] == [(out[0]["seq"] + i) & 0xFFFF for i in range(5)]
    assert r.M.level == 25


def test_unbound_slot_starts_at_a_keyframe_when_its_transport_comes_up():
    r = Rig()
    s = Slot(None, "stage", "video", "0", 0x51, 100, 90000, counters=r.c)
    s.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)
    r.frame(0xA)
    sink = Capture()
    r.clock.t += 5  # the run is old by the time the subscriber connects
    s.bind(sink)
    r.frame(0xA)
    assert sink.sent == []  # no delta frame before a keyframe
    r.frame(0xA, key=True)
    assert decode(sink.sent[0])["key"]


def test_sender_report_maps_wallclock_to_the_slot_timeline():
    r = Rig()
    s = r.slot(sink=Capture())
    r.frame(0xA, key=True)
    s.retarget(r.A, now=r.clock.t)
    # publisher: NTP 1000.0 s <-> RTP 10_000; our wall clock runs 500 s ahead of the publisher's
    r.A.on_sender_report(int(1000.0 * 2**32), 10_000, r.clock.t)
    rtp_ts, packets, octets = s.sender_report_values(1502.0, clock_offset=500.0)
    assert rtp_ts == (10_000 + 2 * 90000 + s.ts_off) & 0xFFFFFFFF
    assert packets == s.packets and octets == s.octets


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=60), max_size=20))
def test_no_input_makes_ingress_raise(blobs):
    r = Rig()
    s = r.slot(sink=Capture())
    s.retarget(r.A, now=r.clock.t)
    for b in blobs:
        # as is, and dressed as a packet of a known SSRC
        r.ing.handle(b)
        r.ing.handle(struct.pack("!BBHII", 0x80, VP8_PT, 1, 2, 0xA) + b)
        r.ing.handle(struct.pack("!BBHII", 0x80, OPUS_PT, 1, 2, 0xC) + b)


def test_malformed_and_unknown_packets_are_counted():
    r = Rig()
    r.ing.handle(b"\x80\x60")  # truncated
    r.ing.handle(struct.pack("!BBHII", 0x90, VP8_PT, 1, 2, 0xA) + b"\xbe\xde\xff\xff")  # oversize extension
    r.ing.handle(rtp(55, 1, 2, 0xA, b"x"))  # unknown payload type
    r.ing.handle(rtp(VP8_PT, 1, 2, 0x999, b"x"))  # unknown SSRC, no MID
    r.ing.handle(rtp(VP8_PT, 1, 2, 0xA, b"\x80"))  # VP8 descriptor truncated
    assert (r.c.malformed_rtp, r.c.unknown_pt, r.c.unknown_ssrc) == (3, 1, 1)


def test_unannounced_ssrc_is_routed_by_mid():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.B, now=r.clock.t)
    r.ing.handle(rtp(VP8_PT, 5, 6, 0x777, vp8_payload(start=True, key=True), exts=bytes((0x10, ord("b")))))
    assert r.B.ssrc == 0x777 and len(sink.sent) == 1


def test_pause_and_resume_keep_one_continuous_stream():
    r = Rig()
    sink = Capture()
    s = r.slot(sink=sink)
    s.retarget(r.A, now=r.clock.t)
    r.frame(0xA, key=True)
    r.frame(0xA)
    s.pause()
    r.frame(0xA)
    n = len(sink.sent)
    s.resume(now=r.clock.t + 10)  # cached run too old: waits for a keyframe
    r.frame(0xA)
    assert len(sink.sent) == n
    r.frame(0xA, key=True)
    out = [decode(d) for d in sink.sent]
    assert len(out) == n + 3 and out[n]["key"]
    assert_continuous(out)


