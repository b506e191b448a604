"""Live rooms on this node and the sessions in them.

``Hub.join()`` admits a page into the live room of a briefing occurrence (made on first join),
``Session.handle()`` takes each message of that page: validates it, checks who may send it,
changes the ``RoomState``, drives the media ``Room`` and writes the attendance events. Every
change is pushed to the pages it concerns.

Who may do what:
- a site's page (its join link) joins only its own site, only into an occurrence that invites it,
  only from the lobby's opening until the end; it may never send a chair's message;
- the chair's page (a chair or admin account) joins as the occurrence's chair site and may send
  everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from confsvc.attendance.events import (
    FloorGiven,
    FloorTaken,
    Joined,
    LeaveReason,
    Left,
    MediaToggled,
    Medium,
    QualitySample,
    Reconnected,
    RollCallAnswer,
)
from confsvc.media import MediaConfig, Room
from confsvc.media.room import MediaError
from confsvc.signaling.outbox import Outbox
from confsvc.signaling.persist import RoomStore, Saver
from confsvc.signaling.protocol import Message, ProtocolError, RateLimiter, parse
from confsvc.signaling.state import DROPPED, LEFT, REMOVED, RoomState

log = logging.getLogger(__name__)

QUALITY_PERIOD_S = 10.0
# messages that never change what the room keeps across a restart (the frequent ones: no saver wake-up)
_NO_ROOM_CHANGE = frozenset({"ping", "quality", "publish", "subscribe", "subscribe_answer", "grid_page"})
GRID_PAGE_SIZE = 9


class OccurrenceLike(Protocol):
    id: str
    title: str
    chair: str
    invited_sites: tuple[str, ...]
    lobby_opens_at: datetime
    starts_at: datetime
    ends_at: datetime
    state: Any


class EventLog(Protocol):
    async def append(self, briefing_id: str, event: Any) -> str: ...
    def submit(self, briefing_id: str, event: Any) -> Any: ...


class PresenceLike(Protocol):
    async def opened(self, conn: str, briefing: str, site: str) -> None: ...
    async def closed(self, conn: str) -> None: ...


SiteInfo = Callable[[Sequence[str]], Awaitable[list[tuple[str, str, str, str | None]]]]


@dataclass(frozen=True)
class Identity:
    code: str  # the site this connection speaks for
    role: str  # "site" or "chair"
    label: str = ""  # who (a username for the chair's page), for the log


class LiveRoom:
    """One occurrence live on this node: its state, its media room, its sessions."""

    def __init__(self, hub: Hub, occ: OccurrenceLike, state: RoomState, media: Room) -> None:
        self.hub = hub
        self.occ = occ
        self.id = occ.id
        self.state = state
        self.media = media
        self.sessions: dict[str, Session] = {}  # site code -> its live session
        self.grid_page = 0
        self.grid_size = GRID_PAGE_SIZE
        self._quality_task: asyncio.Task[None] | None = None
        self._byte_marks: dict[str, tuple[float, int, int]] = {}
        media.on_slot_change = self._slot_changed
        media.on_dominant_speaker = self._speaker_changed
        media.on_layer_change = self._layer_changed
        self._dirty_slots: set[str] = set()
        self._slots_flush: asyncio.Handle | None = None
        self._dirty_recv: set[str] = set()
        self._recv_flush: asyncio.TimerHandle | None = None
        self.saver: Saver | None = None  # the state that outlives the node (None: not kept)

    def changed(self) -> None:
        """The state may have changed: keep what must outlive the node."""
        if self.saver is not None:
            self.saver.changed()

    # --- pushing ---------------------------------------------------------------------------
    def broadcast(self, message: dict[str, Any], only: str | None = None) -> None:
        for code, session in list(self.sessions.items()):
            if only is None or code == only:
                session.push(message)

    def push_site(self, code: str) -> None:
        self.broadcast({"type": "site", "site": self.state.sites[code].public(self.state.phase)})

    def push_room(self) -> None:
        self.broadcast({"type": "room", "room": self.state.room_fields()})

    def _slot_changed(self, pid: str, slot: str, shows: str | None) -> None:
        self._dirty_slots.add(pid)
        if self._slots_flush is None:
            self._slots_flush = asyncio.get_running_loop().call_soon(self._flush_slots)

    def _flush_slots(self) -> None:
        self._slots_flush = None
        dirty, self._dirty_slots = self._dirty_slots, set()
        for pid in dirty:
            p = self.media.participants.get(pid)
            s = self.sessions.get(pid)
            if p is not None and s is not None:
                s.push({"type": "slots", "slots": p.slot_map()})

    def _speaker_changed(self, pid: str | None) -> None:
        self.state.speaker = pid
        self.broadcast({"type": "speaker", "site": pid})

    # --- media follows the state --------------------------------------------------------------
    def apply_stage(self) -> None:
        """Every stage shows the floor (or the chair); nobody's while that site has no media here.
        The site with the floor sees the chair (also when it came back before the chair did)."""
        stage = self.state.stage()
        chair = self.state.chair
        self.media.set_stage(stage if stage in self.media.participants else None,
                             holder_sees=chair if stage != chair else None)

    def apply_prefs(self, code: str) -> None:
        """The site's "low data" choice and the chair's pin, on its media (after every re-add too)."""
        if code in self.media.participants:
            site = self.state.sites[code]
            self.media.set_low_data(code, site.low_data)
            self.media.pin_layer(code, site.pin)

    def _layer_changed(self, pid: str, slot: str, stats: dict[str, Any]) -> None:
        """What a site receives on its stage changed (layer, frame rate, pause): the chair's wall shows it."""
        if slot != "stage" or pid not in self.state.sites:
            return
        self.state.sites[pid].recv = {k: stats.get(k) for k in ("layer", "fps", "paused", "width", "height")}
        self._dirty_recv.add(pid)
        if self._recv_flush is None:
            self._recv_flush = asyncio.get_running_loop().call_later(0.2, self._flush_recv)

    def _flush_recv(self) -> None:
        self._recv_flush = None
        dirty, self._dirty_recv = self._dirty_recv, set()
        sites = [self.state.sites[c].public(self.state.phase) for c in dirty if c in self.state.sites]
        if sites:
            self.broadcast({"type": "sites", "sites": sites})

    async def mic_closed(self, code: str, reason: str, was_open: bool) -> None:
        """The chair closed a site's microphone: media, the wall, the page, and the log if it was open."""
        self.apply_mic(code)
        self.push_site(code)
        target = self.sessions.get(code)
        if target is not None:
            target.push({"type": "mute", "reason": reason})
        if was_open:
            await self.hub.record(self.id, MediaToggled(site=code, conn=target.conn if target else "", medium=Medium.MIC, on=False, by="chair"))

    def apply_mic(self, code: str) -> None:
        self.media.set_muted(code, not self.state.sites[code].mic)

    def apply_grid(self) -> None:
        chair = self.state.chair
        if chair not in self.media.participants:
            return
        connected = [c for c, s in self.state.sites.items()
                     if s.conn is not None and c != chair and c in self.media.participants]
        start = self.grid_page * self.grid_size
        self.media.set_grid(chair, connected[start:start + self.grid_size])

    # --- quality ----------------------------------------------------------------------------
    def start_quality_loop(self) -> None:
        self._quality_task = asyncio.create_task(self._quality_loop(), name=f"quality-{self.id}")

    async def _quality_loop(self) -> None:
        while True:
            await asyncio.sleep(self.hub.quality_period)
            try:
                self.sample_quality()
            except Exception:  # a bad sample must not stop the loop
                log.exception("quality sampling failed in %s", self.id)

    def sample_quality(self) -> None:
        now = self.hub.clock()
        changed: list[dict[str, Any]] = []
        for code, session in list(self.sessions.items()):
            p = self.media.participants.get(code)
            if p is None:
                continue
            stats = p.stats()
            bytes_in = sum(pr.get("bytes", 0) for pr in stats["publishing"])
            bytes_out = sum(sl.get("octets", 0) for sl in stats["slots"].values())
            mark = self._byte_marks.get(code)
            self._byte_marks[code] = (now, bytes_in, bytes_out)
            if mark is None or now <= mark[0]:
                continue
            dt = now - mark[0]
            kbps_in = max(0.0, (bytes_in - mark[1]) * 8 / 1000 / dt)
            kbps_out = max(0.0, (bytes_out - mark[2]) * 8 / 1000 / dt)
            rr_loss = max((sl.get("fraction_lost") or 0) / 256 for sl in stats["slots"].values()) if stats["slots"] else 0.0
            rtts = [sl["rtt"] for sl in stats["slots"].values() if sl.get("rtt")]
            client = session.client_quality
            loss = max(rr_loss, float(client.get("loss", 0.0)))
            rtt_ms = float(client["rtt_ms"]) if "rtt_ms" in client else (max(rtts) * 1000 if rtts else 0.0)
            values = {"bitrate_in": round(kbps_in, 1), "bitrate_out": round(kbps_out, 1), "loss": round(loss, 4), "rtt_ms": round(rtt_ms, 1)}
            self.state.set_quality(code, values)
            changed.append(self.state.sites[code].public(self.state.phase))
            stage = stats["slots"].get("stage", {})
            self.hub.submit(self.id, QualitySample(
                site=code, conn=session.conn, bitrate_in=values["bitrate_in"], bitrate_out=values["bitrate_out"],
                loss=values["loss"], rtt_ms=values["rtt_ms"],
                layer="paused" if stage.get("paused") else str(stage.get("layer") or ""),
            ))
        if changed:
            self.broadcast({"type": "sites", "sites": changed})

    async def close(self) -> None:
        if self._quality_task is not None:
            self._quality_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._quality_task
        for handle in (self._slots_flush, self._recv_flush):
            if handle is not None:
                handle.cancel()
        if self.saver is not None:
            await self.saver.close()
        await self.media.close()


