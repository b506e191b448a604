"""The room's side of bandwidth adaptation on stand-in participants (no peer connections): layers
declared at publish, the allocator's choices applied to slots, low data, pin, stats, metrics, the
probe's duplicates."""

from __future__ import annotations

import pytest
from media_helpers import Capture, decode, vp8_payload
from test_media_room import join

from confsvc.media import MediaConfig, Room
from confsvc.media.forwarder import Packet
from confsvc.media.room import MediaError, parse_layers
from confsvc.media.rtp import parse_vp8


def test_layers_are_validated_with_a_clear_error():
    mids = ["0", "1", "2"]
    ok = parse_layers([{"mid": "1", "rid": "h", "width": 1280, "height": 720, "max_kbps": 1500, "temporal": 3}], mids)
    assert ok["1"]["max_kbps"] == 1500
    for bad, match in (
        ("x", "list of 1 to 3"),
        ([], "list of 1 to 3"),
        ([{}] * 4, "list of 1 to 3"),
        ([{"mid": "9"}], "mid must name a video m-line"),
        ([{"mid": "0"}, {"mid": "0"}], "listed twice"),
        ([{"mid": "0", "width": -1}], "width must be an integer"),
        ([{"mid": "0", "max_kbps": "fast"}], "max_kbps must be an integer"),
        ([{"mid": "0", "temporal": 4}], "temporal must be an integer"),
        ([{"mid": "0", "fps": 30}], "unknown field"),
        ([3], "must be an object"),
    ):
        with pytest.raises(MediaError, match=match):
            parse_layers(bad, mids)


def chair_with_layers(room: Room, pid: str = "chair"):
    p = join(room, pid, video_layers=3)
    declared = {f"v{i}": {"mid": f"v{i}", "width": w, "height": h, "max_kbps": k}
                for i, (w, h, k) in enumerate(((320, 180, 150), (1280, 720, 1500), (640, 360, 500)))}
    p._declare_layers(declared)
    return p


@pytest.fixture
async def staged():
    """A room on default settings: the chair with three layers on the stage, site c1 watching.
    Yields (room, chair, site); the room is closed after the test."""
    room = Room(MediaConfig())
    try:
        chair = chair_with_layers(room)
        site = join(room, "c1")
        room.set_stage("chair")
        yield room, chair, site
    finally:
        await room.close()


async def test_declared_layers_are_ordered_by_resolution_and_the_allocator_drives_the_stage():
    room = Room(MediaConfig(initial_bps=800_000))
    try:
        chair = chair_with_layers(room)
        assert [(x.mid, x.layer) for x in chair.video_layers] == [("v1", 0), ("v2", 1), ("v0", 2)]
        site = join(room, "c1")
        room.set_stage("chair")
        stage = site.slots["stage"]
        # 800 kbps: the 640x360 layer (500k) fits, the 1280x720 one (1.5M) does not
        assert stage.target is chair.video_layers[1] and stage.layer_name == "mid"
        st = site.stats()
        assert st["slots"]["stage"]["layer"] == "mid" and st["estimate"]["estimate_bps"] == 800_000
        assert st["low_data"] is False and st["pin"] is None
    finally:
        await room.close()


async def test_low_data_pin_and_off():
    room = Room(MediaConfig(initial_bps=5_000_000))
    changes = []
    room.on_layer_change = lambda pid, slot, info: changes.append((pid, slot, info["layer"]))
    try:
        chair = chair_with_layers(room)
        site = join(room, "c1")
        room.set_stage("chair")
        stage = site.slots["stage"]
        assert stage.layer_name == "high"
        room.set_low_data("c1", True)
        assert stage.target is chair.video_layers[2] and stage.layer_name == "low"
        assert site.stats()["low_data"] is True
        room.pin_layer("c1", "high")  # the chair's pin wins over low data
        assert stage.target is chair.video_layers[0] and site.stats()["pin"] == "high"
        room.pin_layer("c1", "off")
        assert stage.paused and stage.layer_name == "off" and stage.producer is None
        room.pin_layer("c1", None)
        room.set_low_data("c1", False)
        assert not stage.paused and stage.target is chair.video_layers[0]
        assert ("c1", "stage", "low") in changes and ("c1", "stage", "off") in changes
        with pytest.raises(MediaError, match="pin must be one of"):
            room.pin_layer("c1", "ultra")
        with pytest.raises(MediaError, match="no participant"):
            room.set_low_data("nobody", True)
    finally:
        await room.close()


