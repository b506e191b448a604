"""The room's side of bandwidth adaptation on stand-in participants (no peer connections): layers
declared at publish, the allocator's choices applied to slots, low data, pin, stats, metrics, the
probe's duplicates."""

from __future__ import annotations

import pytest
from media_helpers import Capture, decode, rtp, vp8_payload
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


async def test_metrics_are_prometheus_friendly_numbers():
    room = Room(MediaConfig())
    try:
        chair_with_layers(room)
        join(room, "c1")
        room.set_stage("chair")
        room._adapt(1.0)
        names = {n for n, _labels, _v in room.metrics()}
        for want in ("confsvc_media_estimate_bps", "confsvc_media_slot_layer", "confsvc_media_slot_fps",
                     "confsvc_media_layer_bitrate_bps", "confsvc_media_rtp_out_total"):
            assert want in names
        assert all(isinstance(v, float) for _n, _l, v in room.metrics())
    finally:
        await room.close()


async def test_probe_duplicates_carry_the_numbers_already_sent_and_a_fresh_send_time():
    room = Room(MediaConfig())
    try:
        chair = chair_with_layers(room)
        site = join(room, "c1")
        room.set_stage("chair")
        stage = site.slots["stage"]
        cap = Capture()
        stage.bind(cap)
        top = chair.video_layers[0]
        assert stage.pending is top or stage.target is top
        for i in range(12):
            payload = vp8_payload(start=True, key=(i == 0), pid=200 + i)
            data = rtp(96, 5000 + i, 9000 + 3000 * i, 1, payload, marker=1)
            pkt = Packet(5000 + i, 9000 + 3000 * i, 1, float(i), payload, b"\x32\x00\x00\x01")
            pkt.vp8 = parse_vp8(payload)
            pkt.keyframe, pkt.pid, pkt.tid = pkt.vp8.keyframe, pkt.vp8.pid, pkt.vp8.tid
            assert data
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
    finally:
        await room.close()
