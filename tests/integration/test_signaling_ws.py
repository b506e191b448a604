"""The signaling WebSocket through the whole app: who may join, who may do what, state pushed."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from confsvc.auth.sitelinks import SiteLinks
from confsvc.http.scheduling import BRIEFINGS
from confsvc.http.ws import HUB
from confsvc.scheduling.service import Actor
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
INVITED = ["YB-MCC", "YB-NL", "YB-LY"]


async def make_briefing(app, sites=INVITED, minutes_ahead=10):
    start = (datetime.now(ZONE) + timedelta(minutes=minutes_ahead)).replace(second=0, microsecond=0)
    body = {
        "title": "Giao ban thử",
        "selection": {"sites": sites},
        "start": start.strftime("%Y-%m-%dT%H:%M"),
        "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    svc = app[BRIEFINGS]
    b = await svc.create(body, Actor("org", admin=True))
    (occ,) = await svc.occurrences(b.id)
    return occ


class Page:
    """A page's socket: sends messages, collects what the server pushes."""

    def __init__(self, ws):
        self.ws = ws
        self.seen: list[dict] = []

    async def send(self, **msg):
        await self.ws.send_str(json.dumps(msg))

    async def next(self, mtype, timeout=5.0, where=lambda m: True):  # noqa: ASYNC109
        for i, m in enumerate(self.seen):
            if m["type"] == mtype and where(m):
                return self.seen.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.ws.receive()
                if raw.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"socket ended while waiting for {mtype}: {raw.type} {raw.extra}")
                m = json.loads(raw.data)
                if m["type"] == mtype and where(m):
                    return m
                self.seen.append(m)

    async def error(self, timeout=5.0):  # noqa: ASYNC109
        return await self.next("error", timeout)

    async def roundtrip(self, t):
        """Send a ping and return everything that came before its pong."""
        await self.send(type="ping", t=t)
        before = []
        async with asyncio.timeout(5):
            while True:
                raw = await self.ws.receive()
                assert raw.type == aiohttp.WSMsgType.TEXT, f"socket closed: {raw.type}"
                m = json.loads(raw.data)
                if m["type"] == "pong" and m["t"] == t:
                    return before
                before.append(m)


@pytest.fixture
async def occ(app):
    return await make_briefing(app)


@pytest.fixture
def site_page(client, redis, occ):
    links = SiteLinks(redis, TEST_SECRET)

    async def open_(code):
        token = await links.token(code)
        ws = await client.ws_connect(f"/ws?site={token}")
        page = Page(ws)
        welcome = await page.next("welcome")
        return page, welcome

    return open_


@pytest.fixture
async def chair_page(client, login, occ):
    await login(client, "chair")
    ws = await client.ws_connect(f"/ws?briefing={occ.id}")
    page = Page(ws)
    page.welcome = await page.next("welcome")
    return page


async def test_site_joins_its_open_briefing_and_gets_the_whole_state(site_page, occ):
    page, welcome = await site_page("YB-MCC")
    assert welcome["you"]["site"] == "YB-MCC" and welcome["you"]["role"] == "site"
    state = welcome["state"]
    assert state["room"]["briefing"] == occ.id and state["room"]["phase"] == "lobby"
    assert {s["code"] for s in state["sites"]} == {"YB", *INVITED}
    me = next(s for s in state["sites"] if s["code"] == "YB-MCC")
    assert me["state"] == "lobby" and me["mic"] is False
    assert await page.roundtrip(1.5) is not None


async def test_door_refusals(client, redis, app, occ):
    bad = await client.ws_connect("/ws?site=not-a-token")
    msg = await bad.receive_json()
    assert msg["code"] == "unknown_link"
    await bad.receive()
    assert bad.close_code == 4000
    links = SiteLinks(redis, TEST_SECRET)
    outsider = await client.ws_connect(f"/ws?site={await links.token('YB-TPYB')}")
    assert (await outsider.receive_json())["code"] == "no_briefing"
    chair_site = await client.ws_connect(f"/ws?site={await links.token('YB')}")
    assert (await chair_site.receive_json())["code"] == "use_chair_page"
    anon_chair = await client.ws_connect(f"/ws?briefing={occ.id}")
    assert (await anon_chair.receive_json())["code"] == "unauthorized"
    foreign = await client.ws_connect("/ws?site=x", headers={"Origin": "http://evil.example"})
    assert (await foreign.receive_json())["code"] == "forbidden"


async def test_briefing_not_yet_open_cannot_be_joined(app, client, redis):
    await make_briefing(app, sites=["YB-VY"], minutes_ahead=180)  # lobby opens in 2 hours
    token = await SiteLinks(redis, TEST_SECRET).token("YB-VY")
    ws = await client.ws_connect(f"/ws?site={token}")
    assert (await ws.receive_json())["code"] == "no_briefing"


