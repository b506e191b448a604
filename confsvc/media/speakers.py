"""SpeakerDetector: who holds the floor acoustically, and who the audio slots carry.

Input: the RFC 6464 audio level of each audio packet (0 = loudest, 127 = silence, in -dBov).
A packet at or below ``speech_level`` counts as voiced. A speaker's *activity* is the share of the
last ``window`` seconds that was voiced (packets are ``ptime`` long, so DTX silences count as
silence). Rules, a simpler level-and-hold cousin of Volfin and Cohen:

- a speaker becomes a *candidate* when its activity reaches ``min_activity`` (a cough of
  300 ms over a 0.8 s window never does; a steady talker does after ~0.45 s);
- with no dominant speaker, the most active candidate takes the floor;
- a challenger takes the floor from the dominant speaker only if it is a candidate, is clearly
  more active (``margin``), and the dominant one has held it at least ``hold`` seconds.

The audio slots carry up to ``slots`` speakers, sticky: a member keeps its place until a
non-member is clearly more active than the weakest member. Muted speakers are never carried.

Pure logic: time is passed in, so tests feed synthetic sequences.
"""

from __future__ import annotations

from collections.abc import Hashable


class _Speaker:
    __slots__ = ("buckets", "voiced", "loud", "muted")

    def __init__(self, nbuckets: int) -> None:
        self.buckets = [0] * nbuckets  # voiced packets per bucket
        self.voiced = 0  # sum of buckets
        self.loud = 0.0  # smoothed loudness (127 - level) of voiced packets
        self.muted = False


class SpeakerDetector:
    def __init__(
        self,
        *,
        speech_level: int = 60,
        window: float = 0.8,
        min_activity: float = 0.55,
        hold: float = 0.5,
        margin: float = 0.2,
        ptime: float = 0.02,
        bucket: float = 0.1,
        slots: int = 3,
    ) -> None:
        self.speech_level = speech_level
        self.window = window
        self.min_activity = min_activity
        self.hold = hold
        self.margin = margin
        self.bucket = bucket
        self.slots = slots
        self._nb = max(1, round(window / bucket))
        self._full = window / ptime  # voiced packets that make activity 1.0
        self._speakers: dict[Hashable, _Speaker] = {}
        self._cur = -1  # current bucket index (time // bucket)
        self.dominant: Hashable | None = None
        self._since = float("-inf")
        self.audible: list[Hashable] = []

    # -- input -------------------------------------------------------------------------------

    def add(self, key: Hashable) -> None:
        if key not in self._speakers:
            self._speakers[key] = _Speaker(self._nb)

    def remove(self, key: Hashable) -> None:
        self._speakers.pop(key, None)
        if self.dominant == key:
            self.dominant = None
        if key in self.audible:
            self.audible = [k for k in self.audible if k != key]

    def set_muted(self, key: Hashable, muted: bool) -> None:
        self.add(key)
        self._speakers[key].muted = muted

    def feed(self, key: Hashable, level: int, now: float) -> None:
        """One audio packet of ``key`` with RFC 6464 level ``level`` at time ``now``."""
        self._advance(now)
        sp = self._speakers.get(key)
        if sp is None:
            sp = self._speakers[key] = _Speaker(self._nb)
        if level <= self.speech_level:
            sp.buckets[self._cur % self._nb] += 1
            sp.voiced += 1
            sp.loud += 0.1 * ((127 - level) - sp.loud)

    def _advance(self, now: float) -> None:
        idx = int(now / self.bucket)
        if idx == self._cur:
            return
        if self._cur < 0 or idx - self._cur >= self._nb:
            for sp in self._speakers.values():
                sp.buckets = [0] * self._nb
                sp.voiced = 0
        else:
            for i in range(self._cur + 1, idx + 1):
                slot = i % self._nb
                for sp in self._speakers.values():
                    sp.voiced -= sp.buckets[slot]
                    sp.buckets[slot] = 0
        self._cur = idx

    # -- output ------------------------------------------------------------------------------

    def activity(self, key: Hashable) -> float:
        sp = self._speakers.get(key)
        if sp is None:
            return 0.0
        return min(1.0, sp.voiced / self._full)

    def update(self, now: float) -> tuple[bool, bool]:
        """Re-decide; returns (dominant changed, audible set changed)."""
        self._advance(now)
        act = {k: (0.0 if sp.muted else min(1.0, sp.voiced / self._full)) for k, sp in self._speakers.items()}
        dom_changed = False
        candidates = [k for k, a in act.items() if a >= self.min_activity]
        if candidates:
            best = max(candidates, key=lambda k: (act[k], self._speakers[k].loud))
            if self.dominant is None or self.dominant not in act:
                self._set_dominant(best, now)
                dom_changed = True
            elif best != self.dominant and now - self._since >= self.hold:
                if act[best] >= act[self.dominant] + self.margin:
                    self._set_dominant(best, now)
                    dom_changed = True
        # audio slots
        before = list(self.audible)
        members = [k for k in self.audible if k in act and not self._speakers[k].muted]
        others = sorted((k for k in act if k not in members and not self._speakers[k].muted),
                        key=lambda k: -act[k])
        for k in others:
            if len(members) < self.slots:
                members.append(k)
                continue
            weakest = min(members, key=lambda m: act[m])
            if act[k] >= act[weakest] + self.margin and act[k] > 0:
                members[members.index(weakest)] = k
        self.audible = members
        return dom_changed, members != before

    def _set_dominant(self, key: Hashable, now: float) -> None:
        self.dominant = key
        self._since = now
