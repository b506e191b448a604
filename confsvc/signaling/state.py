"""The room's state as the server holds it (pure: no I/O, no clock of its own).

The server is the authority: pages send wishes, ``RoomState`` decides and says what changed.
Every method returns the patches to push (``site`` entries and ``room`` fields), so the session
layer only forwards them. A reconnecting page gets ``snapshot()`` in one message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from confsvc.signaling.protocol import ProtocolError

# a site's live state on the chair's wall
NOT_JOINED, LOBBY, CONNECTED, POOR, DROPPED, LEFT, REMOVED = (
    "not_joined", "lobby", "connected", "poor", "dropped", "left", "removed",
)
PHASES = ("lobby", "live", "ended")

POOR_LOSS = 0.05  # a link losing more than 5 % ...
POOR_RTT_MS = 600  # ... or slower than this round trip is "poor"


@dataclass
class SiteState:
    code: str
    name: str
    kind: str
    district: str | None
    conn: str | None = None  # the live connection's id (one per site: a newer tab takes over)
    exit: str | None = None  # how the last connection ended: left, dropped, removed
    mic: bool = False
    cam: bool = False
    hand: float | None = None  # when raised (for the queue's order)
    low_data: bool = False
    pin: str | None = None
    quality: dict[str, float] = field(default_factory=dict)
    rollcall: str | None = None  # id of the roll call this site answered
    joined_once: bool = False
    recv: dict[str, Any] = field(default_factory=dict)  # what its stage receives: layer, fps, paused

    def state(self, phase: str) -> str:
        if self.exit == REMOVED:
            return REMOVED
        if self.conn is not None:
            if phase == "lobby":
                return LOBBY
            if self.is_poor():
                return POOR
            return CONNECTED
        if not self.joined_once:
            return NOT_JOINED
        return LEFT if self.exit == LEFT else DROPPED

    def is_poor(self) -> bool:
        q = self.quality
        return q.get("loss", 0.0) > POOR_LOSS or q.get("rtt_ms", 0.0) > POOR_RTT_MS

    def public(self, phase: str) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "kind": self.kind,
            "district": self.district,
            "state": self.state(phase),
            "mic": self.mic,
            "cam": self.cam,
            "hand": self.hand is not None,
            "hand_at": self.hand,
            "low_data": self.low_data,
            "pin": self.pin,
            "quality": dict(self.quality),
            "rollcall": self.rollcall,
            "recv": dict(self.recv),
        }


@dataclass
class RollCall:
    id: str
    started_at: float
    open: bool = True


class RoomState:
    def __init__(
        self,
        briefing: str,
        title: str,
        chair: str,
        sites: list[tuple[str, str, str, str | None]],  # (code, name, kind, district code) in wall order
        phase: str = "lobby",
    ) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r}")
        self.briefing = briefing
        self.title = title
        self.chair = chair
        self.phase = phase
        self.sites: dict[str, SiteState] = {c: SiteState(c, n, k, d) for c, n, k, d in sites}
        if chair not in self.sites:
            raise ValueError(f"the chair {chair!r} is not among the sites")
        self.floor: str | None = None  # None: the chair holds the stage
        self.locked = False
        self.open_mics = False
        self.rollcall: RollCall | None = None
        self._rollcalls_started = 0
        self.speaker: str | None = None

    # --- reading ---------------------------------------------------------------------------
    def site(self, code: str) -> SiteState:
        s = self.sites.get(code)
        if s is None:
            raise ProtocolError("unknown_site", f"{code!r} is not a site of this briefing")
        return s

    def stage(self) -> str:
        """Whose video every stage shows."""
        return self.floor or self.chair

    def may_speak(self, code: str) -> bool:
        return code == self.chair or code == self.floor or self.open_mics

    def room_fields(self) -> dict[str, Any]:
        rc = self.rollcall
        tally = None
        if rc is not None:
            # the sites that answered, out of the sites asked (the chair is marked but not asked)
            answered = sum(1 for s in self.sites.values() if s.rollcall == rc.id and s.code != self.chair)
            tally = {"id": rc.id, "open": rc.open, "answered": answered, "invited": len(self.sites) - 1}
        hands = sorted((s.hand, s.code) for s in self.sites.values() if s.hand is not None)
        return {
            "briefing": self.briefing,
            "title": self.title,
            "chair": self.chair,
            "phase": self.phase,
            "floor": self.floor,
            "stage": self.stage(),
            "locked": self.locked,
            "open_mics": self.open_mics,
            "rollcall": tally,
            "hands": [c for _, c in hands],
            "speaker": self.speaker,
        }

    def snapshot(self) -> dict[str, Any]:
        return {"room": self.room_fields(), "sites": [s.public(self.phase) for s in self.sites.values()]}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sites.values():
            st = s.state(self.phase)
            out[st] = out.get(st, 0) + 1
        return out

    # --- what outlives the node ---------------------------------------------------------------
    def durable(self) -> dict[str, Any]:
        """What the chair decided and the sites asked for, kept in Redis so that a restarted node
        carries the briefing on as it was: floor, lock, open microphones, roll call and its
        answers, removed sites, raised hands, "low data" and pins, and who had joined. A live
        connection is saved as dropped: after a restart it is, until the page comes back."""
        rc = self.rollcall
        sites: dict[str, dict[str, Any]] = {}
        for c, s in self.sites.items():
            exit_ = s.exit if s.conn is None else DROPPED
            d: dict[str, Any] = {}
            if s.joined_once:
                d["joined"] = True
            if exit_ is not None:
                d["exit"] = exit_
            if s.hand is not None:
                d["hand"] = s.hand
            if s.low_data:
                d["low_data"] = True
            if s.pin is not None:
                d["pin"] = s.pin
            if s.rollcall is not None:
                d["rollcall"] = s.rollcall
            if d:
                sites[c] = d
        return {
            "v": 1,
            "floor": self.floor,
            "locked": self.locked,
            "open_mics": self.open_mics,
            "rollcall": None if rc is None else {"id": rc.id, "started_at": rc.started_at, "open": rc.open},
            "rollcalls": self._rollcalls_started,
            "sites": sites,
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back what :meth:`durable` kept (a site no longer invited is ignored)."""
        if saved.get("v") != 1:
            raise ValueError(f"unknown saved room layout {saved.get('v')!r}")
        floor = saved.get("floor")
        self.floor = floor if floor in self.sites and floor != self.chair else None
        self.locked = bool(saved.get("locked"))
        self.open_mics = bool(saved.get("open_mics"))
        rc = saved.get("rollcall")
        self.rollcall = None if rc is None else RollCall(id=str(rc["id"]), started_at=float(rc["started_at"]), open=bool(rc["open"]))
        self._rollcalls_started = int(saved.get("rollcalls", 0))
        for c, d in saved.get("sites", {}).items():
            s = self.sites.get(c)
            if s is None:
                continue
            s.joined_once = bool(d.get("joined"))
            s.exit = d.get("exit")
            s.hand = d.get("hand")
            s.low_data = bool(d.get("low_data"))
            s.pin = d.get("pin")
            s.rollcall = d.get("rollcall")
        if self.phase == "ended":
            self.floor = None

    # --- connections -----------------------------------------------------------------------
    def connect(self, code: str, conn: str) -> tuple[str | None, bool]:
        """A site's page connected. Returns (the connection it replaces, whether it came back after a drop)."""
        s = self.site(code)
        if s.exit == REMOVED:
            raise ProtocolError("removed", "the chair removed this site from the briefing")
        if self.phase == "ended":
            raise ProtocolError("ended", "the briefing has ended")
        if self.locked and s.conn is None and code != self.chair and not s.joined_once:
            raise ProtocolError("locked", "the chair has locked the room: no new site may join")
        replaced = s.conn
        back = s.joined_once and s.exit == DROPPED
        s.conn = conn
        s.exit = None
        s.joined_once = True
        s.mic = False  # every page starts with its microphone closed
        return replaced, back

    def disconnect(self, code: str, conn: str, reason: str) -> bool:
        """The connection ``conn`` ended (left, dropped, removed). False when it was already replaced."""
        s = self.site(code)
        if s.conn != conn:
            return False
        s.conn = None
        s.exit = reason
        s.mic = False
        s.cam = False
        s.quality = {}
        if reason != DROPPED:  # a dropped page is coming back: it keeps the floor and its place in the queue
            s.hand = None
            if self.floor == code:
                self.floor = None
        return True

    # --- a site's own wishes -----------------------------------------------------------------
    def set_media(self, code: str, mic: bool | None, cam: bool | None) -> dict[str, bool]:
        s = self.site(code)
        if mic and not self.may_speak(code):
            raise ProtocolError("not_allowed", "the microphone opens only when the chair gives the floor or allows open microphones")
        if mic is not None:
            s.mic = mic
        if cam is not None:
            s.cam = cam
        return {"mic": s.mic, "cam": s.cam}

    def raise_hand(self, code: str, raised: bool, now: float) -> None:
        s = self.site(code)
        if raised and self.phase == "ended":
            raise ProtocolError("ended", "the briefing has ended")
        if raised:
            if s.hand is None:
                s.hand = now
        else:
            s.hand = None

    def answer_rollcall(self, code: str, rollcall: str) -> None:
        rc = self.rollcall
        if rc is None or not rc.open or rc.id != rollcall:
            raise ProtocolError("no_rollcall", "there is no open roll call with this id")
        self.site(code).rollcall = rc.id

    def set_low_data(self, code: str, on: bool) -> None:
        self.site(code).low_data = on

    def set_quality(self, code: str, values: dict[str, float]) -> bool:
        """Store a quality sample; True when the site's wall state changed (e.g. became poor)."""
        s = self.site(code)
        before = s.state(self.phase)
        s.quality.update({k: round(float(v), 4) for k, v in values.items()})
        return s.state(self.phase) != before

    # --- the chair ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.phase != "lobby":
            raise ProtocolError("bad_phase", f"the briefing is {self.phase}, not in the lobby")
        self.phase = "live"

    def end(self) -> None:
        if self.phase == "ended":
            raise ProtocolError("bad_phase", "the briefing has already ended")
        self.phase = "ended"
        self.floor = None
        if self.rollcall:
            self.rollcall.open = False

    def give_floor(self, code: str) -> str | None:
        """Returns the site that lost the floor (its microphone closes)."""
        s = self.site(code)
        if s.conn is None:
            raise ProtocolError("not_connected", f"{s.name} is not connected")
        if self.phase != "live":
            raise ProtocolError("bad_phase", "the floor can be given only while the briefing is live")
        previous = self.floor if self.floor != code else None
        if previous is not None and not self.open_mics:
            self.sites[previous].mic = False
        self.floor = None if code == self.chair else code
        s.hand = None
        return previous

    def take_floor(self) -> str | None:
        previous = self.floor
        if previous is not None and not self.open_mics:
            self.sites[previous].mic = False
        self.floor = None
        return previous

    def mute(self, code: str) -> None:
        self.site(code).mic = False

    def mute_all(self) -> list[str]:
        muted = [c for c, s in self.sites.items() if c != self.chair and s.mic]
        for c in muted:
            self.sites[c].mic = False
        self.open_mics = False
        return muted

    def lower_hand(self, code: str) -> None:
        self.site(code).hand = None

    def remove(self, code: str) -> str | None:
        """The connection to close, if any."""
        if code == self.chair:
            raise ProtocolError("not_allowed", "the chair cannot remove its own site")
        s = self.site(code)
        conn = s.conn
        s.conn = None
        s.exit = REMOVED
        s.mic = s.cam = False
        s.hand = None
        if self.floor == code:
            self.floor = None
        return conn

    def set_locked(self, locked: bool) -> None:
        self.locked = locked

    def set_open_mics(self, on: bool) -> list[str]:
        self.open_mics = on
        if on:
            return []
        closed = [c for c, s in self.sites.items() if c not in (self.chair, self.floor) and s.mic]
        for c in closed:
            self.sites[c].mic = False
        return closed

    def start_rollcall(self, now: float) -> RollCall:
        if self.phase == "ended":
            raise ProtocolError("bad_phase", "the briefing has ended")
        self._rollcalls_started += 1
        rc = RollCall(id=f"rc{self._rollcalls_started}", started_at=now)
        self.rollcall = rc
        for s in self.sites.values():
            s.rollcall = None
        self.site(self.chair).rollcall = rc.id
        return rc

    def end_rollcall(self) -> None:
        if self.rollcall is None or not self.rollcall.open:
            raise ProtocolError("no_rollcall", "no roll call is running")
        self.rollcall.open = False

    def pin_quality(self, code: str, layer: str | None) -> None:
        self.site(code).pin = layer
