"""Bandwidth estimation and allocation per subscribing participant (DESIGN §4; issue 4).

Pure logic: no I/O, no aiortc, no clock of its own (every call takes ``now``), so unit tests can
replay synthetic or recorded traces. The room's ticker feeds these classes a few times a second
(never per packet) and applies what the allocator chooses to the participant's slots.

**Estimator** — how much the participant's downlink carries now, from what its browser reports:

- REMB (the receiver's delay-based estimate). A REMB *drop* is the receiver seeing overuse
  (libwebrtc's and aiortc's AIMD only lower their estimate on overuse, to 0.85 x the throughput
  they measured over the last second), so a drop is taken at once as the new capacity, lower
  still while it is well below what we sent and the averaging second still holds the rate from
  before a collapse (``Estimator._collapse_capacity``), so that a collapse goes straight to the
  fitting layer instead of through the one between. A rising or steady REMB says
  nothing about capacity above 1.5 x what we send (the AIMD clamps there), so it may raise the
  estimate but never caps a probe.
- The loss fraction of receiver reports: above ``loss_high`` the capacity is taken as
  ``sent x (1 - loss / 2)`` (GCC's loss-based rule), at most once per ``loss_hold`` seconds (the
  next report still covers the old rate); between ``loss_low`` and ``loss_high`` the link is not
  stable (no upgrade, no probe) but nothing is lowered.
- RTT: the smoothed RTT for display, and the raw samples of receiver reports: one more than
  ``rtt_queue`` above the minimum of the last ``rtt_window`` seconds is a queue building on the
  path, the first sign of a probe too many or a link that shrank (before loss, and on links with
  deep buffers before the receiver's overuse detector): the link is not stable (no upgrade; a
  running probe fails) but nothing is lowered. A probe lasts at least ``probe_rtts`` round trips.

**Allocator** — shares the estimate among the participant's video slots by priority (stage, then
grid slots in order) after the audio the participant receives, which is never cut. Each video slot
walks a *ladder*: every spatial layer at full frame rate from the top, then the lowest layer at
lower temporal caps (when the source has temporal layers), then *paused* (audio goes on).

- Down fast: a slot whose step costs more than its share of the estimate (with ``keep_margin``
  tolerance for bitrate noise) goes at once to the best step that fits: a spatial layer with that
  much headroom, if one does (a temporal cap changes at once and costs no keyframe: none needed).
- Up slowly: one step at a time, only after the link has been stable (no congestion signal) for
  ``stable_hold`` seconds and the slot has not changed for ``up_hold`` seconds. When the next step
  fits the estimate it is taken. When it does not (a REMB says little above 1.5 x what we send),
  the allocator *probes* without changing any layer: for ``probe_window`` seconds the room pads
  the slot with duplicates of packets already sent up to what the next step needs, starting at
  ``probe_start`` of that extra rate and reaching all of it after ``probe_ramp`` seconds, so that
  a link that cannot carry it shows a queue (REMB drop, RTT rise) before it drops media. The
  duplicates load the link but never reach the receiver's estimator (SRTP's replay check drops
  them first): they are seen through the delay and loss of the media queued behind them. If a
  congestion signal comes, the probe stops, the next one waits longer (``probe_backoff`` ..
  ``probe_backoff_max``) and, for ``probe_grace`` seconds, no report cuts the estimate below what
  flowed before the probe (the receiver's REMB after the overshoot counts only the media it kept,
  and can come late). If none comes, the slot takes that very step at once (even if the layer's
  measured bitrate moved a little since), and the next probe may start ``recover_hold`` after it
  instead of ``up_hold``: a link that just carried one more step is tried for the next one soon.
  A failed probe therefore costs no layer switch.
- A person's choice wins: a pinned slot keeps its layer (``"off"``: paused), and "low data" caps
  the estimate at ``low_data_bps``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

PAUSED = -1
ALL_TIDS = 255
LAYER_NAMES = ("high", "mid", "low")
# cumulative share of a layer's bitrate kept at temporal cap 0, 1, 2 for L1T3 (libwebrtc's split)
TEMPORAL_SHARE = (0.4, 0.6, 1.0)


def layer_name(layer: int, count: int) -> str:
    """high/mid/low for a source with ``count`` layers (layer 0 is the highest)."""
    if layer == PAUSED:
        return "off"
    if count <= 1:
        return "high"
    if layer == 0:
        return "high"
    if layer >= count - 1:
        return "low"
    return "mid"


def pin_to_layer(pin: str, count: int) -> int:
    """The layer index a chair's pin ("high", "mid", "low", "off") means on a ``count``-layer source."""
    if pin == "off":
        return PAUSED
    if pin == "high" or count <= 1:
        return 0
    if pin == "low":
        return count - 1
    return min(1, count - 1)


