"""HTTP of the foundation, through the whole app on a real Redis."""

import re

import pytest

from confsvc.auth.sitelinks import SiteLinks
from tests.conftest import PASSWORD, TEST_SECRET

pytestmark = pytest.mark.integration


async def _csrf(client, path="/login"):
    page = await client.get(path)
    return re.search(r'name="_csrf" value="([^"]+)"', await page.text()).group(1)


async def test_anonymous_is_sent_to_log_in(client):
    for path in ("/", "/directory"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303
        assert resp.headers["Location"] == f"/login?next={path}"


async def test_login_page_is_vietnamese_by_default_and_english_on_switch(client):
    vi = await (await client.get("/login")).text()
    assert "Đăng nhập" in vi and 'lang="vi"' in vi
    resp = await client.get("/lang/en?next=/login", allow_redirects=False)
    assert resp.status == 303
    en = await (await client.get("/login")).text()
    assert "Log in" in en and 'lang="en"' in en and "Đăng nhập" not in en


async def test_login_and_logout(client):
    token = await _csrf(client)
    resp = await client.post("/login", data={"username": "admin", "password": PASSWORD, "_csrf": token, "next": "/directory"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/directory"
    home = await client.get("/")
    assert home.status == 200
    csrf = re.search(r'name="_csrf" value="([^"]+)"', await home.text()).group(1)
    assert csrf != token  # a new session (and token) after login
    out = await client.post("/logout", data={"_csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    again = await client.get("/", allow_redirects=False)
    assert again.status == 303


async def test_wrong_password_is_refused(client):
    token = await _csrf(client)
    resp = await client.post("/login", data={"username": "admin", "password": "wrong password!", "_csrf": token}, allow_redirects=False)
    assert resp.status == 401
    assert "không đúng" in await resp.text()
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_login_is_throttled_after_repeated_failures(client):
    token = await _csrf(client)
    for _ in range(10):
        await client.post("/login", data={"username": "admin", "password": "wrong password!", "_csrf": token})
    resp = await client.post("/login", data={"username": "admin", "password": PASSWORD, "_csrf": token}, allow_redirects=False)
    assert resp.status == 429


async def test_open_redirect_is_refused(client):
    token = await _csrf(client)
    resp = await client.post("/login", data={"username": "admin", "password": PASSWORD, "_csrf": token, "next": "//evil.example"}, allow_redirects=False)
    assert resp.headers["Location"] == "/"


async def test_form_without_csrf_token_is_refused(client, login):
    await login(client, "admin")
    no_token = await client.post("/logout", data={}, allow_redirects=False)
    assert no_token.status == 403
    wrong = await client.post("/logout", data={"_csrf": "forged"}, allow_redirects=False)
    assert wrong.status == 403
    assert (await client.get("/", allow_redirects=False)).status == 200  # still logged in: nothing changed
    login_without = await client.post("/login", data={"username": "admin", "password": PASSWORD}, allow_redirects=False)
    assert login_without.status == 403


async def test_rotate_without_csrf_changes_nothing(client, login, redis):
    await login(client, "admin")
    links = SiteLinks(redis, TEST_SECRET)
    before = await links.token("YB-MCC")
    resp = await client.post("/api/sites/YB-MCC/link/rotate", headers={"Accept": "application/json"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "csrf"
    assert await links.token("YB-MCC") == before
    ok = await client.post("/api/sites/YB-MCC/link/rotate", headers={"Accept": "application/json", "X-CSRF-Token": client.csrf})
    assert ok.status == 200
    assert await links.token("YB-MCC") != before


async def test_roles_are_kept_out_of_each_others_pages(client, login, aiohttp_client):
    await login(client, "chair")
    resp = await client.post("/api/sites/YB/link/rotate", headers={"X-CSRF-Token": client.csrf, "Accept": "application/json"})
    assert resp.status == 403
    assert (await resp.json())["error"] == "forbidden"
    assert (await client.get("/admin/users")).status == 403
    organizer = await aiohttp_client(client.server)  # another browser, same server
    await login(organizer, "organizer")
    assert (await organizer.get("/admin/users")).status == 403
    admin = await aiohttp_client(client.server)
    await login(admin, "admin", username="admin2")
    assert (await admin.get("/admin/users")).status == 200


async def test_api_sites_needs_a_token(client, api_token):
    resp = await client.get("/api/sites")
    assert resp.status == 401
    body = await resp.json()
    assert set(body) >= {"error", "detail"} and body["error"] == "unauthorized"
    bad = await client.get("/api/sites", headers={"Authorization": "Bearer cst_nope"})
    assert bad.status == 401
    token = await api_token("organizer")
    ok = await client.get("/api/sites", headers={"Authorization": f"Bearer {token}"})
    assert ok.status == 200
    data = await ok.json()
    assert data["count"] == 183
    codes = {s["code"] for s in data["sites"]}
    assert {"YB", "YB-MCC"} <= codes
    q = await client.get("/api/sites", params={"q": "mu cang chai", "kind": "district"}, headers={"Authorization": f"Bearer {token}"})
    assert [s["code"] for s in (await q.json())["sites"]] == ["YB-MCC"]
    badkind = await client.get("/api/sites", params={"kind": "village"}, headers={"Authorization": f"Bearer {token}"})
    assert badkind.status == 400 and (await badkind.json())["error"] == "bad_query"


async def test_bearer_requests_need_no_csrf_but_do_need_the_role(client, api_token):
    org = await api_token("organizer")
    resp = await client.post("/api/sites/YB/link/rotate", headers={"Authorization": f"Bearer {org}"})
    assert resp.status == 403
    adm = await api_token("admin")
    resp = await client.post("/api/sites/YB/link/rotate", headers={"Authorization": f"Bearer {adm}"})
    assert resp.status == 200
    assert (await resp.json())["url"].startswith("http://127.0.0.1:8080/s/")


async def test_site_link_opens_the_site_page_until_revoked(client, redis, api_token):
    links = SiteLinks(redis, TEST_SECRET)
    token = await links.token("YB-MCC")
    page = await client.get(f"/s/{token}")
    assert page.status == 200
    assert "Mù Cang Chải" in await page.text()
    assert (await client.get("/s/not-a-real-token")).status == 404
    adm = await api_token("admin")
    await client.post("/api/sites/YB-MCC/link/revoke", headers={"Authorization": f"Bearer {adm}"})
    assert (await client.get(f"/s/{token}")).status == 404
    new = await links.rotate("YB-MCC")
    assert new != token
    assert (await client.get(f"/s/{new}")).status == 200
    assert (await client.get(f"/s/{token}")).status == 404


async def test_directory_page_searches_by_name_and_code(client, login):
    await login(client, "organizer")
    html = await (await client.get("/directory", params={"q": "Kim Nọi"})).text()
    assert "Xã Kim Nọi" in html and "Mù Cang Chải" in html  # the commune and its district
    assert "Phường Yên Thịnh" not in html
    html = await (await client.get("/directory", params={"q": "YB-TPYB"})).text()
    assert "Thành phố Yên Bái" in html
    full = await (await client.get("/directory")).text()
    assert full.count('class="commune"') == 173
    assert "/s/" not in full  # only admins see join links


async def test_admin_sees_join_links_on_the_directory(client, login, redis):
    await login(client, "admin", username="admin2")
    html = await (await client.get("/directory", params={"q": "YB-MCC"})).text()
    token = await SiteLinks(redis, TEST_SECRET).token("YB-MCC")
    assert f"/s/{token}" in html


async def test_healthz_and_metrics(client):
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["redis"] == "ok"
    metrics = await (await client.get("/metrics")).text()
    assert "confsvc_directory_sites 183.0" in metrics
    assert "confsvc_redis_up 1.0" in metrics


async def test_healthz_is_503_when_redis_is_down(aiohttp_client, settings):
    from confsvc.app import build_app
    from confsvc.store.redis import client as redis_client

    dead = redis_client("unix:///nonexistent/redis.sock")
    app = build_app(settings, dead, TEST_SECRET)
    app.on_startup.clear()
    cl = await aiohttp_client(app)
    resp = await cl.get("/healthz")
    assert resp.status == 503
    body = await resp.json()
    assert body["redis"] == "down" and "Redis unreachable" in body["reason"]


async def test_bad_json_and_unknown_api_path_are_json_errors(client, api_token):
    token = await api_token("admin")
    resp = await client.get("/api/nothing-here", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 404
    assert (await resp.json())["error"] == "not_found"
    malformed = await client.get("/api/sites", headers={"Authorization": "Basic abc"})
    assert malformed.status == 401 and "Bearer" in (await malformed.json())["detail"]


async def test_anonymous_requests_write_no_session(client, redis):
    await client.get("/login")
    await client.get("/healthz")
    await client.get("/api/sites")
    assert [k async for k in redis.scan_iter("confsvc_session_*")] == []