async def test_only_chairs_and_admins_run_a_briefing(aiohttp_client, client, login, occ):
    org = await aiohttp_client(client.server)
    await login(org, "organizer")
    ws = await org.ws_connect(f"/ws?briefing={occ.id}")
    assert (await ws.receive_json())["code"] == "forbidden"
    await login(client, "chair")
    ws = await client.ws_connect("/ws?briefing=nope")
    assert (await ws.receive_json())["code"] == "unknown_briefing"


async def test_a_site_cannot_send_the_chairs_messages(site_page, chair_page, app, occ):
    page, _ = await site_page("YB-MCC")
    for msg in ({"type": "start"}, {"type": "give_floor", "site": "YB-MCC"}, {"type": "mute_all"},
                {"type": "remove", "site": "YB-NL"}, {"type": "lock", "locked": True}, {"type": "rollcall_start"}):
        await page.send(**msg)
        err = await page.error()
        assert err["code"] == "forbidden" and err["ref"] == msg["type"]
    room = app[HUB].rooms[occ.id]
    assert room.state.phase == "lobby" and room.state.floor is None and not room.state.locked and room.state.rollcall is None
    # and the page still works
    assert await page.roundtrip(2) is not None


async def test_chair_runs_the_briefing_and_sites_see_it(site_page, chair_page, app, occ):
    assert chair_page.welcome["you"]["role"] == "chair" and chair_page.welcome["you"]["site"] == "YB"
    site, _ = await site_page("YB-MCC")
    other, _ = await site_page("YB-NL")
    # the chair sees sites arrive
    arrived = await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-NL")
    assert arrived["site"]["state"] == "lobby"
    await chair_page.send(type="start")
    room = await site.next("room", where=lambda m: m["room"]["phase"] == "live")
    assert room["room"]["stage"] == "YB"
    assert (await app[BRIEFINGS].get(occ.id)).state == "live"  # persisted in the schedule
    # a site may not open its microphone before it has the floor
    await site.send(type="media_state", mic=True)
    assert (await site.error())["code"] == "not_allowed"
    # raised hand on the chair's wall
    await site.send(type="raise_hand", raised=True)
    hand = await chair_page.next("room", where=lambda m: m["room"]["hands"] == ["YB-MCC"])
    assert hand["room"]["hands"] == ["YB-MCC"]
    # the floor: every page learns the stage, the site is asked to speak and may open its microphone
    await chair_page.send(type="give_floor", site="YB-MCC")
    for page in (site, other, chair_page):
        got = await page.next("room", where=lambda m: m["room"]["floor"] == "YB-MCC")
        assert got["room"]["stage"] == "YB-MCC" and got["room"]["hands"] == []
    assert (await site.next("ask_unmute"))["reason"] == "floor"
    await site.send(type="media_state", mic=True)
    opened = await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["mic"])
    assert opened["site"]["mic"] is True
    await chair_page.send(type="take_floor")
    assert (await site.next("mute"))["reason"] == "floor_taken"
    back = await other.next("room", where=lambda m: m["room"]["floor"] is None)
    assert back["room"]["stage"] == "YB"


async def test_roll_call_is_answered_and_tallied(site_page, chair_page):
    a, _ = await site_page("YB-MCC")
    b, _ = await site_page("YB-NL")
    await chair_page.send(type="start")
    await chair_page.send(type="rollcall_start")
    rc = (await a.next("rollcall"))["rollcall"]
    assert (await b.next("rollcall"))["rollcall"] == rc
    await a.send(type="rollcall_answer", rollcall=rc)
    await b.send(type="rollcall_answer", rollcall=rc)
    tally = await chair_page.next("room", where=lambda m: (m["room"]["rollcall"] or {}).get("answered") == 2)
    assert tally["room"]["rollcall"] == {"id": rc, "open": True, "answered": 2, "invited": 3}
    await chair_page.send(type="rollcall_end")
    await chair_page.next("room", where=lambda m: m["room"]["rollcall"] and not m["room"]["rollcall"]["open"])
    await a.send(type="rollcall_answer", rollcall=rc)
    assert (await a.error())["code"] == "no_rollcall"


async def test_removed_site_is_sent_away_and_cannot_rejoin(site_page, chair_page, client, redis):
    page, _ = await site_page("YB-LY")
    await chair_page.send(type="remove", site="YB-LY")
    assert (await page.next("removed"))["type"] == "removed"
    token = await SiteLinks(redis, TEST_SECRET).token("YB-LY")
    again = await client.ws_connect(f"/ws?site={token}")
    assert (await again.receive_json())["code"] == "removed"