class Hub:
    def __init__(
        self,
        *,
        log: EventLog,
        site_info: SiteInfo,
        media_config: MediaConfig,
        node: str = "",
        clock: Callable[[], float] = time.monotonic,
        quality_period: float = QUALITY_PERIOD_S,
        on_start: Callable[[str, str], Awaitable[Any]] | None = None,
        on_end: Callable[[str, str], Awaitable[Any]] | None = None,
        rate: tuple[float, float] = (20.0, 40.0),
        presence: PresenceLike | None = None,
        saved_rooms: RoomStore | None = None,
    ) -> None:
        self.log = log
        self.site_info = site_info
        self.media_config = media_config
        self.node = node
        self.clock = clock
        self.quality_period = quality_period
        self.on_start = on_start  # (occurrence id, who) -> persist "live" in scheduling
        self.on_end = on_end
        self.rate = rate  # messages a second per connection, burst
        self.presence = presence  # which pages this node holds (a crash shows as their drop)
        self.saved_rooms = saved_rooms  # room state kept across node restarts
        self.rooms: dict[str, LiveRoom] = {}
        self.closed_counters: dict[str, int] = {}  # media counters of the rooms closed on this node
        self._lock = asyncio.Lock()

    # --- attendance ----------------------------------------------------------------------------
    async def record(self, briefing: str, event: Any) -> None:
        """Append an attendance event; a failure is logged, never raised into the page's session."""
        try:
            await self.log.append(briefing, event)
        except Exception:
            log.exception("attendance event %s for %s was not written", type(event).__name__, briefing)

    def submit(self, briefing: str, event: Any) -> None:
        try:
            fut = self.log.submit(briefing, event)
        except Exception:
            log.exception("attendance sample for %s was not queued", briefing)
            return
        if isinstance(fut, asyncio.Future):
            fut.add_done_callback(_log_failure)

    # --- rooms ---------------------------------------------------------------------------------
    async def room_for(self, occ: OccurrenceLike) -> LiveRoom:
        async with self._lock:
            room = self.rooms.get(occ.id)
            if room is not None:
                return room
            sites = await self.site_info(occ.invited_sites)
            phase = "live" if str(occ.state) == "live" else "lobby"
            state = RoomState(occ.id, occ.title, occ.chair, sites, phase=phase)
            saver = None
            if self.saved_rooms is not None:
                saver = Saver(self.saved_rooms, occ.id, state.durable)
                try:
                    saved = await self.saved_rooms.load(occ.id)
                    if saved is not None:
                        state.restore(saved)
                        saver.prime(saved)
                        log.info("room %s taken up as it was saved (floor %s)", occ.id, state.floor)
                except Exception:  # noqa: BLE001 - Redis down or a bad value: a fresh room, not no room
                    log.exception("saved state of room %s could not be read: starting it afresh", occ.id)
            room = LiveRoom(self, occ, state, Room(self.media_config))
            room.saver = saver
            self.rooms[occ.id] = room
            room.start_quality_loop()
            return room

    async def join(self, occ: OccurrenceLike, who: Identity, send: Callable[[str], Awaitable[None]],
                   *, ice_servers: list[dict[str, Any]] | None = None) -> Session:
        """Admit a page. ProtocolError (not_invited, ended, locked, removed, ...) when it may not."""
        if str(occ.state) not in ("open", "live", "scheduled"):
            raise ProtocolError("not_open", f"the briefing is {occ.state}: it cannot be joined now")
        if who.code not in occ.invited_sites:
            raise ProtocolError("not_invited", "this site is not invited to the briefing")
        if who.role == "site" and who.code == occ.chair:
            raise ProtocolError("use_chair_page", "this hall chairs the briefing: open the chair's control page")
        room = await self.room_for(occ)
        conn = secrets.token_hex(6)
        replaced, back = room.state.connect(who.code, conn)
        old = room.sessions.get(who.code)
        session = Session(room, who, conn, send)
        room.sessions[who.code] = session
        if old is not None:  # the same site in another window, or a page back before its old socket timed out
            old.push({"type": "error", "code": "replaced", "detail": "this site was opened in another window; this one stops"})
            await old.shutdown("replaced")
        if who.code in room.media.participants:
            await room.media.remove_participant(who.code)
        room.media.add_participant(who.code, grid_slots=room.grid_size if who.role == "chair" else 0)
        room.apply_mic(who.code)
        room.apply_prefs(who.code)
        session.outbox.start()
        session.push({
            "type": "welcome",
            "you": {"site": who.code, "role": who.role, "conn": conn, "name": room.state.sites[who.code].name},
            "ice_servers": ice_servers or [],
            "grid": {"page": room.grid_page, "size": room.grid_size},
            "state": room.state.snapshot(),
        })
        room.push_site(who.code)
        if room.state.floor == who.code:  # back with the floor (a node restart, a dropped link): speak again
            session.push({"type": "ask_unmute", "reason": "floor"})
        if self.presence is not None:
            if replaced is not None:
                await self.presence.closed(replaced)
            await self.presence.opened(conn, room.id, who.code)
        if replaced is not None:
            await self.record(room.id, Reconnected(site=who.code, conn=conn, previous=replaced))
        elif back:
            await self.record(room.id, Reconnected(site=who.code, conn=conn, previous=""))
        else:
            await self.record(room.id, Joined(site=who.code, conn=conn))
        room.apply_grid()  # the chair's grid follows who is connected (a site joining after the chair, too)
        room.changed()
        return session

    async def set_phase(self, occ_id: str, phase: str) -> None:
        """The schedule moved the occurrence (the clock, or another node): follow it."""
        room = self.rooms.get(occ_id)
        if room is None:
            return
        if phase == "live" and room.state.phase == "lobby":
            room.state.start()
            room.push_room()
            for code in room.state.sites:
                room.push_site(code)
        elif phase in ("ended", "cancelled") and room.state.phase != "ended":
            await self.end_room(room)

    async def end_room(self, room: LiveRoom) -> None:
        if room.state.phase != "ended":
            room.state.end()
        room.broadcast({"type": "ended"})
        room.push_room()
        for session in list(room.sessions.values()):
            await session.leave(LeaveReason.ENDED)
        self.rooms.pop(room.id, None)
        await self._close_room(room)

    async def _close_room(self, room: LiveRoom) -> None:
        await room.close()
        for name, value in room.media.counters.as_dict().items():
            self.closed_counters[name] = self.closed_counters.get(name, 0) + value

    def counters(self) -> dict[str, int]:
        """Media counters of every room this node ran (live and closed): monotonic, for /metrics."""
        out = dict(self.closed_counters)
        for room in self.rooms.values():
            for name, value in room.media.counters.as_dict().items():
                out[name] = out.get(name, 0) + value
        return out

    async def close(self) -> None:
        """The node stops: every page is dropped (it will reconnect to the node when it is back)."""
        for room in list(self.rooms.values()):
            for session in list(room.sessions.values()):
                await session.leave(LeaveReason.DROPPED)
            await self._close_room(room)
        self.rooms.clear()


