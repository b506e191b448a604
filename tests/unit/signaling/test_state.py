import pytest

from confsvc.signaling.protocol import ProtocolError
from confsvc.signaling.state import RoomState

SITES = [("YB", "Tỉnh", "province", None), ("D1", "Huyện 1", "district", "D1"), ("C1", "Xã 1", "commune", "D1"), ("C2", "Xã 2", "commune", "D1")]


def room(phase="lobby"):
    return RoomState("b1", "Giao ban", "YB", SITES, phase=phase)


def codes_of(err):
    return err.value.code


def test_wall_states_follow_connections_and_phase():
    r = room()
    assert r.counts() == {"not_joined": 4}
    r.connect("C1", "k1")
    assert r.sites["C1"].state(r.phase) == "lobby"
    r.start()
    assert r.sites["C1"].state(r.phase) == "connected"
    r.set_quality("C1", {"loss": 0.12})
    assert r.sites["C1"].state(r.phase) == "poor"
    r.disconnect("C1", "k1", "dropped")
    assert r.sites["C1"].state(r.phase) == "dropped"
    replaced, back = r.connect("C1", "k2")
    assert replaced is None and back is True
    r.disconnect("C1", "k2", "left")
    assert r.sites["C1"].state(r.phase) == "left"


def test_a_newer_connection_replaces_the_older_and_the_old_disconnect_is_ignored():
    r = room()
    r.connect("C1", "k1")
    replaced, back = r.connect("C1", "k2")
    assert replaced == "k1" and not back
    assert r.disconnect("C1", "k1", "dropped") is False
    assert r.sites["C1"].conn == "k2"


def test_microphone_opens_only_with_the_floor_or_open_mics():
    r = room("live")
    r.connect("C1", "k1")
    with pytest.raises(ProtocolError) as err:
        r.set_media("C1", True, None)
    assert codes_of(err) == "not_allowed"
    assert r.sites["C1"].mic is False
    r.give_floor("C1")
    assert r.set_media("C1", True, None)["mic"] is True
    assert r.stage() == "C1"
    r.take_floor()
    assert r.sites["C1"].mic is False and r.stage() == "YB"
    r.set_open_mics(True)
    r.set_media("C1", True, None)
    closed = r.set_open_mics(False)
    assert closed == ["C1"] and r.sites["C1"].mic is False


def test_floor_needs_a_connected_site_in_a_live_briefing():
    r = room("lobby")
    r.connect("C1", "k1")
    with pytest.raises(ProtocolError) as err:
        r.give_floor("C1")
    assert codes_of(err) == "bad_phase"
    r.start()
    with pytest.raises(ProtocolError) as err:
        r.give_floor("C2")
    assert codes_of(err) == "not_connected"
    with pytest.raises(ProtocolError) as err:
        r.give_floor("nowhere")
    assert codes_of(err) == "unknown_site"
    r.connect("C2", "k2")
    r.give_floor("C1")
    r.set_media("C1", True, None)
    previous = r.give_floor("C2")
    assert previous == "C1" and r.sites["C1"].mic is False and r.floor == "C2"


def test_hands_queue_in_raise_order_and_giving_the_floor_lowers_it():
    r = room("live")
    for c in ("C1", "C2"):
        r.connect(c, c)
    r.raise_hand("C2", True, 10.0)
    r.raise_hand("C1", True, 11.0)
    r.raise_hand("C2", True, 12.0)  # raising again keeps the place
    assert r.room_fields()["hands"] == ["C2", "C1"]
    r.give_floor("C2")
    assert r.room_fields()["hands"] == ["C1"]
    r.lower_hand("C1")
    assert r.room_fields()["hands"] == []


def test_roll_call_tally():
    r = room("live")
    for c in ("C1", "C2"):
        r.connect(c, c)
    rc = r.start_rollcall(1.0)
    assert r.room_fields()["rollcall"] == {"id": rc.id, "open": True, "answered": 0, "invited": 3}  # the chair is not asked
    r.answer_rollcall("C1", rc.id)
    assert r.room_fields()["rollcall"]["answered"] == 1
    with pytest.raises(ProtocolError):
        r.answer_rollcall("C2", "rc-old")
    r.end_rollcall()
    with pytest.raises(ProtocolError) as err:
        r.answer_rollcall("C2", rc.id)
    assert codes_of(err) == "no_rollcall"
    second = r.start_rollcall(2.0)
    assert second.id != rc.id and r.sites["C1"].rollcall is None


def test_lock_keeps_new_sites_out_but_lets_known_ones_back():
    r = room("live")
    r.connect("C1", "k1")
    r.disconnect("C1", "k1", "dropped")
    r.set_locked(True)
    with pytest.raises(ProtocolError) as err:
        r.connect("C2", "k2")
    assert codes_of(err) == "locked"
    r.connect("C1", "k3")  # came back after a drop
    r.connect("YB", "kc")  # the chair always


def test_removed_site_cannot_come_back_and_chair_cannot_be_removed():
    r = room("live")
    r.connect("C1", "k1")
    r.give_floor("C1")
    assert r.remove("C1") == "k1"
    assert r.floor is None and r.sites["C1"].state(r.phase) == "removed"
    with pytest.raises(ProtocolError) as err:
        r.connect("C1", "k2")
    assert codes_of(err) == "removed"
    with pytest.raises(ProtocolError):
        r.remove("YB")


def test_end_closes_everything():
    r = room("live")
    r.start_rollcall(0)
    r.end()
    assert r.phase == "ended" and not r.rollcall.open
    with pytest.raises(ProtocolError) as err:
        r.connect("C1", "k")
    assert codes_of(err) == "ended"
    with pytest.raises(ProtocolError):
        r.end()


def test_snapshot_is_complete():
    r = room()
    snap = r.snapshot()
    assert [s["code"] for s in snap["sites"]] == ["YB", "D1", "C1", "C2"]
    assert set(snap["room"]) >= {"phase", "floor", "stage", "locked", "open_mics", "rollcall", "hands", "speaker"}
    assert set(snap["sites"][0]) >= {"state", "mic", "cam", "hand", "quality", "low_data", "pin"}
