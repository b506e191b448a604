from datetime import UTC, datetime, timedelta

import pytest

from confsvc.scheduling.errors import Invalid
from confsvc.scheduling.model import (
    Occurrence,
    Selection,
    State,
    Window,
    can_move,
    due_transitions,
    next_change,
    occurrence_id,
    split_occurrence_id,
)

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def w(a, b):
    return Window(T0 + timedelta(minutes=a), T0 + timedelta(minutes=b))


@pytest.mark.parametrize(
    "a, b, overlap",
    [
        ((0, 60), (30, 90), True),
        ((0, 60), (60, 120), False),  # back to back: the next lobby opens as the last briefing ends
        ((0, 60), (-60, 0), False),
        ((0, 120), (30, 60), True),  # contained
        ((30, 60), (0, 120), True),
        ((0, 60), (59, 61), True),
        ((0, 60), (120, 180), False),
    ],
)
def test_window_overlap_is_half_open(a, b, overlap):
    assert w(*a).overlaps(w(*b)) is overlap
    assert w(*b).overlaps(w(*a)) is overlap


def test_occurrence_id_round_trip():
    oid = occurrence_id("k3m9x2p7qa", T0)
    assert oid == "k3m9x2p7qa-20261123T0100Z"
    assert split_occurrence_id(oid) == ("k3m9x2p7qa", T0)
    with pytest.raises(ValueError):
        split_occurrence_id("nonsense")


def test_province_resolves_to_every_site(tree):
    assert len(Selection(province=True).resolve(tree)) == 183


def test_district_brings_its_communes_a_site_alone_does_not(tree):
    communes = [c.code for c in tree.communes_of("YB-MCC")]
    with_communes = Selection(districts=("YB-MCC",)).resolve(tree)
    assert with_communes == ["YB-MCC", *communes]
    assert Selection(sites=("YB-MCC",)).resolve(tree) == ["YB-MCC"]


def test_mixed_selection_is_deduplicated_in_tree_order(tree):
    c = tree.communes_of("YB-MCC")[0].code
    got = Selection(districts=("YB-MCC",), sites=(c, "YB", "YB-NL")).resolve(tree)
    assert got[0] == "YB" and len(got) == len(set(got)) == 1 + 1 + len(tree.communes_of("YB-MCC")) + 1


@pytest.mark.parametrize(
    "sel, field",
    [
        (Selection(), "selection"),
        (Selection(sites=("YB-NOPE",)), "selection.sites"),
        (Selection(districts=("YB-NOPE",)), "selection.districts"),
        (Selection(districts=("YB",)), "selection.districts"),  # the province is not a district
    ],
)
def test_bad_selection_names_the_field(tree, sel, field):
    with pytest.raises(Invalid) as err:
        sel.resolve(tree)
    assert err.value.field == field


def test_compress_gives_the_shortest_selection(tree):
    assert Selection.compress(tree.sites, tree) == Selection(province=True)
    mcc = {"YB-MCC", *tree.descendants("YB-MCC")}
    assert Selection.compress(mcc | {"YB"}, tree) == Selection(districts=("YB-MCC",), sites=("YB",))
    partial = mcc - {tree.communes_of("YB-MCC")[0].code}
    sel = Selection.compress(partial, tree)
    assert sel.districts == () and set(sel.sites) == partial
    assert set(sel.resolve(tree)) == partial


def occ(state=State.SCHEDULED):
    return Occurrence(
        id="x-20261123T0100Z", briefing_id="x", title="t", agenda="", chair="YB", invited_sites=("YB",),
        lobby_opens_at=T0 - timedelta(hours=1), starts_at=T0, ends_at=T0 + timedelta(hours=2), state=state,
        organizer="o", original_start=T0,
    )


def test_clock_rule_moves_one_step_at_a_time_on_time():
    o = occ()
    assert due_transitions(o, T0 - timedelta(hours=1, seconds=1)) == []
    assert due_transitions(o, T0 - timedelta(minutes=30)) == [(State.OPEN, o.lobby_opens_at)]
    assert due_transitions(occ(State.OPEN), T0) == [(State.LIVE, T0)]
    assert due_transitions(occ(State.LIVE), T0 + timedelta(hours=2)) == [(State.ENDED, o.ends_at)]


def test_clock_rule_catches_up_in_order_with_the_due_times():
    o = occ()
    assert due_transitions(o, T0 + timedelta(days=3)) == [
        (State.OPEN, o.lobby_opens_at),
        (State.LIVE, o.starts_at),
        (State.ENDED, o.ends_at),
    ]


def test_clock_rule_respects_the_chair_and_final_states():
    assert due_transitions(occ(State.LIVE), T0 - timedelta(minutes=30)) == []  # started early: not undone
    assert due_transitions(occ(State.ENDED), T0 + timedelta(minutes=30)) == []  # ended early: stays ended
    assert due_transitions(occ(State.CANCELLED), T0 + timedelta(days=1)) == []
    assert next_change(occ(State.OPEN)) == T0 and next_change(occ(State.ENDED)) is None


def test_state_machine():
    assert can_move(State.SCHEDULED, State.OPEN) and can_move(State.OPEN, State.LIVE) and can_move(State.LIVE, State.ENDED)
    assert can_move(State.OPEN, State.CANCELLED) and not can_move(State.LIVE, State.CANCELLED)
    assert not can_move(State.ENDED, State.LIVE) and not can_move(State.CANCELLED, State.OPEN)