@dataclass(frozen=True)
class Step:
    layer: int  # PAUSED, or the index of the producer layer (0 = highest)
    tid: int  # temporal cap (ALL_TIDS = no cap)
    bps: int

    @property
    def paused(self) -> bool:
        return self.layer == PAUSED


def ladder(layer_bps: list[int | None], temporal: int = 1, lowest_only: bool = False) -> list[Step]:
    """Steps from the best to paused. ``layer_bps[i]`` is layer i's bitrate (0 = highest);
    ``temporal`` is the number of temporal layers of the source (1 or 3); ``lowest_only`` for grid
    thumbnails (only the lowest layer). A layer whose bitrate is None (not flowing) is left out."""
    steps: list[Step] = []
    live = [i for i, b in enumerate(layer_bps) if b is not None]
    if live:
        low = live[-1]
        for i in ([low] if lowest_only else live):
            steps.append(Step(i, ALL_TIDS, int(layer_bps[i])))  # type: ignore[arg-type]
        if temporal > 1:
            for tid in range(min(temporal, len(TEMPORAL_SHARE)) - 2, -1, -1):
                steps.append(Step(low, tid, int(layer_bps[low] * TEMPORAL_SHARE[tid])))  # type: ignore[operator]
    steps.append(Step(PAUSED, ALL_TIDS, 0))
    return steps


@dataclass
class EstimatorConfig:
    initial_bps: int = 2_000_000
    min_bps: int = 30_000
    max_bps: int = 50_000_000
    loss_low: float = 0.02
    loss_high: float = 0.10
    loss_hold: float = 1.5  # a lossy report is acted on at most once per this many seconds
    remb_drop: float = 0.95  # a REMB below this share of the previous one is an overuse signal
    remb_timeout: float = 5.0  # a REMB older than this is not used
    stable_after: float = 3.0  # after this long without a congestion signal, what we send fits
    remb_soft: float = 0.65  # a REMB drop to at least this share of what we send is "soft" ...
    remb_confirm: float = 3.0  # ... and is congestion only if another drop follows within this time
    # a REMB is 0.85 x the throughput of the last second: in a collapse (REMB drops less than this
    # apart) the first ones still average in the rate from before it (see _collapse_capacity)
    collapse_window: float = 1.0
    collapse_min: float = 0.35  # below this share of what was sent, a REMB is mostly the new rate
    rtt_queue: float = 0.08  # an RTT this far above the recent minimum is a queue building up
    rtt_window: float = 20.0  # the minimum RTT (the path without queues) over this many seconds


