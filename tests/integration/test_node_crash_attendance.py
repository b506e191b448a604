"""A live node with connected pages is killed mid-briefing: after a restart the attendance report
has every acknowledged event, and the sites' drop is visible."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.integration.test_serve_process import PW, Serve, cli

pytestmark = pytest.mark.integration


async def _login(session: aiohttp.ClientSession, base: str, user: str, password: str) -> None:
    page = await (await session.get(f"{base}/login")).text()
    csrf = re.search(r'name="_csrf" value="([^"]+)"', page).group(1)
    resp = await session.post(f"{base}/login", data={"username": user, "password": password, "_csrf": csrf}, allow_redirects=False)
    assert resp.status == 303


async def _next(ws, mtype, where=lambda m: True):
    async with asyncio.timeout(10):
        while True:
            m = json.loads((await ws.receive()).data)
            if m["type"] == mtype and where(m):
                return m


async def test_kill_9_mid_briefing_keeps_events_and_shows_the_drop(tmp_path):
    data = tmp_path / "data"
    node = Serve(data, CONFSVC_ADMIN_PASSWORD=PW, CONFSVC_NODE_ID="node-a")
    try:
        assert cli(data, "users", "add", "org", "--role", "organizer", "--password-stdin", stdin=PW + "\n").returncode == 0
        assert cli(data, "users", "add", "chu-tri", "--role", "chair", "--password-stdin", stdin=PW + "\n").returncode == 0
        org = cli(data, "tokens", "create", "org").stdout.strip()
        site_url = cli(data, "sites", "link", "YB-MCC").stdout.strip()
        token = site_url.rsplit("/", 1)[1]
        base = f"http://127.0.0.1:{node.port}"
        start = (datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")) + timedelta(minutes=10)).replace(second=0, microsecond=0)
        body = {"title": "Giao ban", "selection": {"sites": ["YB-MCC", "YB-NL"]},
                "start": start.strftime("%Y-%m-%dT%H:%M"), "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")}
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # cookies on 127.0.0.1
            resp = await http.post(f"{base}/api/briefings", json=body, headers={"Authorization": f"Bearer {org}"})
            assert resp.status == 201, await resp.text()
            occ_id = (await resp.json())["occurrences"][0]["id"]
            await _login(http, base, "chu-tri", PW)
            chair = await http.ws_connect(f"{base}/ws?briefing={occ_id}")
            await _next(chair, "welcome")
            await chair.send_str(json.dumps({"type": "start"}))
            await _next(chair, "room", lambda m: m["room"]["phase"] == "live")
            site = await http.ws_connect(f"{base}/ws?site={token}")
            await _next(site, "welcome")
            await _next(chair, "site", lambda m: m["site"]["code"] == "YB-MCC" and m["site"]["state"] == "connected")
            await asyncio.sleep(3.0)  # past a heartbeat (every 2 s): the node's last sign of life is in the briefing
            node.stop(signal.SIGKILL)  # mid-briefing: no "left" is ever written by this node
            await site.close()
            await chair.close()
        node = Serve(data, CONFSVC_NODE_ID="node-a")  # the same node, back
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{node.port}"
            resp = await http.get(f"{base}/api/briefings/{occ_id}/attendance", headers={"Authorization": f"Bearer {org}"})
            assert resp.status == 200, await resp.text()
            report = await resp.json()
        rows = {r["code"]: r for r in report["sites"]}
        mcc, chair_row, absent = rows["YB-MCC"], rows["YB"], rows["YB-NL"]
        assert mcc["first_join"] is not None and chair_row["first_join"] is not None  # the acknowledged joins
        assert mcc["drops"] == 1 and chair_row["drops"] == 1  # the node's death shows as a drop
        assert mcc["connected_now"] is False
        assert absent["first_join"] is None and absent["status"] != "present"
    finally:
        node.stop()
