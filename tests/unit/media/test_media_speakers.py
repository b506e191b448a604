from confsvc.media.speakers import SpeakerDetector

SPEECH, SILENCE = 35, 127


def run(det, start, end, levels, step=0.02):
    """Feed every speaker's level function from start to end; update every 100 ms."""
    t = start
    changes = []
    next_update = start
    while t < end:
        for key, fn in levels.items():
            lv = fn(t)
            if lv is not None:
                det.feed(key, lv, t)
        if t >= next_update:
            dom, _ = det.update(t)
            if dom:
                changes.append((round(t, 2), det.dominant))
            next_update += 0.1
        t += step
    return changes


def test_steady_speaker_takes_the_floor_within_a_second_and_a_cough_does_not():
    det = SpeakerDetector()
    changes = run(det, 0.0, 3.0, {"A": lambda t: SPEECH, "B": lambda t: SILENCE})
    assert det.dominant == "A" and len(changes) == 1 and changes[0][0] <= 1.0
    # A goes quiet; B coughs for 300 ms: A keeps the floor
    changes = run(det, 3.0, 6.0, {"A": lambda t: SILENCE, "B": lambda t: SPEECH if 4.0 <= t < 4.3 else SILENCE})
    assert changes == [] and det.dominant == "A"
    # B starts speaking steadily at t=6: it takes the floor within a second
    changes = run(det, 6.0, 8.0, {"A": lambda t: SILENCE, "B": lambda t: SPEECH})
    assert det.dominant == "B"
    assert len(changes) == 1 and changes[0][0] - 6.0 <= 1.0


def test_a_speaker_talking_over_the_dominant_one_does_not_steal_it():
    det = SpeakerDetector()
    run(det, 0.0, 2.0, {"A": lambda t: SPEECH})
    changes = run(det, 2.0, 5.0, {"A": lambda t: SPEECH, "B": lambda t: SPEECH})
    assert changes == [] and det.dominant == "A"


def test_intermittent_noise_never_takes_the_floor():
    det = SpeakerDetector()
    # 100 ms bursts every 400 ms (keyboard, door): 25 % activity
    changes = run(det, 0.0, 5.0, {"N": lambda t: SPEECH if (t % 0.4) < 0.1 else SILENCE})
    assert changes == [] and det.dominant is None


def test_dtx_silence_counts_as_silence():
    det = SpeakerDetector()
    run(det, 0.0, 2.0, {"A": lambda t: SPEECH})
    # DTX: no packets at all for B except a packet every 400 ms
    changes = run(det, 2.0, 4.0, {"B": lambda t: SILENCE if (t % 0.4) < 0.02 else None})
    assert changes == [] and det.dominant == "A"
    assert det.activity("A") == 0.0  # A's window has emptied: it sent nothing


def test_muted_speakers_are_neither_dominant_nor_audible():
    det = SpeakerDetector(slots=2)
    det.set_muted("M", True)
    run(det, 0.0, 2.0, {"M": lambda t: SPEECH, "A": lambda t: SILENCE})
    assert det.dominant is None
    assert "M" not in det.audible


def test_audible_slots_are_sticky_and_go_to_clearly_more_active_speakers():
    det = SpeakerDetector(slots=2)
    for k in "ABC":
        det.add(k)
    det.update(0.0)
    first = list(det.audible)
    assert len(first) == 2
    outsider = ({"A", "B", "C"} - set(first)).pop()
    # the outsider talks: it replaces one member, the other keeps its position
    run(det, 0.0, 2.0, {outsider: lambda t: SPEECH})
    assert outsider in det.audible
    kept = [k for k in first if k in det.audible]
    assert len(kept) == 1 and det.audible.index(kept[0]) == first.index(kept[0])