async def test_a_second_window_of_a_site_replaces_the_first(site_page, chair_page, app, occ):
    first, _ = await site_page("YB-MCC")
    second, _ = await site_page("YB-MCC")
    err = await first.error()
    assert err["code"] == "replaced"
    assert await second.roundtrip(3) is not None
    # the server closes the old window's socket at once (it does not wait for it to speak), telling
    # it not to come back
    async with asyncio.timeout(5):
        closing = await first.ws.receive()
    assert closing.type == aiohttp.WSMsgType.CLOSE and (closing.data, closing.extra) == (4000, "replaced")
    assert not app[HUB].rooms[occ.id].state.sites["YB-MCC"].hand
    assert app[HUB].rooms[occ.id].sessions["YB-MCC"] is not None and await second.roundtrip(4) is not None


async def test_reconnecting_page_gets_the_whole_state_in_one_message(site_page, chair_page):
    page, _ = await site_page("YB-MCC")
    await chair_page.send(type="start")
    await chair_page.send(type="lock", locked=True)
    await page.next("room", where=lambda m: m["room"]["locked"])
    await page.ws.close()
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["state"] == "left")
    page2, welcome = await site_page("YB-MCC")  # a known site may come back into a locked room
    assert welcome["state"]["room"]["locked"] is True and welcome["state"]["room"]["phase"] == "live"


async def test_flood_is_rate_limited_and_the_connection_survives(site_page):
    page, _ = await site_page("YB-MCC")
    for i in range(60):
        await page.send(type="quality", rtt_ms=i)
    err = await page.error()
    assert err["code"] == "rate_limited"
    await asyncio.sleep(1.0)
    assert await page.roundtrip(9) is not None


async def test_attendance_records_joins_and_leaves(site_page, app, occ, redis):
    page, _ = await site_page("YB-NL")
    await page.send(type="leave")
    from confsvc.store import keys

    packed = ""
    for _ in range(100):  # the leave is written once the page's media is closed
        entries = await redis.xrange(keys.attendance_log(occ.id))
        packed = " ".join(v for _, fields in entries for v in fields.values())
        if "left|" in packed:
            break
        await asyncio.sleep(0.05)
    assert re.search(r"joined\|[^|]*\|YB-NL\|", packed), packed
    assert re.search(r"left\|[^|]*\|YB-NL\|", packed), packed


async def test_metrics_show_live_rooms_pages_and_site_states(site_page, client):
    await site_page("YB-MCC")
    text = await (await client.get("/metrics")).text()
    assert "confsvc_live_rooms 1.0" in text
    assert "confsvc_connected_pages 1.0" in text
    assert 'confsvc_sites{state="lobby"} 1.0' in text and 'confsvc_sites{state="not_joined"} 3.0' in text
    assert "confsvc_media_rtp_in_total" in text


async def test_low_data_and_pin_reach_the_media_plane_and_survive_a_rejoin(site_page, chair_page, app, occ):
    page, _ = await site_page("YB-MCC")
    await page.send(type="low_data", on=True)
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["low_data"])
    await chair_page.send(type="pin_quality", site="YB-MCC", layer="low")
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["pin"] == "low")
    media = app[HUB].rooms[occ.id].media
    stats = media.participants["YB-MCC"].stats()
    assert stats["low_data"] is True and stats["pin"] == "low"
    await page.ws.close()
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["state"] != "lobby")
    await site_page("YB-MCC")  # back: a new media participant, the same choices
    stats = media.participants["YB-MCC"].stats()
    assert stats["low_data"] is True and stats["pin"] == "low"
    chair_page.seen.clear()  # only what follows the unpin
    await chair_page.send(type="pin_quality", site="YB-MCC", layer=None)
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["pin"] is None)
    assert media.participants["YB-MCC"].stats()["pin"] is None


async def test_the_briefing_page_shows_each_sites_live_state(site_page, client, login, occ):
    await site_page("YB-MCC")
    await login(client, "organizer", username="org-viewer")
    html = await (await client.get(f"/briefings/{occ.briefing_id}")).text()
    row = html[html.index('id="site-YB-MCC"'):]
    row = row[: row.index("</tr>")]
    assert "state-lobby" in row  # in the lobby now
    other = html[html.index('id="site-YB-NL"'):]
    assert "state-not_joined" in other[: other.index("</tr>")]