class Estimator:
    """Available downlink of one participant (see module docstring)."""

    def __init__(self, config: EstimatorConfig | None = None, now: float = 0.0) -> None:
        self.cfg = config or EstimatorConfig()
        self.bps = self.cfg.initial_bps
        self.remb: int | None = None
        self.remb_at = float("-inf")
        self.loss = 0.0
        self.rtt: float | None = None
        self.rtt_min: float | None = None
        self.queue_delay = 0.0  # the latest RTT sample above the recent minimum
        self._rtts: deque[tuple[float, float]] = deque()
        self.sent_bps = 0
        self.congested_at = float("-inf")  # last overuse or heavy loss
        self.unstable_at = float("-inf")  # last signal of any trouble (includes moderate loss)
        self._loss_cut_at = float("-inf")
        self._soft_drop_at = float("-inf")
        self._drop_at = float("-inf")  # the last REMB drop (soft or not)
        self._collapse_sent = 0  # what we sent when the current run of REMB drops began
        self._floor = 0  # while now < _floor_until, congestion does not cut below _floor (probe_failed)
        self._floor_until = float("-inf")
        self.congestion_events = 0

    def update(self, now: float, *, remb: int | None = None, remb_at: float | None = None,
               loss: float | None = None, rtt: float | None = None, sent_bps: int | None = None,
               rtt_sample: float | None = None) -> None:
        """One tick's inputs: the latest REMB (and when it came: a REMB not newer than the one
        already seen is ignored), the loss fraction (0..1) of receiver reports that arrived since
        the last call (None: none arrived), the RTT (smoothed, for display), the largest raw RTT
        sample of the receiver reports since the last call (None: none), and what we sent (bits/s,
        measured)."""
        cfg = self.cfg
        if sent_bps is not None:
            self.sent_bps = sent_bps
        if rtt is not None:
            self.rtt = rtt
        if rtt_sample is not None:
            self._rtt(now, rtt_sample)
        if remb is not None and remb_at is not None and remb_at > self.remb_at:
            prev = self.remb
            self.remb, self.remb_at = remb, remb_at
            if prev is not None and remb < prev * cfg.remb_drop and self.sent_bps and remb >= self.sent_bps:
                # a REMB that fell but is still at or above what we send is no overuse report (that
                # is 0.85 x what got through): the receiver's estimate follows what it receives, at
                # most 1.5 x it, and falls when a still picture makes the encoder send far below its
                # cap. The estimate follows it; no congestion, nothing blocked.
                self.bps = max(cfg.min_bps, min(self.bps, remb))
            elif prev is not None and remb < prev * cfg.remb_drop:
                if now - self._drop_at > cfg.collapse_window:
                    self._collapse_sent = self.sent_bps
                self._drop_at = now
                # the receiver saw overuse: its new value is 0.85 x the throughput it measured. When
                # that throughput is about what we send, one such report is as likely a delay spike
                # (a busy receiver or node) as a full link: it only blocks upgrades; a second one
                # soon after, or one far below what we send, is congestion.
                if self.sent_bps and remb >= self.sent_bps * cfg.remb_soft and \
                        now - self._soft_drop_at > cfg.remb_confirm:
                    self._soft_drop_at = now
                    self.unstable_at = now
                else:
                    self._congested(now, self._collapse_capacity(remb))
            elif prev is None and self.sent_bps and remb < self.sent_bps * 0.9:
                # the first REMB is the throughput the receiver measured: less than we send
                self._congested(now, remb)
            elif remb > self.bps:
                # a rising REMB is at most 1.5 x what the receiver gets (AIMD clamp); beyond it is noise
                ceiling = int(self.sent_bps * 1.5) + 10_000 if self.sent_bps else remb
                self.bps = max(self.bps, min(cfg.max_bps, remb, ceiling))
        if self.sent_bps and now - self.unstable_at >= cfg.stable_after:
            # no trouble reported for a while: the link carries what we send
            self.bps = max(self.bps, min(cfg.max_bps, int(self.sent_bps * 1.05)))
        if loss is not None:
            self.loss = loss
            if loss > cfg.loss_high:
                self.unstable_at = now
                if now - self._loss_cut_at >= cfg.loss_hold:
                    self._loss_cut_at = now
                    base = self.sent_bps or self.bps
                    self._congested(now, int(base * (1.0 - 0.5 * loss)))
                else:
                    self.congested_at = now
            elif loss > cfg.loss_low:
                self.unstable_at = now

    def _congested(self, now: float, capacity: int) -> None:
        self.congested_at = now
        self.unstable_at = now
        self.congestion_events += 1
        if now < self._floor_until:
            capacity = max(capacity, self._floor)
        self.bps = max(self.cfg.min_bps, min(self.bps, capacity))

    def _collapse_capacity(self, remb: int) -> int:
        """The capacity an overuse REMB stands for. It is 0.85 x what the receiver got over the last
        second; q = REMB / (0.85 x what we sent as the drops began) is the share that got through.
        When q is well below 1 but not small, the link fell within that second: the average still
        holds some of the old rate, and the rate now is lower than the average by about q again
        (a link that went from 4 Mbps to 400 kbps under 1.6 Mbps reads 1.0M, 0.85M, 0.72M, 0.34M
        0.3 s apart: this reads 0.54M at the second and goes straight to the layer that fits instead
        of through the one between). A small q is the new rate already, q >= 1 no collapse at all.
        On a link that shrank only a little (q about 0.75) it cuts a quarter too deep, which the
        next probe gives back: "down fast"."""
        s = self._collapse_sent
        if s <= 0:
            return remb
        q = remb / (0.85 * s)
        return int(remb * q) if self.cfg.collapse_min <= q < 1.0 else remb

    def _rtt(self, now: float, sample: float) -> None:
        """A raw RTT sample: the minimum of the recent ones is the path without queues; a sample
        well above it says a queue is building on the path (a probe too many, a link that shrank)
        before any loss: not a cut, but no upgrade or probe while it lasts."""
        cfg = self.cfg
        rtts = self._rtts
        rtts.append((now, sample))
        while rtts and rtts[0][0] < now - cfg.rtt_window:
            rtts.popleft()
        self.rtt_min = min(r for _, r in rtts)
        self.queue_delay = max(0.0, sample - self.rtt_min)
        if self.queue_delay > cfg.rtt_queue:
            self.unstable_at = now

    def probe_failed(self, now: float, before_bps: int, grace: float) -> None:
        """A probe above ``before_bps`` (what flowed, stably, before it) failed. Its overshoot says
        nothing about the rate below it: for ``grace`` seconds no congestion signal cuts the
        estimate below that rate (a receiver's REMB after overuse can come late, and counts only the
        packets it kept: a probe made of duplicates is not in it)."""
        self._floor, self._floor_until = before_bps, now + grace
        self.bps = max(self.bps, before_bps)

    def probe(self, bps: int) -> None:
        """The allocator is trying a higher rate: raise the estimate to it (a congestion signal
        brings it back down)."""
        self.bps = max(self.bps, min(self.cfg.max_bps, bps))

    def remb_fresh(self, now: float) -> bool:
        return now - self.remb_at <= self.cfg.remb_timeout

    def stats(self) -> dict:
        return {"estimate_bps": int(self.bps), "remb_bps": self.remb, "loss": round(self.loss, 4),
                "rtt_ms": round(self.rtt * 1000, 1) if self.rtt is not None else None,
                "queue_delay_ms": round(self.queue_delay * 1000, 1),
                "sent_bps": int(self.sent_bps), "congestion_events": self.congestion_events}


