"""Attendance events: what signaling and media report about each connected site.

Every event names the site, the connection (one browser tab's WebSocket session), the node that
saw it and the time it happened (UTC). Events are flat string maps in the briefing's Redis Stream
(short field names: the log of a 4-hour briefing holds about 260,000 of them):

    t   type (see TYPES)          id  stable event id "<writer>:<seq>" (set by the log)
    s   site code                 c   connection id      n  node id      at  epoch milliseconds

and, by type: ``r`` leave reason; ``p`` previous connection (reconnected); ``m``/``on`` medium and
state (media); ``bi``/``bo``/``l``/``rtt``/``ly`` bitrate in and out (kbit/s), loss (0..1), RTT (ms),
layer received (quality); ``rc``/``a`` roll call id and answer; ``by`` who (floor, absence reason);
``why`` the absence reason text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar


class LeaveReason(StrEnum):
    LEFT = "left"  # the site closed the page or pressed "leave"
    DROPPED = "dropped"  # the link was lost (WebSocket or ICE failed, heartbeat timed out)
    REMOVED = "removed"  # the chair removed the site
    ENDED = "ended"  # the briefing ended with the site still connected


class Medium(StrEnum):
    MIC = "mic"
    CAM = "cam"


class EventError(ValueError):
    """An event with a bad value: refused before it reaches the log."""


def now_utc() -> datetime:
    return datetime.now(UTC)


def to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise EventError(f"event time {t.isoformat()} has no time zone: use UTC")
    return int(t.timestamp() * 1000)


def from_ms(ms: int | str) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


MAX_TEXT = 500


def _text(name: str, value: str, *, empty: bool = False, limit: int = 128) -> None:
    if not isinstance(value, str):
        raise EventError(f"{name} must be text, not {type(value).__name__}")
    if not value and not empty:
        raise EventError(f"{name} is empty")
    if len(value) > limit:
        raise EventError(f"{name} is longer than {limit} characters")


@dataclass(frozen=True, kw_only=True)
class Event:
    """Common part of every event. ``id`` is set by the log when the event is appended."""

    TYPE: ClassVar[str] = ""
    site: str
    conn: str = ""
    node: str = ""
    at: datetime = field(default_factory=now_utc)
    id: str = ""

    def check(self) -> None:
        _text("site", self.site)
        _text("conn", self.conn, empty=True)
        _text("node", self.node, empty=True)
        to_ms(self.at)

    def extra(self) -> dict[str, str]:
        return {}

    def to_fields(self) -> dict[str, str]:
        out = {"t": self.TYPE, "id": self.id, "s": self.site, "c": self.conn, "n": self.node, "at": str(to_ms(self.at))}
        out.update(self.extra())
        return out


@dataclass(frozen=True, kw_only=True)
class Joined(Event):
    """A new connection of the site is up (media can flow)."""

    TYPE: ClassVar[str] = "joined"

    def check(self) -> None:
        super().check()
        _text("conn", self.conn)


@dataclass(frozen=True, kw_only=True)
class Left(Event):
    """A connection ended; ``reason`` says how."""

    TYPE: ClassVar[str] = "left"
    reason: LeaveReason = LeaveReason.LEFT

    def check(self) -> None:
        super().check()
        _text("conn", self.conn)
        try:
            LeaveReason(self.reason)
        except ValueError:
            raise EventError(f"leave reason {self.reason!r} must be one of {', '.join(LeaveReason)}") from None

    def extra(self) -> dict[str, str]:
        return {"r": str(LeaveReason(self.reason))}


@dataclass(frozen=True, kw_only=True)
class Reconnected(Event):
    """The page came back by itself on a new connection ``conn`` after ``previous`` dropped."""

    TYPE: ClassVar[str] = "reconnected"
    previous: str = ""

    def check(self) -> None:
        super().check()
        _text("conn", self.conn)
        _text("previous", self.previous, empty=True)

    def extra(self) -> dict[str, str]:
        return {"p": self.previous}


@dataclass(frozen=True, kw_only=True)
class MediaToggled(Event):
    """Microphone or camera switched on or off (by the site or by the chair)."""

    TYPE: ClassVar[str] = "media"
    medium: Medium = Medium.MIC
    on: bool = False
    by: str = ""

    def check(self) -> None:
        super().check()
        try:
            Medium(self.medium)
        except ValueError:
            raise EventError(f"medium {self.medium!r} must be mic or cam") from None
        _text("by", self.by, empty=True)

    def extra(self) -> dict[str, str]:
        return {"m": str(Medium(self.medium)), "on": "1" if self.on else "0", "by": self.by}


@dataclass(frozen=True, kw_only=True)
class QualitySample(Event):
    """One link-quality sample of a connection (every 10 s)."""

    TYPE: ClassVar[str] = "quality"
    bitrate_in: float = 0.0  # kbit/s received by the node from the site
    bitrate_out: float = 0.0  # kbit/s sent by the node to the site
    loss: float = 0.0  # fraction lost, 0..1 (worse of the two directions)
    rtt_ms: float = 0.0
    layer: str = ""  # the layer the site receives on stage, e.g. "h", "m", "l", "paused"

    def check(self) -> None:
        super().check()
        for name in ("bitrate_in", "bitrate_out", "rtt_ms", "loss"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise EventError(f"{name} must be a number >= 0, not {v!r}")
        if self.loss > 1:
            raise EventError(f"loss is a fraction 0..1, not {self.loss!r}")
        _text("layer", self.layer, empty=True, limit=16)

    def extra(self) -> dict[str, str]:
        return {
            "bi": _num(self.bitrate_in),
            "bo": _num(self.bitrate_out),
            "l": f"{self.loss:.4f}".rstrip("0").rstrip(".") or "0",
            "rtt": _num(self.rtt_ms),
            "ly": self.layer,
        }


@dataclass(frozen=True, kw_only=True)
class RollCallAnswer(Event):
    """The site answered a roll call (``roll_call`` names which one)."""

    TYPE: ClassVar[str] = "rollcall"
    roll_call: str = ""
    answer: str = "present"

    def check(self) -> None:
        super().check()
        _text("roll_call", self.roll_call, empty=True)
        _text("answer", self.answer, limit=64)

    def extra(self) -> dict[str, str]:
        return {"rc": self.roll_call, "a": self.answer}


@dataclass(frozen=True, kw_only=True)
class FloorGiven(Event):
    TYPE: ClassVar[str] = "floor_given"
    by: str = ""

    def extra(self) -> dict[str, str]:
        return {"by": self.by}


@dataclass(frozen=True, kw_only=True)
class FloorTaken(Event):
    TYPE: ClassVar[str] = "floor_taken"
    by: str = ""

    def extra(self) -> dict[str, str]:
        return {"by": self.by}


@dataclass(frozen=True, kw_only=True)
class AbsenceReason(Event):
    """An admin recorded (or, with an empty text, withdrew) the reason a site was absent."""

    TYPE: ClassVar[str] = "absence_reason"
    reason: str = ""
    by: str = ""

    def check(self) -> None:
        super().check()
        _text("reason", self.reason, empty=True, limit=MAX_TEXT)
        _text("by", self.by)

    def extra(self) -> dict[str, str]:
        return {"why": self.reason, "by": self.by}


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (Joined, Left, Reconnected, MediaToggled, QualitySample, RollCallAnswer, FloorGiven, FloorTaken, AbsenceReason)
}

_EXTRA_FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "left": {"r": ("reason", LeaveReason)},
    "reconnected": {"p": ("previous", str)},
    "media": {"m": ("medium", Medium), "on": ("on", lambda v: v == "1"), "by": ("by", str)},
    "quality": {"bi": ("bitrate_in", float), "bo": ("bitrate_out", float), "l": ("loss", float), "rtt": ("rtt_ms", float), "ly": ("layer", str)},
    "rollcall": {"rc": ("roll_call", str), "a": ("answer", str)},
    "floor_given": {"by": ("by", str)},
    "floor_taken": {"by": ("by", str)},
    "absence_reason": {"why": ("reason", str), "by": ("by", str)},
}


def decode(entry: Mapping[str, str]) -> Event | None:
    """The event of a stream entry; None for a type this version does not know (kept, not fatal)."""
    cls = TYPES.get(entry.get("t", ""))
    if cls is None:
        return None
    kwargs: dict[str, Any] = {
        "site": entry.get("s", ""),
        "conn": entry.get("c", ""),
        "node": entry.get("n", ""),
        "at": from_ms(entry.get("at", "0")),
        "id": entry.get("id", ""),
    }
    for short, (name, conv) in _EXTRA_FIELDS.get(cls.TYPE, {}).items():
        if short in entry:
            kwargs[name] = conv(entry[short])
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})