async def test_metrics_are_prometheus_friendly_numbers(staged):
    room, _chair, _site = staged
    room._adapt(1.0)
    names = {n for n, _labels, _v in room.metrics()}
    for want in ("confsvc_media_estimate_bps", "confsvc_media_slot_layer", "confsvc_media_slot_fps",
                 "confsvc_media_layer_bitrate_bps", "confsvc_media_rtp_out_total"):
        assert want in names
    assert all(isinstance(v, float) for _n, _l, v in room.metrics())


async def test_probe_duplicates_carry_the_numbers_already_sent_and_a_fresh_send_time(staged):
    room, chair, site = staged
    stage = site.slots["stage"]
    cap = Capture()
    stage.bind(cap)
    top = chair.video_layers[0]
    assert stage.pending is top or stage.target is top
    for i in range(12):
        payload = vp8_payload(start=True, key=(i == 0), pid=200 + i)
        pkt = Packet(5000 + i, 9000 + 3000 * i, 1, float(i), payload, b"\x32\x00\x00\x01")
        pkt.vp8 = parse_vp8(payload)
        pkt.keyframe, pkt.pid, pkt.tid = pkt.vp8.keyframe, pkt.vp8.pid, pkt.vp8.tid
        top.push(pkt)
    sent = [decode(d) for d in cap.sent]
    assert len(sent) == 12
    ext = b"\x32\xab\xcd\xef"
    n = stage.probe_send(3000, ext)
    dups = [decode(d) for d in cap.sent[12:]]
    assert n > 0 and dups
    by_seq = {d["seq"]: d for d in sent}
    for d in dups:
        orig = by_seq[d["seq"]]
        assert (d["ts"], d["pid"], d["payload"]) == (orig["ts"], orig["pid"], orig["payload"])
        assert d["ext"][3] == b"\xab\xcd\xef"
    assert stage.probe_packets == len(dups)


def test_shaped_link_tests_say_why_they_skip_when_not_root(monkeypatch):
    from bench import _netns

    monkeypatch.setattr(_netns.os, "geteuid", lambda: 1000)
    assert "root" in _netns.unavailable()


async def test_a_remb_drop_between_allocation_ticks_ends_a_probe_at_once():
    from confsvc.media.allocator import _Probe

    room = Room(MediaConfig(initial_bps=700_000))
    try:
        chair_with_layers(room)
        site = join(room, "c1")
        room.set_stage("chair")
        est, alloc = site.estimator, site.allocator
        est.update(1.0, remb=600_000, remb_at=1.0, sent_bps=550_000)
        alloc.probe = _Probe("stage", 1.0, est.congestion_events, 1_000_000, 1_550_000, (0, 255), 2.5)
        site.remb, site.remb_at = 590_000, 1.2  # a newer REMB, no drop: the probe goes on
        room._send_probes(1.3, 0.0)
        assert alloc.probe is not None
        site.remb, site.remb_at = 300_000, 1.4  # overuse: over at once
        room._send_probes(1.5, 0.0)
        assert alloc.probe is None and alloc.failed_probes == 1
        # what flowed before the probe is kept (the receiver's REMB counts only the media it kept)
        assert est.bps >= 550_000
    finally:
        await room.close()


async def test_probe_padding_tops_up_to_the_probed_rate_and_yields_to_a_keyframe_burst():
    from confsvc.media.allocator import _Probe

    room = Room(MediaConfig(initial_bps=700_000))
    try:
        chair_with_layers(room)
        site = join(room, "c1")
        room.set_stage("chair")
        stage = site.slots["stage"]
        asked: list[int] = []
        stage.probe_send = lambda nbytes, ext: asked.append(nbytes) or nbytes  # type: ignore[method-assign]
        alloc = site.allocator
        alloc.probe = _Probe("stage", 0.0, site.estimator.congestion_events, 400_000, 1_000_000, (1, 255), 2.5,
                             base_bps=160_000)
        room._send_probes(2.0, 0.0)  # the first tick marks where the probe starts
        assert asked == []
        # 0.1 s on, the slot sent its usual 2 kB: the padding is the extra (400k, all of it after the ramp)
        stage.octets += 2000 - 2 * 60
        stage.packets += 2
        room._send_probes(2.1, 0.0)
        assert asked == [pytest.approx(5000, abs=2)]
        # a keyframe burst: 7 kB went out in 0.1 s, all the probed 560k carries: no padding
        stage.octets += 7000 - 7 * 60
        stage.packets += 7
        room._send_probes(2.2, 0.0)
        assert len(asked) == 1
        # a burst that leaves some room: padding up to the probed rate only
        stage.octets += 4000 - 4 * 60
        stage.packets += 4
        room._send_probes(2.3, 0.0)
        assert asked[1:] == [pytest.approx(3000, abs=2)]
    finally:
        await room.close()


