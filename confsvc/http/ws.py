"""``/ws``: the signaling WebSocket. Authenticates the page, then hands it to the signaling hub.

- a site's page: ``/ws?site=<join token>``: it joins the occurrence its site is invited to now;
- the chair's page: ``/ws?briefing=<occurrence id>`` with a chair's or admin's session cookie.

A refusal at the door (unknown link, no briefing now, not invited, locked, ...) is one ``error``
message, then the socket closes with code 4000 + a reason the page shows and does not retry
(``removed``, ``ended``) or retries later (the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import urlparse

from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from redis.exceptions import RedisError

from confsvc.attendance.events import LeaveReason
from confsvc.attendance.presence import Presence
from confsvc.auth.accounts import Role
from confsvc.auth.turn import ice_servers
from confsvc.http.attendance import ATTENDANCE_LOG
from confsvc.http.authz import current_user
from confsvc.http.context import DIRECTORY, METRICS, REDIS, SETTINGS, SITE_LINKS
from confsvc.http.scheduling import BRIEFINGS, PRESENCE
from confsvc.media import MediaConfig
from confsvc.scheduling.service import Actor
from confsvc.signaling.hub import Hub, Identity
from confsvc.signaling.persist import RoomStore
from confsvc.signaling.protocol import MAX_MESSAGE_BYTES, ProtocolError
from confsvc.store import keys

log = logging.getLogger(__name__)

routes = web.RouteTableDef()
HUB: web.AppKey[Hub] = web.AppKey("signaling_hub", Hub)
CLOSE_REFUSED = 4000
TRANSPORT_LIMIT = 16 * MAX_MESSAGE_BYTES


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser (a script or a test client)
        return True
    return urlparse(origin).netloc == request.host


async def _refuse(ws: web.WebSocketResponse, exc: ProtocolError) -> web.WebSocketResponse:
    await ws.send_str(json.dumps(exc.to_message(), ensure_ascii=False))
    await ws.close(code=CLOSE_REFUSED, message=exc.code.encode()[:120])
    return ws


@routes.get("/ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    # frames up to TRANSPORT_LIMIT are read and refused by the protocol (over MAX_MESSAGE_BYTES) with an
    # error message, the socket staying usable; only a frame beyond it closes the socket (1009)
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=TRANSPORT_LIMIT)
    await ws.prepare(request)
    app = request.app
    hub = app[HUB]
    settings = app[SETTINGS]
    try:
        if not _same_origin(request):
            raise ProtocolError("forbidden", "this page may not open the signaling socket (other origin)")
        who, occ = await _identify(request)
    except ProtocolError as exc:
        return await _refuse(ws, exc)
    except (RedisError, OSError):
        return await _refuse(ws, ProtocolError("unavailable", "the server's store is unreachable: retrying"))
    servers = ice_servers(settings.stun_urls, settings.turn_urls, settings.turn_secret, settings.turn_ttl, who.code)
    try:
        session = await hub.join(occ, who, ws.send_str, ice_servers=servers)
    except ProtocolError as exc:
        return await _refuse(ws, exc)

    async def close_socket(stop: str | None) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            if stop is None:
                await ws.close(code=WSCloseCode.GOING_AWAY)
            else:
                await ws.close(code=CLOSE_REFUSED, message=stop.encode())

    session.close_socket = close_socket
    reason = LeaveReason.DROPPED
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await session.handle(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await session.handle(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break
            if session.done:
                break
        if ws.close_code == 1000:
            reason = LeaveReason.LEFT
    finally:
        await session.leave(reason)
        if not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.close()
    return ws


async def _identify(request: web.Request) -> tuple[Identity, Any]:
    app = request.app
    briefings = app[BRIEFINGS]
    token = request.query.get("site")
    if token is not None:
        code = await app[SITE_LINKS].resolve(token)
        if code is None:
            raise ProtocolError("unknown_link", "this site link is unknown or was revoked")
        occ = await briefings.current_for_site(code)
        if occ is None:
            raise ProtocolError("no_briefing", "no briefing of this site is open now")
        return Identity(code=code, role="site"), occ
    occ_id = request.query.get("briefing", "")
    user = current_user(request)
    if user is None:
        raise ProtocolError("unauthorized", "sign in as a chair to run a briefing")
    if user.role not in (Role.CHAIR, Role.ADMIN):
        raise ProtocolError("forbidden", "only a chair (or an admin) may run a briefing")
    occ = await briefings.get(occ_id) if occ_id and len(occ_id) < 100 else None
    if occ is None:
        raise ProtocolError("unknown_briefing", f"no briefing {occ_id!r}")
    now = briefings.now()
    if not (occ.lobby_opens_at <= now < occ.ends_at) and str(occ.state) not in ("open", "live"):
        raise ProtocolError("not_open", "the briefing's lobby is not open")
    return Identity(code=occ.chair, role="chair", label=user.username), occ


class _HubCollector:
    """Live rooms, pages, sites by wall state, and the media counters, read at scrape time."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        hub = self.hub
        yield GaugeMetricFamily("confsvc_live_rooms", "briefings live on this node", value=len(hub.rooms))
        yield GaugeMetricFamily("confsvc_connected_pages", "pages connected to this node",
                                value=sum(len(r.sessions) for r in hub.rooms.values()))
        states = GaugeMetricFamily("confsvc_sites", "invited sites of the live briefings by wall state", labels=["state"])
        totals: dict[str, int] = {}
        for room in hub.rooms.values():
            for state, n in room.state.counts().items():
                totals[state] = totals.get(state, 0) + n
        for state, n in sorted(totals.items()):
            states.add_metric([state], n)
        yield states
        for name, value in sorted(hub.counters().items()):
            yield CounterMetricFamily(f"confsvc_media_{name}", f"media plane: {name.replace('_', ' ')}", value=value)
        # per participant and slot: estimate, layer, frame rate, bitrate (the rooms' own samples)
        families: dict[str, Any] = {}
        for room in hub.rooms.values():
            for name, labels, value in room.media.metrics():
                if "participant" not in labels:
                    continue  # room counters: exported above, summed over rooms
                keys_ = ["briefing", *sorted(labels)]
                fam = families.get(name)
                if fam is None:
                    kind = CounterMetricFamily if name.endswith("_total") else GaugeMetricFamily
                    base = name[: -len("_total")] if name.endswith("_total") else name
                    fam = families[name] = kind(base, base.replace("confsvc_media_", "media: ").replace("_", " "), labels=keys_)
                fam.add_metric([room.id, *(labels[k] for k in sorted(labels))], value)
        yield from families.values()


