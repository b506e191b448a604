"""Estimator and Allocator on synthetic traces (open loop: given REMB/loss series) and on a simple
closed-loop link model (loss and REMB follow what the allocator sends), with injected time."""

from __future__ import annotations

import json
import pathlib

import pytest

from confsvc.media.allocator import (
    ALL_TIDS,
    PAUSED,
    Allocator,
    AllocatorConfig,
    Demand,
    Estimator,
    EstimatorConfig,
    ladder,
    layer_name,
    pin_to_layer,
)

CHAIR = [1_500_000, 500_000, 150_000]
TICK = 0.25
TRACES = pathlib.Path(__file__).with_name("traces")


def stage(layers=CHAIR, temporal=1, pin=None, source="chair"):
    return [Demand("stage", source, list(layers), temporal, pin=pin)]


class Run:
    """Drives one participant's estimator + allocator tick by tick."""

    def __init__(self, initial=2_000_000, demands=None, audio=0, **alloc):
        self.t = 0.0
        self.est = Estimator(EstimatorConfig(initial_bps=initial))
        self.alloc = Allocator(AllocatorConfig(**alloc))
        self.demands = demands if demands is not None else stage()
        self.audio = audio
        self.log: list[tuple[float, dict]] = []
        self.remb_seq = 0.0
        self.choices = self.alloc.update(self.t, self.est, self.demands, audio)

    def media(self) -> int:
        return sum(c.bps for c in self.choices.values()) + self.audio

    def sent(self) -> int:
        probe = self.alloc.probe_bps(self.t)
        return self.media() + (probe[1] if probe else 0)

    def tick(self, remb=None, loss=None, rtt=None):
        self.t += TICK
        if remb is not None:
            self.remb_seq = self.t
        self.est.update(self.t, remb=remb, remb_at=self.remb_seq if remb is not None else None,
                        loss=loss, sent_bps=self.media(), rtt_sample=rtt)
        self.choices = self.alloc.update(self.t, self.est, self.demands, self.audio)
        self.log.append((self.t, {k: (c.layer, c.tid) for k, c in self.choices.items()}))
        return self.choices

    def layer(self, slot="stage"):
        return self.choices[slot].layer

    def switches(self, slot="stage", since=0.0):
        out, prev = [], None
        for t, ch in self.log:
            if prev is not None and ch[slot] != prev and t > since:
                out.append(t)
            prev = ch[slot]
        return out


class Link:
    """A toy bottleneck: loss is what exceeds capacity; the receiver's REMB behaves like an AIMD
    (drops to 0.85 x throughput on overuse, else grows 8 %/s, clamped at 1.5 x incoming).
    ``counted_probes=False``: the receiver's estimator never sees the probe's packets (duplicates
    that SRTP's replay check drops first), only the media share of what got through."""

    def __init__(self, capacity: int, counted_probes: bool = True) -> None:
        self.capacity = capacity
        self.remb: float | None = None
        self.rr_every = 1.0
        self._rr_next = 1.0
        self.counted_probes = counted_probes

    def step(self, run: Run) -> tuple[int, float | None]:
        sent = run.sent()
        thr = min(sent, self.capacity)
        if not self.counted_probes and sent:
            thr = thr * run.media() / sent
        if self.remb is None:
            self.remb = thr
        elif sent > self.capacity * 1.02:
            self.remb = 0.85 * thr
        else:
            self.remb = min(self.remb * 1.08 ** TICK, max(1.5 * thr + 10_000, self.remb))
        loss = None
        if run.t + TICK >= self._rr_next:
            self._rr_next += self.rr_every
            loss = max(0.0, (sent - self.capacity) / sent) if sent else 0.0
        return int(self.remb), loss


def drive(run: Run, link: Link, seconds: float):
    for _ in range(int(seconds / TICK)):
        remb, loss = link.step(run)
        run.tick(remb=remb, loss=loss)


# -- pure helpers ------------------------------------------------------------------------------


def test_ladder_goes_top_down_then_temporal_then_paused():
    steps = ladder(CHAIR, temporal=3)
    assert [(s.layer, s.tid) for s in steps] == [(0, ALL_TIDS), (1, ALL_TIDS), (2, ALL_TIDS), (2, 1), (2, 0),
                                                 (PAUSED, ALL_TIDS)]
    assert [s.bps for s in steps] == [1_500_000, 500_000, 150_000, 90_000, 60_000, 0]
    assert [(s.layer, s.tid) for s in ladder(CHAIR, lowest_only=True)] == [(2, ALL_TIDS), (PAUSED, ALL_TIDS)]
    # a layer that stopped flowing is left out
    assert [s.layer for s in ladder([None, 500_000, 150_000])] == [1, 2, PAUSED]