@dataclass
class Demand:
    """One video slot's situation for an allocation round."""

    name: str
    source: str | None  # who it shows (None: nothing to show)
    layer_bps: list[int | None]  # the source's layers' bitrates, highest first (None: not flowing)
    temporal: int = 1
    lowest_only: bool = False  # grid thumbnails
    pin: str | None = None  # "high" | "mid" | "low" | "off" | None (automatic)


@dataclass
class Choice:
    layer: int  # PAUSED or a layer index
    tid: int
    bps: int
    reason: str = ""

    @property
    def paused(self) -> bool:
        return self.layer == PAUSED


@dataclass
class AllocatorConfig:
    up_hold: float = 2.0  # a slot stays at least this long on a step before going up
    stable_hold: float = 3.0  # no congestion signal for this long before any upgrade
    probe_window: float = 2.5  # a probe that sees no congestion signal for this long succeeds ...
    probe_rtts: float = 8.0  # ... and for at least this many round trips (feedback needs them)
    probe_start: float = 0.25  # a probe starts at this share of its extra rate ...
    probe_ramp: float = 1.5  # ... and reaches all of it after this many seconds
    probe_grace: float = 1.5  # congestion reported this soon after a failed probe is the probe's
    probe_backoff: float = 3.0
    probe_backoff_max: float = 4.0
    recover_hold: float = 1.0  # after a step up that a probe earned, the next probe may start this soon
    keep_margin: float = 1.15  # the current step is kept while it costs <= margin x its share
    pause_below: float = 0.6  # video pauses when its share stays below this x the lowest step
    pause_after: float = 2.0  # for this long (or below the lowest step, with heavy loss)
    low_data_bps: int = 300_000


@dataclass
class _SlotState:
    source: str | None = None
    layer: int = PAUSED
    tid: int = ALL_TIDS
    bps: int = 0
    changed_at: float = float("-inf")
    switches: int = 0
    fresh: bool = False  # allocate afresh next round (a pin or low data ended)
    below_since: float | None = None  # since when the lowest step has not fitted


@dataclass
class _Probe:
    slot: str
    started: float
    congestion_before: int
    extra_bps: int
    target_bps: int
    step: tuple[int, int]  # the (layer, tid) it is for
    window: float
    base_bps: int = 0  # what the slot's current step sends


