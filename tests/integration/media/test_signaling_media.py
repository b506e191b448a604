"""Signaling drives the media plane: pages publish and subscribe over /ws with real aiortc peers.

The chair (320x240) and two sites (160x120, 176x144) join; every stage shows the chair; the chair
gives the floor to a site and the other pages' stage switches to that site's picture, announced by
a ``slots`` message, without any new SDP.
"""

from __future__ import annotations

import pytest

from confsvc.auth.sitelinks import SiteLinks
from tests.conftest import TEST_SECRET
from tests.integration.test_signaling_ws import Page, make_briefing

pytestmark = pytest.mark.integration

SIZES = {"YB": (320, 240), "YB-MCC": (160, 120), "YB-NL": (176, 144)}


async def join_media(page: Page, peers, name: str) -> dict:
    w, h = SIZES[name]
    offer = (await peers.call("publish", name=name, width=w, height=h, audio=True))["offer"]
    await page.send(type="publish", sdp=offer)
    answer = await page.next("publish_answer", timeout=20)
    await peers.call("answer", name=name, sdp=answer["sdp"])
    await page.send(type="subscribe")
    sub = await page.next("subscribe_offer", timeout=20)
    reply = await peers.call("subscribe", name=name + "/sub", offer=sub["sdp"])
    await page.send(type="subscribe_answer", sdp=reply["answer"])
    return sub["mids"]


def stage_size(stats: dict, name: str, mid: str) -> str | None:
    v = stats["subs"].get(name + "/sub", {}).get("video", {}).get(mid)
    return v["sizes"][-1][1] if v and v["sizes"] else None


async def test_floor_switches_every_stage_without_renegotiation(client, app, login, redis, peers):
    occ = await make_briefing(app)
    await login(client, "chair")
    chair = Page(await client.ws_connect(f"/ws?briefing={occ.id}"))
    await chair.next("welcome")
    links = SiteLinks(redis, TEST_SECRET)
    pages = {"YB": chair}
    for code in ("YB-MCC", "YB-NL"):
        p = Page(await client.ws_connect(f"/ws?site={await links.token(code)}"))
        await p.next("welcome")
        pages[code] = p
    mids = {code: await join_media(page, peers, code) for code, page in pages.items()}
    await chair.send(type="start")

    def sees(name: str, size: str):
        return lambda st: stage_size(st, name, mids[name]["stage"]) == size

    await peers.wait_for(lambda st: sees("YB-MCC", "320x240")(st) and sees("YB-NL", "320x240")(st), within=30)
    offers_before = sum(1 for p in pages.values() for m in p.seen if m["type"] == "subscribe_offer")

    await chair.send(type="give_floor", site="YB-MCC")
    slots = await pages["YB-NL"].next("slots", timeout=10, where=lambda m: m["slots"].get("stage") == "YB-MCC")
    assert slots["slots"]["stage"] == "YB-MCC"
    st = await peers.wait_for(lambda st: sees("YB-NL", "160x120")(st) and sees("YB", "160x120")(st), within=20)
    assert st["decode_errors"] == 0
    # the site with the floor keeps seeing the chair
    assert stage_size(st, "YB-MCC", mids["YB-MCC"]["stage"]) == "320x240"
    # no renegotiation: no new subscribe offer was sent to anyone
    offers_after = sum(1 for p in pages.values() for m in p.seen if m["type"] == "subscribe_offer")
    assert offers_after == offers_before

    await chair.send(type="take_floor")
    await peers.wait_for(sees("YB-NL", "320x240"), within=20)
