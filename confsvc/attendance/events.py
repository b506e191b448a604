"""Attendance events: what signaling and media report about each connected site.

Every event names the site, the connection (one browser tab's WebSocket session), the node that
saw it and the time it happened (UTC). In the briefing's Redis Stream each event is one entry with
one field ``e``: the event packed as ``|``-separated text (the log of a 4-hour briefing holds about
260,000 of them, and one short string per entry is what keeps reading them back fast)::

    <type>|<id>|<site>|<conn>|<node>|<epoch ms>|<fields of the type...>

    joined          (none)                      left         reason
    reconnected     previous connection         media        mic|cam, 1|0, by
    quality         kbit/s in, kbit/s out, loss 0..1, RTT ms, layer
    rollcall        roll call id, answer        floor_given / floor_taken   by
    absence_reason  by, reason text

``id`` is the stable event id ``<writer>:<seq>`` set by the log. Identifiers may not contain
``|``, ``%`` or line breaks; free text (answer, by, reason) is %-escaped. A reader skips types it
does not know and ignores trailing fields it does not know.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar
from urllib.parse import unquote


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


SEP = "|"
_FORBIDDEN = frozenset("|%\r\n")


def _text(name: str, value: str, *, empty: bool = False, limit: int = 128, ident: bool = True) -> None:
    if not isinstance(value, str):
        raise EventError(f"{name} must be text, not {type(value).__name__}")
    if not value and not empty:
        raise EventError(f"{name} is empty")
    if len(value) > limit:
        raise EventError(f"{name} is longer than {limit} characters")
    if ident and not _FORBIDDEN.isdisjoint(value):
        raise EventError(f"{name} may not contain '|', '%' or line breaks")


def esc(text: str) -> str:
    return text.replace("%", "%25").replace("|", "%7C").replace("\r", "%0D").replace("\n", "%0A")


def unesc(text: str) -> str:
    return unquote(text) if "%" in text else text


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

    def extra(self) -> list[str]:
        return []

    def encode(self) -> str:
        """The packed form kept in the stream and the spool."""
        return SEP.join([self.TYPE, self.id, self.site, self.conn, self.node, str(to_ms(self.at)), *self.extra()])


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

    def extra(self) -> list[str]:
        return [str(LeaveReason(self.reason))]


@dataclass(frozen=True, kw_only=True)
class Reconnected(Event):
    """The page came back by itself on a new connection ``conn`` after ``previous`` dropped."""

    TYPE: ClassVar[str] = "reconnected"
    previous: str = ""

    def check(self) -> None:
        super().check()
        _text("conn", self.conn)
        _text("previous", self.previous, empty=True)

    def extra(self) -> list[str]:
        return [self.previous]


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
        _text("by", self.by, empty=True, ident=False)

    def extra(self) -> list[str]:
        return [str(Medium(self.medium)), "1" if self.on else "0", esc(self.by)]


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

    def extra(self) -> list[str]:
        loss = f"{self.loss:.4f}".rstrip("0").rstrip(".") or "0"
        return [_num(self.bitrate_in), _num(self.bitrate_out), loss, _num(self.rtt_ms), self.layer]


@dataclass(frozen=True, kw_only=True)
class RollCallAnswer(Event):
    """The site answered a roll call (``roll_call`` names which one)."""

    TYPE: ClassVar[str] = "rollcall"
    roll_call: str = ""
    answer: str = "present"

    def check(self) -> None:
        super().check()
        _text("roll_call", self.roll_call, empty=True)
        _text("answer", self.answer, limit=64, ident=False)

    def extra(self) -> list[str]:
        return [self.roll_call, esc(self.answer)]


@dataclass(frozen=True, kw_only=True)
class FloorGiven(Event):
    TYPE: ClassVar[str] = "floor_given"
    by: str = ""

    def check(self) -> None:
        super().check()
        _text("by", self.by, empty=True, ident=False)

    def extra(self) -> list[str]:
        return [esc(self.by)]


@dataclass(frozen=True, kw_only=True)
class FloorTaken(Event):
    TYPE: ClassVar[str] = "floor_taken"
    by: str = ""

    def check(self) -> None:
        super().check()
        _text("by", self.by, empty=True, ident=False)

    def extra(self) -> list[str]:
        return [esc(self.by)]


@dataclass(frozen=True, kw_only=True)
class AbsenceReason(Event):
    """An admin recorded (or, with an empty text, withdrew) the reason a site was absent."""

    TYPE: ClassVar[str] = "absence_reason"
    reason: str = ""
    by: str = ""

    def check(self) -> None:
        super().check()
        _text("reason", self.reason, empty=True, limit=MAX_TEXT, ident=False)
        _text("by", self.by, ident=False)

    def extra(self) -> list[str]:
        return [esc(self.by), esc(self.reason)]


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


TYPES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (Joined, Left, Reconnected, MediaToggled, QualitySample, RollCallAnswer, FloorGiven, FloorTaken, AbsenceReason)
}

_TEXT = unesc
_EXTRA_FIELDS: dict[str, list[tuple[str, Any]]] = {
    "left": [("reason", LeaveReason)],
    "reconnected": [("previous", str)],
    "media": [("medium", Medium), ("on", lambda v: v == "1"), ("by", _TEXT)],
    "quality": [("bitrate_in", float), ("bitrate_out", float), ("loss", float), ("rtt_ms", float), ("layer", str)],
    "rollcall": [("roll_call", str), ("answer", _TEXT)],
    "floor_given": [("by", _TEXT)],
    "floor_taken": [("by", _TEXT)],
    "absence_reason": [("by", _TEXT), ("reason", _TEXT)],
}


def event_id(packed: str) -> str:
    """The id of a packed event (its second field)."""
    return packed.split(SEP, 2)[1]


def decode(packed: str) -> Event | None:
    """The event of a packed entry; None for a type this version does not know (kept, not fatal)."""
    p = packed.split(SEP)
    cls = TYPES.get(p[0])
    if cls is None or len(p) < 6:
        return None
    kwargs: dict[str, Any] = {"id": p[1], "site": p[2], "conn": p[3], "node": p[4], "at": from_ms(p[5])}
    for (name, conv), value in zip(_EXTRA_FIELDS.get(cls.TYPE, []), p[6:], strict=False):
        kwargs[name] = conv(value)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})