async def test_the_chair_mutes_one_site_or_all(site_page, chair_page, app, occ, redis):
    from confsvc.store import keys

    a, _ = await site_page("YB-MCC")
    b, _ = await site_page("YB-NL")
    await chair_page.send(type="start")
    await chair_page.send(type="open_mics", on=True)
    await a.next("room", where=lambda m: m["room"]["open_mics"])
    await b.next("room", where=lambda m: m["room"]["open_mics"])
    await a.send(type="media_state", mic=True)
    await b.send(type="media_state", mic=True)
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-NL" and m["site"]["mic"])
    await chair_page.send(type="mute", site="YB-MCC")
    assert (await a.next("mute"))["reason"] == "chair"
    state = app[HUB].rooms[occ.id].state
    assert state.sites["YB-MCC"].mic is False and state.sites["YB-NL"].mic is True
    await chair_page.send(type="mute_all")
    assert (await b.next("mute"))["reason"] == "chair"
    chair_page.seen.clear()
    await chair_page.next("room", where=lambda m: not m["room"]["open_mics"])
    assert state.sites["YB-NL"].mic is False and not state.open_mics
    events = [v for _, f in await redis.xrange(keys.attendance_log(occ.id)) for v in f.values()]
    for site in ("YB-MCC", "YB-NL"):  # each microphone closed by the chair is in the log once
        closed = [e for e in events if re.fullmatch(rf"media\|[^|]*\|{site}\|[^|]*\|[^|]*\|\d+\|mic\|0\|chair", e)]
        assert len(closed) == 1, events


async def test_a_restarted_node_carries_the_briefing_on_as_it_was(site_page, chair_page, client, aiohttp_client, settings, redis, occ, login):
    """The chair's decisions and the sites' standing wishes outlive the node: saved in Redis as they
    happen (not at shutdown: a crash keeps them too), taken up by the next node."""
    from confsvc.app import build_app
    from confsvc.store import keys

    mcc, _ = await site_page("YB-MCC")
    nl, _ = await site_page("YB-NL")
    await chair_page.send(type="start")
    await chair_page.send(type="give_floor", site="YB-MCC")
    await chair_page.send(type="lock", locked=True)
    await chair_page.send(type="remove", site="YB-LY")
    await chair_page.send(type="rollcall_start")
    rc = (await nl.next("rollcall"))["rollcall"]
    await nl.send(type="rollcall_answer", rollcall=rc)
    await nl.send(type="raise_hand", raised=True)
    await nl.send(type="low_data", on=True)
    await chair_page.send(type="pin_quality", site="YB-NL", layer="low")
    await chair_page.next("site", where=lambda m: m["site"]["code"] == "YB-NL" and m["site"]["pin"] == "low")

    async def saved():
        raw = await redis.get(keys.live_room(occ.id))
        return json.loads(raw) if raw else {}

    async with asyncio.timeout(5):  # written while the node lives
        while (await saved()).get("sites", {}).get("YB-NL", {}).get("pin") != "low":  # noqa: ASYNC110 - polling Redis, which has no event to wait on
            await asyncio.sleep(0.05)
    assert (await saved())["floor"] == "YB-MCC"

    await client.server.close()  # the node goes away under the pages; a new one comes up on the same Redis
    await client.close()
    client2 = await aiohttp_client(build_app(settings, redis, TEST_SECRET))
    await login(client2, "chair")
    ws = await client2.ws_connect(f"/ws?briefing={occ.id}")
    chair2 = Page(ws)
    state = (await chair2.next("welcome"))["state"]
    room = state["room"]
    assert room["phase"] == "live" and room["floor"] == "YB-MCC" and room["locked"] is True
    assert room["rollcall"] == {"id": rc, "open": True, "answered": 1, "invited": 3}
    assert room["hands"] == ["YB-NL"]
    sites = {s["code"]: s for s in state["sites"]}
    assert sites["YB-LY"]["state"] == "removed"
    assert sites["YB-MCC"]["state"] == "dropped" and sites["YB-NL"]["state"] == "dropped"
    assert sites["YB-NL"]["low_data"] is True and sites["YB-NL"]["pin"] == "low" and sites["YB-NL"]["rollcall"] == rc
    # the site that had the floor comes back to it, and is asked to speak again
    links = SiteLinks(redis, TEST_SECRET)
    back = Page(await client2.ws_connect(f"/ws?site={await links.token('YB-MCC')}"))
    welcome = await back.next("welcome")
    assert welcome["state"]["room"]["floor"] == "YB-MCC"
    assert (await back.next("ask_unmute"))["reason"] == "floor"
    # the removed site stays out, and the room stays locked... for a site that never joined
    again = await client2.ws_connect(f"/ws?site={await links.token('YB-LY')}")
    assert (await again.receive_json())["code"] == "removed"
    # a new roll call gets a new id
    await chair2.send(type="rollcall_start")
    assert (await back.next("rollcall"))["rollcall"] != rc