def test_names_and_pins():
    assert [layer_name(i, 3) for i in (0, 1, 2, PAUSED)] == ["high", "mid", "low", "off"]
    assert layer_name(0, 1) == "high"
    assert [pin_to_layer(p, 3) for p in ("high", "mid", "low", "off")] == [0, 1, 2, PAUSED]
    assert [pin_to_layer(p, 1) for p in ("high", "mid", "low")] == [0, 0, 0]


# -- open-loop traces ----------------------------------------------------------------------------


def test_a_good_link_starts_and_stays_on_top():
    run = Run()
    assert run.layer() == 0
    for _ in range(int(60 / TICK)):
        run.tick(remb=2_400_000, loss=0.0)
    assert run.layer() == 0 and run.switches() == []


def test_remb_collapse_goes_down_at_once_and_audio_is_kept():
    run = Run(audio=40_000)
    for _ in range(int(10 / TICK)):
        run.tick(remb=2_400_000, loss=0.0)
    assert run.layer() == 0
    run.tick(remb=300_000)  # the receiver saw overuse: 0.85 x what it measured
    assert run.layer() == 2, run.choices  # 150k + 40k audio fit in 300k; 500k does not
    run.tick(remb=60_000)
    assert run.layer() == 2  # below the lowest layer: pausing is the last resort, not the first reaction
    for _ in range(int(2.0 / TICK)):
        run.tick()
    assert run.choices["stage"].paused  # still below it 2 s later (no temporal layers): video pauses


def test_remb_collapse_with_temporal_layers_drops_frame_rate_before_pausing():
    run = Run(demands=stage(temporal=3))
    for _ in range(8):
        run.tick(remb=2_400_000, loss=0.0)
    run.tick(remb=100_000)
    assert (run.layer(), run.choices["stage"].tid) == (2, 1)  # 90 kbps: the lowest layer at half rate
    run.tick(remb=65_000)  # near what we send (90k): one such drop could be a delay spike ...
    assert (run.layer(), run.choices["stage"].tid) == (2, 1)
    run.tick(remb=61_000)  # ... a second one soon after is congestion
    assert (run.layer(), run.choices["stage"].tid) == (2, 0)
    run.tick(remb=40_000)  # a little short of the lowest step (60k): video is kept, pausing is the last resort
    assert (run.layer(), run.choices["stage"].tid) == (2, 0)
    run.tick(remb=30_000)
    for _ in range(int(2.0 / TICK)):
        run.tick()
    assert run.choices["stage"].paused


def test_loss_burst_steps_down_once_per_report_window_not_in_a_cascade():
    run = Run()
    for _ in range(int(5 / TICK)):
        run.tick(remb=2_400_000, loss=0.0)
    run.tick(loss=0.5)  # sent 1.5M, half lost -> capacity ~1.1M
    assert run.layer() == 1
    # the next report (still about the old rate) within loss_hold does not cut again
    run.tick(loss=0.5)
    assert run.layer() == 1
    for _ in range(int(1.5 / TICK)):
        run.tick()
    run.tick(loss=0.0)
    assert run.layer() == 1


def test_one_remb_dip_near_what_we_send_is_not_congestion_but_blocks_upgrades():
    run = Run()
    for _ in range(int(5 / TICK)):
        run.tick(remb=2_400_000, loss=0.0)
    run.tick(remb=1_300_000)  # 0.85 x a throughput of about what we send: a delay spike?
    assert run.layer() == 0 and run.est.congestion_events == 0
    run.tick(remb=1_200_000)  # again: the link is full
    assert run.layer() == 1 and run.est.congestion_events == 1


def test_moderate_loss_holds_without_lowering():
    run = Run(initial=700_000)
    assert run.layer() == 1
    for _ in range(int(30 / TICK)):
        run.tick(loss=0.05)
    assert run.layer() == 1 and run.alloc.probes == 0  # unstable: no probe, but no cut either


def test_pin_and_off_win_over_the_estimate():
    run = Run(demands=stage(pin="high"))
    run.tick(remb=200_000)
    assert run.layer() == 0 and run.choices["stage"].reason == "pinned high"
    run.demands = stage(pin="off")
    run.tick(remb=200_000)
    assert run.choices["stage"].paused


def test_low_data_caps_and_never_probes_beyond_it():
    run = Run()
    run.alloc.low_data = True
    for _ in range(int(40 / TICK)):
        run.tick(remb=5_000_000, loss=0.0)
    assert run.layer() == 2
    assert run.alloc.probes == 0 and len(run.switches()) <= 1