@dataclass
class Allocator:
    """Per participant: chooses each video slot's layer and temporal cap (module docstring)."""

    cfg: AllocatorConfig = field(default_factory=AllocatorConfig)
    low_data: bool = False
    slots: dict[str, _SlotState] = field(default_factory=dict)
    probe: _Probe | None = None
    next_probe_at: float = float("-inf")
    backoff: float = 0.0
    probes: int = 0
    failed_probes: int = 0
    _was_low_data: bool = False
    last_down: float = float("-inf")  # loss reports just after a step down are about the old rate
    earned: tuple[str, int, int] | None = None  # (slot, layer, tid) a probe showed the link carries
    _recovering: bool = False  # the last step up was earned by a probe: the next may come sooner

    def update(self, now: float, est: Estimator, demands: list[Demand], audio_bps: int = 0) -> dict[str, Choice]:
        cfg = self.cfg
        self._finish_probe(now, est)
        if self._was_low_data and not self.low_data:
            for st in self.slots.values():
                st.fresh = True
        self._was_low_data = self.low_data
        budget = est.bps
        if self.low_data:
            budget = min(budget, cfg.low_data_bps)
        budget -= audio_bps
        stable = now - est.unstable_at >= cfg.stable_hold and self.probe is None
        out: dict[str, Choice] = {}
        probe_candidate: tuple[Demand, _SlotState, Step, list[Step]] | None = None
        for d in demands:
            st = self.slots.setdefault(d.name, _SlotState())
            steps = ladder(d.layer_bps, d.temporal, d.lowest_only)
            if d.source is None or len(steps) == 1:
                self._set(st, now, Step(PAUSED, ALL_TIDS, 0), d.source, count=False)
                out[d.name] = Choice(PAUSED, ALL_TIDS, 0, "nothing to show")
                continue
            if d.pin is not None:
                layer = pin_to_layer(d.pin, len(d.layer_bps))
                step = next((s for s in steps if s.layer == layer and s.tid == ALL_TIDS), None) or \
                    (steps[-1] if layer == PAUSED else min(steps[:-1], key=lambda s: abs(s.layer - layer)))
                self._set(st, now, step, d.source)
                st.fresh = True
                out[d.name] = Choice(step.layer, step.tid, step.bps, f"pinned {d.pin}")
                budget -= step.bps
                continue
            fit = next((i for i, s in enumerate(steps) if s.bps <= budget), len(steps) - 1)
            if fit == len(steps) - 1 and st.layer != PAUSED and len(steps) > 1 and st.source == d.source \
                    and not st.fresh:
                # pausing is the last resort: only after pause_after seconds clearly below the lowest
                # step (share < pause_below x its bitrate), or below it with heavy loss that is not
                # about a higher step just left. A REMB after overuse is 0.85 x the payload
                # throughput the receiver measured, so a layer that fits reads ~0.75 of its wire rate.
                if st.below_since is None:
                    st.below_since = now
                clearly = budget < steps[-2].bps * cfg.pause_below or \
                    (est.loss > est.cfg.loss_high and now - self.last_down >= est.cfg.loss_hold)
                if not clearly or now - st.below_since < cfg.pause_after:
                    fit = len(steps) - 2
            else:
                st.below_since = None
            if st.source != d.source or st.changed_at == float("-inf") or st.fresh:
                # a new source, a new slot or the end of a pin: the best step that fits the estimate
                step, reason = steps[fit], "new source" if not st.fresh else "reallocated"
                st.fresh = False
            else:
                cur = self._index(steps, st)
                earned = self.earned is not None and self.earned[0] == d.name and cur > 0 and \
                    (steps[cur - 1].layer, steps[cur - 1].tid) == self.earned[1:]
                hold = cfg.recover_hold if self._recovering else cfg.up_hold
                if steps[cur].bps > max(budget, 0) * cfg.keep_margin and fit > cur:
                    # a spatial layer with the headroom keep_margin asks of a step to stay on it
                    # (else the next dip of a shrinking link sends it down again, through one more
                    # keyframe switch); temporal caps change at once and cost nothing: no headroom
                    down = next((i for i in range(fit, len(steps) - 1) if steps[i].tid == ALL_TIDS
                                 and steps[i].bps * cfg.keep_margin <= budget), fit)
                    step, reason = steps[down], "down: over the estimate"
                    self.last_down = now
                    self._recovering = False
                elif earned and stable:
                    # the probe for this very step held: take it, even if the layer's measured
                    # bitrate moved a little above what was probed since
                    step, reason = steps[cur - 1], "up: the probe held"
                    self._recovering = True
                elif fit < cur and stable and now - st.changed_at >= cfg.up_hold:
                    step, reason = steps[cur - 1], "up: fits the estimate"
                    self._recovering = False
                else:
                    step, reason = steps[cur], "hold"
                    # (the current step within keep_margin of the estimate: a step up just taken may
                    # measure a little above what was probed until stable_after catches up)
                    if cur > 0 and probe_candidate is None and stable and \
                            steps[cur].bps <= max(budget, 0) * cfg.keep_margin \
                            and now - st.changed_at >= hold and now >= self.next_probe_at:
                        probe_candidate = (d, st, steps[cur - 1], steps)
                if self.earned is not None and self.earned[0] == d.name:
                    self.earned = None  # taken, or void (the link is not stable, the ladder moved)
            self._set(st, now, step, d.source)
            out[d.name] = Choice(step.layer, step.tid, step.bps, reason)
            budget -= step.bps
        for name in [n for n in self.slots if n not in {d.name for d in demands}]:
            del self.slots[name]
        if probe_candidate is not None and all(c.reason.startswith(("hold", "pinned", "nothing"))
                                               for c in out.values()):
            d, st, step, _ = probe_candidate
            extra = step.bps - st.bps
            total = sum(c.bps for c in out.values()) + audio_bps + extra
            if not (self.low_data and total > cfg.low_data_bps):  # "low data" is the limit, not the link
                rtt = est.rtt if est.rtt is not None else est.rtt_min
                window = max(cfg.probe_window, cfg.probe_rtts * (rtt or 0.0))
                self.probe = _Probe(d.name, now, est.congestion_events, extra, total, (step.layer, step.tid),
                                    window, st.bps)
                self.probes += 1
        return out

    def probe_bps(self, now: float | None = None) -> tuple[str, int] | None:
        """While probing: (slot name, extra bits/s) that the sender must add on that slot (padding
        made of duplicates of packets already sent), to show whether the link carries the next step
        before any layer changes. The extra starts at ``probe_start`` of what the next step needs
        and grows to all of it over ``probe_ramp`` seconds, so that a link that cannot carry it
        shows a queue (a REMB drop, an RTT rise) before it drops media (``now`` None: all of it)."""
        p = self.probe
        if p is None:
            return None
        share = 1.0
        if now is not None and self.cfg.probe_ramp > 0:
            c = self.cfg
            share = min(1.0, c.probe_start + (1.0 - c.probe_start) * max(0.0, now - p.started) / c.probe_ramp)
        return p.slot, int(p.extra_bps * share)

    def probe_target(self, now: float) -> tuple[str, int, int] | None:
        """While probing: (slot name, what its current step sends, the extra at ``now``): the room
        pads the slot up to their sum, less what the slot sent itself meanwhile."""
        p = self.probe
        got = self.probe_bps(now)
        return (got[0], p.base_bps, got[1]) if p is not None and got is not None else None

    def _finish_probe(self, now: float, est: Estimator) -> None:
        p = self.probe
        if p is None:
            return
        congested = est.congestion_events > p.congestion_before
        if congested or est.unstable_at > p.started:
            # the link could not carry it (congestion: the estimate is already down; wait twice as
            # long next time) or said something was wrong (a dip, moderate loss, a queue: try again
            # later). What flowed before the probe was stable: the probe's overshoot says nothing
            # below it, nor does a late report of it (probe_grace)
            self.failed_probes += 1
            est.probe_failed(now, p.target_bps - p.extra_bps, self.cfg.probe_grace)
            if congested:
                self.backoff = min(self.cfg.probe_backoff_max, max(self.cfg.probe_backoff, self.backoff * 2))
            self.next_probe_at = now + max(self.backoff, self.cfg.probe_backoff)
            self.probe = None
            self._recovering = False
        elif now - p.started >= p.window:
            # it held: the link carries the next step; the allocator takes it (up: the probe held)
            est.probe(p.target_bps)
            self.earned = (p.slot, *p.step)
            self.backoff = 0.0
            self.next_probe_at = now + self.cfg.recover_hold
            self.probe = None

    @staticmethod
    def _index(steps: list[Step], st: _SlotState) -> int:
        for i, s in enumerate(steps):
            if s.layer == st.layer and s.tid == st.tid:
                return i
        # the ladder changed under it (fewer layers): the best step that costs no more
        return next((i for i, s in enumerate(steps) if s.bps <= st.bps), len(steps) - 1)

    @staticmethod
    def _set(st: _SlotState, now: float, step: Step, source: str | None, count: bool = True) -> None:
        if (st.layer, st.tid) != (step.layer, step.tid) or st.source != source:
            if count and st.changed_at != float("-inf") and st.source == source:
                st.switches += 1
            st.changed_at = now
        st.source, st.layer, st.tid, st.bps = source, step.layer, step.tid, step.bps

    def state(self, name: str) -> _SlotState | None:
        return self.slots.get(name)

    def stats(self) -> dict:
        return {"low_data": self.low_data, "probing": self.probe.slot if self.probe else None,
                "probes": self.probes, "failed_probes": self.failed_probes,
                "next_probe_in_backoff_s": self.backoff}
