"""What a room keeps across a node restart: RoomState.durable() and restore()."""

from __future__ import annotations

import json

import pytest

from confsvc.signaling.state import DROPPED, LEFT, REMOVED, RoomState

SITES = [("YB", "Tỉnh", "province", None), ("A", "Huyện A", "district", None),
         ("B", "Xã B", "commune", "A"), ("C", "Xã C", "commune", "A"), ("D", "Xã D", "commune", "A")]


def live_room() -> RoomState:
    st = RoomState("occ1", "Giao ban", "YB", SITES, phase="live")
    for code, conn in (("YB", "c0"), ("A", "c1"), ("B", "c2"), ("C", "c3")):
        st.connect(code, conn)
    return st


def test_what_the_chair_and_the_sites_did_survives_a_round_trip_through_json():
    st = live_room()
    st.give_floor("A")
    st.set_locked(True)
    st.set_open_mics(True)
    rc = st.start_rollcall(1000.0)
    st.answer_rollcall("B", rc.id)
    st.raise_hand("C", True, 1001.5)
    st.set_low_data("B", True)
    st.pin_quality("C", "low")
    st.remove("D")
    st.disconnect("C", "c3", LEFT)

    again = RoomState("occ1", "Giao ban", "YB", SITES, phase="live")
    again.restore(json.loads(json.dumps(st.durable())))
    room = again.room_fields()
    assert room["floor"] == "A" and room["stage"] == "A" and room["locked"] and room["open_mics"]
    assert room["rollcall"] == {"id": rc.id, "open": True, "answered": 1, "invited": 4}
    s = again.sites
    assert s["B"].low_data and s["B"].rollcall == rc.id
    assert s["C"].pin == "low"
    assert s["C"].hand is None  # a page that left lowers its hand
    states = {c: x.state("live") for c, x in s.items()}
    # the connected pages were live on the node that went away: they show as dropped until they are back
    assert states == {"YB": DROPPED, "A": DROPPED, "B": DROPPED, "C": LEFT, "D": REMOVED}
    # a removed site stays out, a dropped one comes back (into the locked room) and is told it was back
    with pytest.raises(Exception, match="removed"):
        again.connect("D", "x")
    assert again.connect("B", "c9") == (None, True)
    # the next roll call is a new one
    assert again.start_rollcall(2000.0).id != rc.id


def test_a_raised_hand_of_a_connected_site_is_kept():
    st = live_room()
    st.raise_hand("B", True, 5.0)
    st.raise_hand("C", True, 6.0)
    st.disconnect("C", "c3", DROPPED)  # a dropped page keeps its place in the queue
    again = RoomState("occ1", "Giao ban", "YB", SITES, phase="live")
    again.restore(st.durable())
    assert again.room_fields()["hands"] == ["B", "C"]


def test_a_site_no_longer_invited_and_an_unknown_layout():
    st = live_room()
    st.give_floor("C")
    saved = st.durable()
    fewer = RoomState("occ1", "Giao ban", "YB", [x for x in SITES if x[0] != "C"], phase="live")
    fewer.restore(saved)
    assert fewer.floor is None and "C" not in fewer.sites
    with pytest.raises(ValueError, match="layout"):
        fewer.restore({"v": 99})


def test_an_ended_briefing_has_no_floor():
    st = live_room()
    st.give_floor("A")
    ended = RoomState("occ1", "Giao ban", "YB", SITES, phase="ended")
    ended.restore(st.durable())
    assert ended.floor is None


def test_the_messages_that_skip_the_saver_are_real_types_that_keep_nothing():
    """A message left out of saving must exist, and must not touch what durable() keeps."""
    from confsvc.signaling.hub import _NO_ROOM_CHANGE
    from confsvc.signaling.protocol import CLIENT_TYPES

    assert _NO_ROOM_CHANGE <= set(CLIENT_TYPES)
    assert not _NO_ROOM_CHANGE & {"give_floor", "take_floor", "lock", "open_mics", "remove", "rollcall_start",
                                  "rollcall_end", "rollcall_answer", "raise_hand", "lower_hand", "low_data",
                                  "pin_quality", "end", "start", "leave"}