def test_priority_stage_before_grid():
    demands = [Demand("stage", "chair", CHAIR), Demand("grid0", "c1", [400_000], lowest_only=True),
               Demand("grid1", "c2", [400_000], lowest_only=True)]
    run = Run(initial=1_200_000, demands=demands)
    # 1.2M: stage cannot have 1.5M; mid (500k) then both grids (400k each) would be 1.3M: one pauses
    assert run.layer("stage") == 1
    assert run.layer("grid0") == 0 and run.choices["grid1"].paused


def test_a_new_source_gets_the_best_step_that_fits_the_estimate():
    run = Run(initial=600_000)
    assert run.layer() == 1
    for _ in range(4):  # 1 s: too soon for a probe
        run.tick(loss=0.0)
    run.demands = stage(layers=[400_000], source="district")
    run.tick()
    assert run.layer() == 0 and run.choices["stage"].reason == "new source"
    run.demands = stage(source="chair")
    run.tick()
    assert run.layer() == 1  # 600k: mid, at once (no up-hold for a new source)
    run.demands = stage(layers=[1_200_000], source="district")
    run.tick()
    assert run.choices["stage"].paused  # its one layer does not fit


# -- closed loop ---------------------------------------------------------------------------------


def test_slow_recovery_one_step_at_a_time_after_stability():
    run = Run()
    link = Link(4_000_000)
    drive(run, link, 10)
    assert run.layer() == 0
    link.capacity = 400_000
    drive(run, link, 2)
    assert run.layer() == 2
    t_low = run.t
    drive(run, link, 30)
    assert run.layer() == 2  # probes to mid fail and step back
    assert run.alloc.failed_probes >= 1
    # probes back off: fewer than one every stable_hold seconds
    assert run.alloc.probes <= 30 / 3.0
    link.capacity = 4_000_000
    back = run.t
    drive(run, link, 20)
    assert run.layer() == 0
    ups = [t for t in run.switches(since=back)]
    assert len(ups) == 2 and ups[1] - ups[0] >= 2.0  # low -> mid -> high, one step at a time
    assert ups[-1] - back <= 15.0
    assert t_low > 0


@pytest.mark.parametrize("capacity", [120_000, 250_000, 700_000, 1_000_000, 3_000_000])
def test_stable_link_at_most_one_switch_per_five_seconds_and_no_oscillation(capacity):
    run = Run()
    link = Link(capacity)
    drive(run, link, 120)
    sw = run.switches(since=2.0)  # after the first descent from the initial estimate (<= 2 s)
    for t in sw:  # no two switches within 5 s
        assert sum(1 for u in sw if t <= u < t + 5.0) <= 1, sw
    assert len(sw) <= 3, sw  # it settles: no up-down-up
    # and it settles on the best step the link carries
    steps = ladder(CHAIR)
    best = next(s for s in steps if s.bps <= capacity * 0.85 or s.paused)
    assert run.layer() == best.layer, (capacity, run.choices, run.est.stats())


def test_recorded_traces_go_down_fast_and_back_up():
    for path in sorted(TRACES.glob("*.json")):
        trace = json.loads(path.read_text())
        run = Run(initial=trace.get("initial_bps", 2_000_000), demands=stage(trace["layers"]))
        events = trace["ticks"]
        for tick in events:
            run.t = tick["t"] - TICK
            run.tick(remb=tick.get("remb"), loss=tick.get("loss"))
            tick["layer"] = run.layer()
        for check in trace["expect"]:
            window = [t["layer"] for t in events if check["from"] <= t["t"] <= check["to"]]
            assert window and all(x in check["layers"] for x in window), (path.name, check, window)


# -- probes, recovery, RTT (after reading bench/adaptation.py --trace) ----------------------------


def settle_on_low(run: Run, seconds: float = 3.25):
    """From the top layer, a REMB collapse to the low layer, then a quiet link for ``seconds`` (3.25:
    the first probe, stable_hold after the collapse, has just begun)."""
    for _ in range(int(5 / TICK)):
        run.tick(remb=2_400_000, loss=0.0)
    run.tick(remb=250_000)
    assert run.layer() == 2
    for _ in range(int(seconds / TICK)):
        run.tick(loss=0.0)


