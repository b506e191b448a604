"""The site page, its probe and status endpoints, and the chair's control page (HTTP only)."""

from datetime import UTC, datetime, timedelta

from confsvc.auth.sitelinks import SiteLinks
from tests.conftest import TEST_SECRET


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def _briefing(client, api_token, minutes_ahead=5, **kw):
    token = await api_token("organizer")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=minutes_ahead)
    body = {"title": "Giao ban thử", "selection": {"districts": ["YB-MCC"]}, "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(), **kw}
    resp = await client.post("/api/briefings", json=body, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_the_site_page_lists_the_open_briefing_and_the_coming_ones(client, redis, api_token):
    now_b = await _briefing(client, api_token)
    later = await _briefing(client, api_token, minutes_ahead=60 * 24 * 2, title="Giao ban tuần sau")
    token = await SiteLinks(redis, TEST_SECRET).token("YB-MCC")
    html = await (await client.get(f"/s/{token}")).text()
    assert "Giao ban thử" in html and f'data-current="{now_b["occurrences"][0]["id"]}"' in html
    assert "Giao ban tuần sau" in html and "data-starts=" in html
    assert 'id="btn-join"' in html and "Vào phòng họp" in html
    assert '"live.js.verdict.good": ' in html  # the scripts' texts, from the catalogue
    status = await (await client.get(f"/s/{token}/status")).json()
    assert status["current"]["id"] == now_b["occurrences"][0]["id"]
    assert status["next"]["id"] == later["occurrences"][0]["id"]
    other = await SiteLinks(redis, TEST_SECRET).token("YB-TPYB")  # not invited
    assert (await (await client.get(f"/s/{other}/status")).json())["current"] is None


async def test_the_probe_sends_the_bytes_asked_and_refuses_bad_sizes(client, redis):
    token = await SiteLinks(redis, TEST_SECRET).token("YB-MCC")
    resp = await client.get(f"/s/{token}/probe", params={"bytes": "200000"})
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    assert len(await resp.read()) == 200000
    assert len(await (await client.get(f"/s/{token}/probe")).read()) == 0
    for bad in ("-1", "x", str(64 * 1024 * 1024)):
        assert (await client.get(f"/s/{token}/probe", params={"bytes": bad})).status == 400
    assert (await client.get("/s/not-a-token/probe", params={"bytes": "10"})).status == 404


async def test_the_control_page_is_for_chairs_and_lists_every_invited_site(client, login, api_token):
    b = await _briefing(client, api_token, selection={"province": True})
    occ = b["occurrences"][0]["id"]
    await login(client, "organizer")
    assert (await client.get(f"/briefings/{occ}/control", allow_redirects=False)).status == 403
    await login(client, "chair")
    resp = await client.get(f"/briefings/{occ}/control")
    assert resp.status == 200
    html = await resp.text()
    assert html.count('class="site-row') == 182  # every invited site but the chair's own hall
    assert 'id="row-YB-MCC"' in html and 'id="row-YB"' not in html
    assert (await client.get("/briefings/nope-20260101T0000Z/control")).status == 404
    # the chair's home card and /control lead to it; the briefing page links to it
    assert 'href="/control"' in await (await client.get("/")).text()
    resp = await client.get("/control", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/briefings/{occ}/control"
    assert f"/briefings/{occ}/control" in await (await client.get(f"/briefings/{b['id']}")).text()