def _push(producer, seq: int, key: bool, arrival: float) -> None:
    payload = vp8_payload(start=True, key=key, pid=100 + seq)
    pkt = Packet(seq, 3000 * seq, 1, arrival, payload, b"")
    pkt.vp8 = parse_vp8(payload)
    pkt.keyframe, pkt.pid, pkt.tid = pkt.vp8.keyframe, pkt.vp8.pid, pkt.vp8.tid
    producer.push(pkt)


async def test_a_step_down_replays_the_cached_keyframe_run_a_step_up_waits_for_a_fresh_keyframe():
    from confsvc.media.allocator import ALL_TIDS, Choice

    room = Room(MediaConfig(initial_bps=5_000_000))
    try:
        chair = chair_with_layers(room)
        site = join(room, "c1")
        room.set_stage("chair")
        stage = site.slots["stage"]
        high, mid, low = chair.video_layers
        for producer in (high, mid, low):
            _push(producer, 1, True, 10.0)
            _push(producer, 2, False, 10.03)
        assert stage.producer is high
        forced: list[Choice] = []
        site.allocator.update = lambda now, est, demands, audio=0: {"stage": forced[-1]}  # type: ignore[method-assign]
        # down, from a link that no longer carries the high layer: at once, from the cached run
        forced.append(Choice(2, ALL_TIDS, 150_000, "down: over the estimate"))
        room._allocate(site, 10.5)
        assert stage.producer is low and stage.pending is None
        # up: the cached run of the mid layer is 0.5 s old; the low layer goes on until a fresh
        # keyframe of the mid one (no burst of half a second of the higher layer at once)
        forced.append(Choice(1, ALL_TIDS, 500_000, "up: the probe held"))
        room._allocate(site, 10.5)
        assert stage.producer is low and stage.pending is mid
        _push(mid, 3, True, 10.6)
        assert stage.producer is mid and stage.pending is None
    finally:
        await room.close()


async def test_a_packet_asked_for_again_within_an_rtt_is_not_resent_twice():
    room = Room(MediaConfig())
    try:
        site = join(room, "c1")
        stage = site.slots["stage"]
        stage.rtt = 0.2
        resent: list[list[int]] = []
        stage.retransmit = lambda seqs: resent.append(list(seqs)) or len(seqs)  # type: ignore[method-assign]
        assert site._not_in_flight(stage, [10, 11], 5.0) == [10, 11]
        # 100 ms later the receiver asks again for both and a new one: only the new one goes out
        assert site._not_in_flight(stage, [10, 11, 12], 5.1) == [12]
        assert site.nack_throttled == 2
        # an RTT on, the first resends may be lost too: again
        assert site._not_in_flight(stage, [10, 11, 12], 5.25) == [10, 11]
        assert site.stats()["nack_throttled"] == 3
    finally:
        await room.close()


async def test_receiver_report_rtt_samples_reach_the_estimator_as_queue_delay(staged):
    import time

    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    _room, _chair, site = staged
    stage = site.slots["stage"]
    site._slots_by_ssrc[stage.ssrc] = stage

    def report(rtt: float, lsr: int) -> None:
        stage.sr_sent[lsr] = time.time() - rtt - 0.05  # our SR went out rtt + 50 ms ago ...
        site._handle_sub_rtcp(RtcpRrPacket(ssrc=1, reports=[RtcpReceiverInfo(
            ssrc=stage.ssrc, fraction_lost=0, packets_lost=0, highest_sequence=1, jitter=0,
            lsr=lsr, dlsr=int(0.05 * 65536))]))  # ... and the receiver held it 50 ms

    report(0.010, 1)
    site._measure(1.0)
    assert site.estimator.rtt_min == pytest.approx(0.010, abs=0.005)
    assert site.estimator.unstable_at == float("-inf")
    report(0.160, 2)  # 150 ms of queue on the path
    site._measure(2.0)
    assert site.estimator.queue_delay == pytest.approx(0.150, abs=0.01)
    assert site.estimator.unstable_at == 2.0 and site.stats()["estimate"]["queue_delay_ms"] > 100
    site._measure(3.0)  # no report since: no new sample
    assert site.estimator.unstable_at == 2.0