def test_a_probe_ramps_up_from_a_quarter_of_its_extra_rate():
    run = Run()
    settle_on_low(run)
    assert run.alloc.probe is not None
    p = run.alloc.probe
    slot, first = run.alloc.probe_bps(p.started)
    assert slot == "stage" and first == pytest.approx(p.extra_bps * 0.25, rel=0.01)
    assert run.alloc.probe_bps(p.started + 0.75)[1] == pytest.approx(p.extra_bps * 0.625, rel=0.01)
    assert run.alloc.probe_bps(p.started + 1.5)[1] == p.extra_bps == run.alloc.probe_bps()[1]
    assert p.window - AllocatorConfig().probe_ramp >= 1.0  # a second at the full rate at least


def test_a_probe_that_held_takes_its_step_though_the_layer_grew_a_little_since():
    run = Run()
    settle_on_low(run)
    assert run.alloc.probe is not None and run.layer() == 2
    # meanwhile the 640x360 layer measures 8 % above what is being probed: the probe's word holds
    run.demands = stage([1_500_000, 540_000, 150_000])
    reasons = []
    for _ in range(int(AllocatorConfig().probe_window / TICK)):
        run.tick(loss=0.0)
        reasons.append(run.choices["stage"].reason)
    assert run.layer() == 1 and "up: the probe held" in reasons
    assert run.alloc.earned is None
    # and it keeps it (within keep_margin of the estimate): no step back
    for _ in range(int(3 / TICK)):
        run.tick(loss=0.0)
    assert run.layer() in (0, 1) and len(run.switches(since=6.0)) <= 2


def test_a_late_remb_drop_after_a_failed_probe_does_not_cut_below_what_flowed_before_it():
    # the receiver only counts the media (the probe's duplicates never reach its estimator): after
    # overuse its REMB is 0.85 x the media it got, well below what the link carries
    run = Run(demands=stage(temporal=3))
    settle_on_low(run)
    assert run.alloc.probe is not None
    before = run.alloc.probe.target_bps - run.alloc.probe.extra_bps
    run.tick(remb=120_000)  # overuse: the probe failed
    assert run.alloc.probe is None and run.alloc.failed_probes == 1
    assert run.est.bps >= before and run.layer() == 2
    run.tick(remb=85_000)  # a second, late report of the same overshoot
    for _ in range(int(3 / TICK)):
        run.tick(loss=0.0)
    assert run.est.bps >= before
    assert (run.layer(), run.choices["stage"].tid) == (2, ALL_TIDS), run.choices  # no frame-rate cut, no pause


def test_a_remb_that_keeps_falling_goes_to_the_fitting_layer_without_a_step_between():
    # the link fell from 4 Mbps to 400 kbps: each REMB averages the last second, so the first ones
    # still mix in the old rate (bench trace: 1.84M, 1.04M, 0.72M, 0.34M, 0.3 s apart)
    run = Run(audio=40_000)
    for _ in range(int(5 / TICK)):
        run.tick(remb=1_840_000, loss=0.0)
    layers = []
    for remb in (1_036_000, 721_000):  # the second: falling still, the rate now is lower than this average
        run.tick(remb=remb)
        layers.append(run.layer())
    assert layers[-1] == 2, run.est.stats()
    for remb in (336_000, 300_000, None, None, None, None):
        run.tick(remb=remb)
        layers.append(run.layer())
    assert 1 not in layers and layers[-1] == 2 and not run.choices["stage"].paused, layers
    assert len(run.switches()) == 1


def test_a_remb_far_below_what_we_send_is_taken_as_it_is():
    # 300k under 1.5M: what got through is a small share, the 1 s average is the new rate already
    run = Run()
    for _ in range(int(5 / TICK)):
        run.tick(remb=2_400_000, loss=0.0)
    run.tick(remb=300_000)
    assert run.est.bps == 300_000 and run.layer() == 2
    # a REMB at about what we send is no collapse either: as it is
    run = Run(initial=600_000)
    assert run.layer() == 1
    for _ in range(int(1 / TICK)):
        run.tick(remb=800_000, loss=0.0)
    run.tick(remb=700_000)
    run.tick(remb=640_000)
    assert run.est.bps == 640_000 and run.layer() == 1


def test_rtt_growth_blocks_upgrades_and_fails_a_probe_without_cutting():
    run = Run()
    settle_on_low(run, seconds=2.0)
    for _ in range(int(1.25 / TICK)):
        run.tick(loss=0.0, rtt=0.030)
    assert run.alloc.probe is not None
    run.tick(rtt=0.180)  # a queue of 150 ms builds: the link does not carry the probe
    assert run.alloc.probe is None and run.alloc.failed_probes == 1
    assert run.layer() == 2 and run.est.congestion_events == 1  # the collapse only; RTT cuts nothing
    assert run.est.stats()["queue_delay_ms"] == 150.0
    for _ in range(int(2.5 / TICK)):
        run.tick(loss=0.0)
        assert run.alloc.probe is None  # not stable yet (stable_hold after the queue)


