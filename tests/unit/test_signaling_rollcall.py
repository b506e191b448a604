"""The roll-call tally counts the sites that answered out of the sites asked (the chair is neither)."""

from confsvc.signaling.state import RoomState


def test_the_tally_counts_answering_sites_not_the_chair():
    st = RoomState("b", "t", "YB", [("YB", "Tỉnh", "province", None), ("A", "A", "commune", "D"), ("B", "B", "commune", "D")],
                   phase="live")
    rc = st.start_rollcall(0.0)
    assert st.room_fields()["rollcall"] == {"id": rc.id, "open": True, "answered": 0, "invited": 2}
    st.answer_rollcall("A", rc.id)
    assert st.room_fields()["rollcall"]["answered"] == 1
    st.answer_rollcall("B", rc.id)
    assert st.room_fields()["rollcall"]["answered"] == st.room_fields()["rollcall"]["invited"] == 2