def setup(app: web.Application) -> None:
    """The hub lives while the app runs; it follows the schedule's state changes (Redis pub/sub)."""
    app.router.add_routes(routes)

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        briefings = app[BRIEFINGS]

        async def site_info(codes: Sequence[str]) -> list[tuple[str, str, str, str | None]]:
            tree = await app[DIRECTORY].tree()
            out = []
            for code in codes:
                s = tree.sites.get(code)
                d = tree.district_of(code)
                out.append((code, s.name if s else code, str(s.kind) if s else "commune", d.code if d else None))
            return out

        async def on_start(occ_id: str, who: str) -> None:
            await briefings.start_now(occ_id, Actor(who or "chair", admin=True))

        async def on_end(occ_id: str, who: str) -> None:
            await briefings.end_now(occ_id, Actor(who or "chair", admin=True))

        presence = Presence(app[REDIS], settings.node)
        try:
            await presence.recover(app[ATTENDANCE_LOG])  # a crash of this node's previous run: its pages dropped
        except (RedisError, OSError) as exc:
            log.warning("could not close the previous run's connections: %s", exc)
        presence.start()
        hub = Hub(
            log=app[ATTENDANCE_LOG], site_info=site_info, media_config=MediaConfig.from_settings(settings),
            node=settings.node, on_start=on_start, on_end=on_end, presence=presence,
            saved_rooms=RoomStore(app[REDIS]),
        )
        app[HUB] = hub

        def presence_of(occurrence_id: str) -> dict[str, str]:
            room = hub.rooms.get(occurrence_id)
            if room is None:
                return {}
            return {code: site.state(room.state.phase) for code, site in room.state.sites.items()}

        app[PRESENCE] = presence_of
        app[METRICS].register(_HubCollector(hub))
        stop = asyncio.Event()
        listener = asyncio.create_task(_follow_schedule(app[REDIS], hub, stop), name="signaling-schedule")
        yield
        stop.set()
        await asyncio.wait([listener], timeout=2.0)
        if not listener.done():
            listener.cancel()
        await hub.close()
        await presence.stop()

    app.cleanup_ctx.append(hub_ctx)


async def _follow_schedule(redis: Any, hub: Hub, stop: asyncio.Event) -> None:
    """Occurrence state changes (from any node's clock or chair) move the live rooms here.

    Polled with a short timeout and stopped by ``stop`` rather than cancelled: redis-py's pub/sub
    read does not always give way to a cancellation.
    """
    while not stop.is_set():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(keys.SCHED_EVENTS)
            while not stop.is_set():
                item = await pubsub.get_message(timeout=0.25)
                if item is None or item.get("type") != "message":
                    continue
                try:
                    change = json.loads(item["data"])
                    await hub.set_phase(change["id"], change["state"])
                except Exception:
                    log.exception("signaling: bad schedule event %r", item.get("data"))
        except (RedisError, OSError) as exc:
            log.warning("signaling: schedule events unavailable (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