def _log_failure(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.warning("attendance sample failed: %s", fut.exception())


class Session:
    """One page's connection: its messages in, the room's changes out."""

    def __init__(self, room: LiveRoom, who: Identity, conn: str, send: Callable[[str], Awaitable[None]]) -> None:
        self.room = room
        self.who = who
        self.code = who.code
        self.conn = conn
        self.outbox = Outbox(send)
        self.limiter = RateLimiter(*room.hub.rate)
        self.client_quality: dict[str, float] = {}
        self.replaced = False
        self.done = False
        self._published = False
        # closes the page's socket from the server's side, with a stop code or none (a drop: the
        # page reconnects); set by the transport, None in tests
        self.close_socket: Callable[[str | None], Awaitable[Any]] | None = None
        self._closing: asyncio.Task[Any] | None = None

    @property
    def is_chair(self) -> bool:
        return self.who.role == "chair"

    def push(self, message: dict[str, Any]) -> None:
        if not self.outbox.put(message) and self.outbox.overflowed and not self.done:
            log.warning("page of %s stopped reading: cutting it off", self.code)
            asyncio.get_running_loop().create_task(self.leave(LeaveReason.DROPPED))

    def error(self, exc: ProtocolError) -> None:
        self.push(exc.to_message())

    # --- the page's messages ----------------------------------------------------------------
    async def handle(self, raw: str | bytes) -> None:
        """Take one frame. Never raises: every refusal is an ``error`` message."""
        if self.done:
            return
        try:
            if not self.limiter.allow(self.room.hub.clock()):
                raise ProtocolError("rate_limited", "too many messages: slow down (at most 20 a second)")
            msg = parse(raw)
            if msg.schema.who == "chair" and not self.is_chair:
                raise ProtocolError("forbidden", f"{msg.type}: only the chair may do this", ref=msg.type)
            if msg.schema.who == "site" and self.is_chair and msg.type != "raise_hand":
                raise ProtocolError("forbidden", f"{msg.type}: a site's message, not the chair's", ref=msg.type)
            await getattr(self, "on_" + msg.type)(msg)
            if msg.type not in _NO_ROOM_CHANGE:
                self.room.changed()
        except ProtocolError as exc:
            self.error(exc)
        except MediaError as exc:
            self.error(ProtocolError("media", str(exc)))
        except Exception:
            log.exception("signaling: message from %s failed", self.code)
            self.error(ProtocolError("internal", "the server could not handle this message; it was logged"))

    async def on_ping(self, msg: Message) -> None:
        self.push({"type": "pong", "t": msg.get("t")})

    async def on_publish(self, msg: Message) -> None:
        room = self.room
        if self._published:  # the page restarts its media (ICE failed): start over with fresh connections
            await room.media.remove_participant(self.code)
            room.media.add_participant(self.code, grid_slots=room.grid_size if self.is_chair else 0)
            room.apply_mic(self.code)
            room.apply_prefs(self.code)
            room.apply_stage()
            if self.is_chair:
                room.apply_grid()
        p = room.media.participants[self.code]
        answer = await p.publish(msg["sdp"], layers=msg.get("layers"))
        self._published = True
        room.apply_stage()
        self.push({"type": "publish_answer", "sdp": answer})

    async def on_subscribe(self, msg: Message) -> None:
        p = self.room.media.participants[self.code]
        offer = await p.subscribe_offer()
        self.push({"type": "subscribe_offer", "sdp": offer, "mids": p.mids(), "slots": p.slot_map()})

    async def on_subscribe_answer(self, msg: Message) -> None:
        await self.room.media.participants[self.code].subscribe_answer(msg["sdp"])
        self.room.apply_stage()

    async def on_media_state(self, msg: Message) -> None:
        st = self.room.state
        before = (st.sites[self.code].mic, st.sites[self.code].cam)
        after = st.set_media(self.code, msg.get("mic"), msg.get("cam"))
        self.room.apply_mic(self.code)
        self.room.push_site(self.code)
        for medium, was, now in ((Medium.MIC, before[0], after["mic"]), (Medium.CAM, before[1], after["cam"])):
            if was != now:
                await self.room.hub.record(self.room.id, MediaToggled(site=self.code, conn=self.conn, medium=medium, on=now, by="site"))

    async def on_raise_hand(self, msg: Message) -> None:
        self.room.state.raise_hand(self.code, msg["raised"], time.time())
        self.room.push_site(self.code)
        self.room.push_room()

    async def on_rollcall_answer(self, msg: Message) -> None:
        self.room.state.answer_rollcall(self.code, msg["rollcall"])
        self.room.push_site(self.code)
        self.room.push_room()
        await self.room.hub.record(self.room.id, RollCallAnswer(site=self.code, conn=self.conn, roll_call=msg["rollcall"]))

    async def on_low_data(self, msg: Message) -> None:
        self.room.state.set_low_data(self.code, msg["on"])
        self.room.apply_prefs(self.code)
        self.room.push_site(self.code)

    async def on_quality(self, msg: Message) -> None:
        self.client_quality = {k: float(v) for k, v in msg.data.items()}

    async def on_leave(self, msg: Message) -> None:
        await self.leave(LeaveReason.LEFT)

    # --- the chair's --------------------------------------------------------------------------
    async def on_start(self, msg: Message) -> None:
        room = self.room
        room.state.start()
        hub = room.hub
        if hub.on_start is not None:
            await hub.on_start(room.id, self.who.label)
        room.push_room()
        for code in room.state.sites:
            room.push_site(code)

    async def on_end(self, msg: Message) -> None:
        room = self.room
        if room.state.phase == "ended":
            raise ProtocolError("bad_phase", "the briefing has already ended")
        hub = room.hub
        if hub.on_end is not None:
            await hub.on_end(room.id, self.who.label)
        await hub.end_room(room)

    async def on_give_floor(self, msg: Message) -> None:
        room, code = self.room, msg["site"]
        previous = room.state.give_floor(code)
        if previous is not None:
            room.apply_mic(previous)
            room.push_site(previous)
            await room.hub.record(room.id, FloorTaken(site=previous, conn="", by=self.who.label or "chair"))
        room.apply_stage()
        room.push_site(code)
        room.push_room()
        target = room.sessions.get(code)
        if target is not None and code != room.state.chair:
            target.push({"type": "ask_unmute", "reason": "floor"})
        await room.hub.record(room.id, FloorGiven(site=code, conn=target.conn if target else "", by=self.who.label or "chair"))

    async def on_take_floor(self, msg: Message) -> None:
        room = self.room
        previous = room.state.take_floor()
        room.apply_stage()
        if previous is not None:
            room.apply_mic(previous)
            room.push_site(previous)
            target = room.sessions.get(previous)
            if target is not None:
                target.push({"type": "mute", "reason": "floor_taken"})
            await room.hub.record(room.id, FloorTaken(site=previous, conn=target.conn if target else "", by=self.who.label or "chair"))
        room.push_room()

    async def on_mute(self, msg: Message) -> None:
        room, code = self.room, msg["site"]
        was_open = room.state.site(code).mic
        room.state.mute(code)
        await room.mic_closed(code, "chair", was_open)

    async def on_mute_all(self, msg: Message) -> None:
        room = self.room
        muted = room.state.mute_all()
        for code in muted:
            await room.mic_closed(code, "chair", True)
        for code, s in room.sessions.items():  # the pages whose microphone was already closed hear it too
            if code != room.state.chair and code not in muted:
                s.push({"type": "mute", "reason": "chair"})
        room.push_room()

    async def on_ask_unmute(self, msg: Message) -> None:
        room, code = self.room, msg["site"]
        room.state.site(code)
        target = room.sessions.get(code)
        if target is None:
            raise ProtocolError("not_connected", f"{room.state.sites[code].name} is not connected")
        target.push({"type": "ask_unmute", "reason": "chair"})

    async def on_lower_hand(self, msg: Message) -> None:
        self.room.state.lower_hand(msg["site"])
        self.room.push_site(msg["site"])
        self.room.push_room()

    async def on_remove(self, msg: Message) -> None:
        room, code = self.room, msg["site"]
        room.state.remove(code)
        target = room.sessions.get(code)
        if target is not None:
            target.push({"type": "removed"})
            await target.leave(LeaveReason.REMOVED, already_out=True)
        room.apply_stage()
        room.apply_grid()
        room.push_site(code)
        room.push_room()

    async def on_lock(self, msg: Message) -> None:
        self.room.state.set_locked(msg["locked"])
        self.room.push_room()

    async def on_open_mics(self, msg: Message) -> None:
        room = self.room
        closed = room.state.set_open_mics(msg["on"])
        for code in closed:
            await room.mic_closed(code, "chair", True)
        room.push_room()

    async def on_rollcall_start(self, msg: Message) -> None:
        room = self.room
        rc = room.state.start_rollcall(time.time())
        room.broadcast({"type": "rollcall", "rollcall": rc.id})
        room.push_room()
        for code in room.state.sites:
            room.push_site(code)

    async def on_rollcall_end(self, msg: Message) -> None:
        self.room.state.end_rollcall()
        self.room.push_room()

    async def on_pin_quality(self, msg: Message) -> None:
        self.room.state.pin_quality(msg["site"], msg.get("layer"))
        self.room.apply_prefs(msg["site"])
        self.room.push_site(msg["site"])

    async def on_grid_page(self, msg: Message) -> None:
        room = self.room
        room.grid_page = msg["page"]
        if msg.get("size"):
            room.grid_size = min(msg["size"], len(room.media.participants[self.code].slots) or msg["size"])
        room.apply_grid()

    # --- leaving ------------------------------------------------------------------------------
    async def close_media(self) -> None:
        room = self.room
        if room.media.participants.get(self.code) is not None and room.sessions.get(self.code) in (self, None):
            await room.media.remove_participant(self.code)

    async def leave(self, reason: LeaveReason, *, already_out: bool = False) -> None:
        """The page is gone (or sent away): state, media and the attendance log follow."""
        if self.done:
            return
        room = self.room
        mapping = {LeaveReason.LEFT: LEFT, LeaveReason.DROPPED: DROPPED, LeaveReason.REMOVED: REMOVED, LeaveReason.ENDED: LEFT}
        is_current = room.sessions.get(self.code) is self
        if is_current:
            if not already_out:
                room.state.disconnect(self.code, self.conn, mapping[reason])
            had_floor = room.state.floor
            await self.close_media()
            room.sessions.pop(self.code, None)
            room.apply_stage()
            if self.code != room.state.chair:
                room.apply_grid()
            if room.state.phase != "ended" or reason is not LeaveReason.ENDED:
                room.push_site(self.code)
                if had_floor != room.state.floor:
                    room.push_room()
            room.changed()
            await room.hub.record(room.id, Left(site=self.code, conn=self.conn, reason=reason))
        if room.hub.presence is not None:
            await room.hub.presence.closed(self.conn)
        await self.shutdown({LeaveReason.REMOVED: "removed", LeaveReason.ENDED: "ended"}.get(reason))

    async def shutdown(self, stop: str | None = None) -> None:
        """No more messages either way: what is queued is sent, then the socket is closed, with
        ``stop`` (replaced, removed, ended) telling the page not to come back. A window replaced by
        another must not stay open until it next speaks."""
        self.done = True
        await self.outbox.close()
        if self.close_socket is not None and self._closing is None:
            # in its own task: a peer that never answers the close must not hold up the caller
            self._closing = asyncio.get_running_loop().create_task(self.close_socket(stop), name=f"close-{self.conn}")