def test_rtt_jitter_without_a_queue_changes_nothing():
    run = Run()
    for i in range(int(60 / TICK)):
        run.tick(remb=2_400_000, loss=0.0, rtt=0.030 + 0.02 * (i % 3))
    assert run.layer() == 0 and run.switches() == [] and run.est.unstable_at == float("-inf")


def test_a_long_rtt_makes_a_probe_last_longer():
    run = Run()
    settle_on_low(run, seconds=2.0)
    for _ in range(int(2 / TICK)):
        run.tick(loss=0.0, rtt=0.6)
    assert run.alloc.probe is not None and run.alloc.probe.window == pytest.approx(8 * 0.6)


def test_invisible_probes_on_a_narrow_link_never_pause_video():
    # duplicates as probes: the receiver's REMB after each failed probe counts the media only
    run = Run(demands=stage(temporal=3), audio=40_000)
    link = Link(4_000_000, counted_probes=False)
    drive(run, link, 10)
    link.capacity = 400_000
    drive(run, link, 2)
    steps = []
    for _ in range(int(30 / TICK)):
        remb, loss = link.step(run)
        run.tick(remb=remb, loss=loss)
        steps.append((run.layer(), run.choices["stage"].tid))
    assert run.alloc.failed_probes >= 2
    assert set(steps) == {(2, ALL_TIDS)}, sorted(set(steps))


def test_when_the_link_comes_back_it_climbs_one_probed_step_at_a_time_soon():
    run = Run(audio=40_000)
    link = Link(4_000_000, counted_probes=False)
    drive(run, link, 10)
    link.capacity = 400_000
    drive(run, link, 30)
    assert run.layer() == 2
    link.capacity = 4_000_000
    back = run.t
    drive(run, link, 20)
    assert run.layer() == 0
    ups = run.switches(since=back)
    assert len(ups) == 2  # low -> mid -> high
    assert ups[1] - ups[0] >= AllocatorConfig().recover_hold + AllocatorConfig().probe_window
    # next probe (backoff at most 4 s after the last failure), 2 s probe, 1 s, 2 s probe
    assert ups[1] - back <= 4.0 + 3.0 + 2.0 + 1.0 + 2.0 + 1.0


def test_a_step_down_takes_a_spatial_layer_with_headroom():
    # the bench's layers; sending 1.6M, the link fell to 400k: the first overuse REMB (876k) reads
    # 0.6M after _collapse_capacity, just above the 640x360 layer: with the headroom a step needs
    # to stay (keep_margin), the 320x180 one, at once, not the middle one and then again the low one
    bench = [1_550_000, 530_000, 170_000]
    run = Run(demands=stage(bench))
    for _ in range(int(5 / TICK)):
        run.tick(remb=1_840_000, loss=0.0)
    run.tick(remb=876_000)
    assert 530_000 < run.est.bps < 530_000 * 1.15 and run.layer() == 2, run.est.stats()
    # a step down with room to spare for the middle layer takes it
    run = Run(demands=stage(bench))
    for _ in range(int(5 / TICK)):
        run.tick(remb=1_840_000, loss=0.0)
    run.tick(remb=950_000)  # reads 0.69M: 530k with 15 % to spare
    assert run.layer() == 1, run.est.stats()


def test_a_still_picture_s_falling_remb_above_what_we_send_is_no_congestion():
    """A still picture: the chair's layers send far below their caps (here 60/25/10 kbps), the
    receiver's REMB follows what it gets (about 1.5 x it) and falls whenever a keyframe's burst has
    passed. Falling, but still above what we send, it is no overuse report: the site keeps the top
    layer and upgrades are not blocked (before, these drops marked congestion and stepped it down)."""
    run = Run(initial=2_000_000, demands=stage(layers=[60_000, 25_000, 10_000]))
    assert run.layer() == 0
    events = run.est.congestion_events
    for i in range(int(20 / TICK)):
        run.tick(remb=[150_000, 120_000, 100_000, 90_000][i % 4], loss=0.0, rtt=0.010)
        assert run.layer() == 0, (run.t, run.choices)
    assert run.est.congestion_events == events
    assert run.t - run.est.unstable_at > 10
    # and a REMB below what we send still is
    run.tick(remb=30_000, loss=0.0)
    run.tick(remb=25_000, loss=0.0)
    assert run.est.congestion_events > events and run.layer() != 0
