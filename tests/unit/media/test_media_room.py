"""Room slot assignment (stage, grid, audio) on stand-in participants: no peer connections."""

import asyncio

from media_helpers import Capture

from confsvc.media import MediaConfig, Room
from confsvc.media.forwarder import Producer, Slot
from confsvc.media.room import TICK_SLICE


def join(room: Room, pid: str, *, video_layers: int = 1, audio: bool = True, grid: int = 0):
    p = room.add_participant(pid, grid_slots=grid)
    for layer in range(video_layers):
        p.producers.append(Producer(p, "video", f"v{layer}", 90000, counters=room.counters, layer=layer))
    if audio:
        p.producers.append(Producer(p, "audio", "a", 48000, counters=room.counters))
    names = ["stage"] + [f"audio{i}" for i in range(room.config.audio_slots)] + [f"grid{i}" for i in range(grid)]
    for i, name in enumerate(names):
        kind = "audio" if name.startswith("audio") else "video"
        s = Slot(p, name, kind, str(i), 1000 + i, 100, 90000, counters=room.counters, on_change=room._slot_changed)
        s.bind(Capture())
        p.slots[name] = s
    for prod in p.producers:
        room._producer_added(prod)
    return p


def targets(p) -> dict:
    return {n: (s.target.owner.id, s.target.layer) if s.target is not None else None for n, s in p.slots.items()}


async def test_stage_goes_to_everyone_and_the_holder_sees_the_previous_holder():
    room = Room(MediaConfig())
    try:
        chair, d1, c1 = join(room, "chair"), join(room, "d1"), join(room, "c1")
        room.set_stage("chair")
        assert targets(d1)["stage"] == ("chair", 0) and targets(c1)["stage"] == ("chair", 0)
        assert targets(chair)["stage"] is None  # nobody held it before
        room.set_stage("d1")
        assert targets(c1)["stage"] == ("d1", 0) and targets(chair)["stage"] == ("d1", 0)
        assert targets(d1)["stage"] == ("chair", 0)
        room.set_stage(None)
        assert targets(c1)["stage"] is None
    finally:
        await room.close()


async def test_grid_shows_the_lowest_layer_of_each_site():
    room = Room(MediaConfig())
    try:
        chair = join(room, "chair", grid=2)
        join(room, "d1", video_layers=3)
        join(room, "c1")
        room.set_grid("chair", ["d1", "c1"])
        t = targets(chair)
        assert t["grid0"] == ("d1", 2) and t["grid1"] == ("c1", 0)
    finally:
        await room.close()


async def test_audio_slots_carry_the_audible_speakers_but_oneself_and_never_the_muted():
    room = Room(MediaConfig(audio_slots=2))
    try:
        ps = [join(room, n) for n in ("a", "b", "c")]
        room.set_muted("c", True)
        for p in ps:
            carried = {s.target.owner.id for n, s in p.slots.items() if n.startswith("audio") and s.target}
            assert p.id not in carried and "c" not in carried
            assert carried == {"a", "b"} - {p.id}
    finally:
        await room.close()


async def test_dominant_speaker_and_slot_events_reach_the_callbacks():
    room = Room(MediaConfig())
    events = []
    room.on_dominant_speaker = lambda pid: events.append(("dominant", pid))
    try:
        a, b = join(room, "a"), join(room, "b")
        t = 1000.0
        for _ in range(60):  # 1.2 s of steady speech from b
            room._on_audio_level(b.audio, 30, t)
            room._on_audio_level(a.audio, 127, t)
            t += 0.02
        room._update_speakers(t)
        assert ("dominant", "b") in events and room.speakers.dominant == "b"
    finally:
        await room.close()


async def test_removing_a_participant_frees_every_slot_that_carried_it():
    room = Room(MediaConfig())
    changes = []
    room.on_slot_change = lambda pid, slot, who: changes.append((pid, slot, who))
    try:
        join(room, "chair")
        d1 = join(room, "d1")
        room.set_stage("chair")
        chair_video = room.participants["chair"].video
        # pretend the stage slot had attached (keyframe seen)
        d1.slots["stage"].producer = chair_video
        chair_video.slots.append(d1.slots["stage"])
        await room.remove_participant("chair")
        assert d1.slots["stage"].producer is None and d1.slots["stage"].target is None
        assert ("d1", "stage", None) in changes
        assert not chair_video.slots and not chair_video.waiting
        assert all(s.target is None or s.target.owner is not None for s in d1.slots.values())
    finally:
        await room.close()


async def test_bad_calls_are_refused_with_a_clear_error():
    import pytest

    from confsvc.media.room import MediaError

    room = Room(MediaConfig())
    try:
        join(room, "a")
        with pytest.raises(MediaError, match="already"):
            room.add_participant("a")
        with pytest.raises(MediaError, match="no participant"):
            room.set_stage("zz")
        with pytest.raises(MediaError, match="grid slots"):
            room.set_grid("a", ["a"])
        with pytest.raises(MediaError, match="not valid SDP|no audio or video"):
            await room.participants["a"].publish("v=0\r\n")
    finally:
        await room.close()


async def test_a_ticker_step_over_many_participants_lets_the_loop_serve_packets_in_between():
    room = Room(MediaConfig(tick=3600))
    try:
        for i in range(3 * TICK_SLICE):
            join(room, f"c{i}")
        for _ in range(50):  # any step the joins poked has finished
            await asyncio.sleep(0)
        order: list[str] = []
        for p in room.participants.values():
            p._refresh_sinks = lambda pid=p.id: order.append(pid) or False
        asyncio.get_running_loop().call_soon(order.append, "packet")
        await room._tick()
        served = [x for x in order if x != "packet"]
        assert served == list(room.participants)  # each participant once, in order
        assert 0 < order.index("packet") < len(order) - 1  # the loop ran between two slices
    finally:
        await room.close()
