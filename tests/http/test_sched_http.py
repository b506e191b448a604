"""Scheduling over HTTP: the API's validation and permissions, the pages, the calendars."""

import json
import re
from datetime import date, datetime, timedelta

from icalendar import Calendar

from confsvc.auth.sitelinks import SiteLinks
from confsvc.store import keys
from tests.conftest import TEST_SECRET

# a Monday three weeks ahead (the app runs on the real clock: dates must be in the future)
MONDAY = date.today() + timedelta(days=21 - date.today().weekday())
DAY = MONDAY.isoformat()


def body(**kw):
    out = {"title": "Giao ban tuần", "selection": {"districts": ["YB-MCC"]}, "start": f"{DAY}T08:00", "end": f"{DAY}T10:00"}
    out.update(kw)
    return out


async def stored(redis):
    """Every scheduling data key (the clock's lock keys aside): empty when nothing was written."""
    return [k for k in await redis.keys(keys.PREFIX + "sched:*") if not k.startswith(keys.PREFIX + "sched:clock:")]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


async def create(client, token, **kw):
    resp = await client.post("/api/briefings", json=body(**kw), headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_create_returns_the_briefing(client, api_token, redis):
    token = await api_token("organizer")
    resp = await client.post("/api/briefings", json=body(rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=4", lobby_minutes=45), headers=bearer(token))
    assert resp.status == 201
    b = await resp.json()
    assert resp.headers["Location"] == f"/api/briefings/{b['id']}"
    assert b["organizer"] == "organizer-bot" and b["chair"] == "YB" and b["lobby_minutes"] == 45
    assert b["selection"] == {"province": False, "districts": ["YB-MCC"], "sites": []}
    assert b["sites"][0] == "YB-MCC" and b["booked_sites"][0] == "YB"
    assert len(b["occurrences"]) == 4 and b["occurrences"][0]["id"].startswith(b["id"] + "-")
    assert b["start"].endswith("01:00:00Z")  # 08:00 in Vietnam, stored UTC
    got = await (await client.get(f"/api/briefings/{b['id']}", headers=bearer(token))).json()
    assert got["id"] == b["id"] and got["seq"] == 0


PAST = (date.today() - timedelta(days=1)).isoformat()


BAD_INPUTS = [
        ({"end": f"{DAY}T07:00"}, 422, "end"),
        ({"end": f"{DAY}T08:00"}, 422, "end"),
        ({"end": f"{DAY}T23:00"}, 422, "end"),  # over 12 hours
        ({"selection": {"sites": ["YB-NOWHERE"]}}, 422, "selection.sites"),
        ({"selection": {"districts": ["YB-NOWHERE"]}}, 422, "selection.districts"),
        ({"selection": {}}, 422, "selection"),
        ({"selection": {"sites": []}}, 422, "selection"),
        ({"rrule": "FREQ=SOMETIMES"}, 422, "rrule"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=MO"}, 422, "rrule"),  # never ends
        ({"rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=60"}, 422, "rrule"),  # over a year
        ({"start": f"{PAST}T08:00", "end": f"{PAST}T10:00"}, 422, "start"),
        ({"start": "next monday"}, 422, "start"),
        ({"chair": "YB-NOWHERE"}, 422, "chair"),
        ({"lobby_minutes": 5000}, 422, "lobby_minutes"),
        ({"title": "   "}, 422, "title"),
        ({"title": None}, 400, "title"),
        ({"title": 42}, 400, "title"),
        ({"selection": ["YB"]}, 400, "selection"),
        ({"lobby_minutes": "60"}, 400, "lobby_minutes"),
        ({"colour": "red"}, 400, "colour"),
    ]


async def test_each_bad_input_is_refused_naming_the_field_and_writes_nothing(client, api_token, redis):
    token = await api_token("organizer")
    for change, status, field in BAD_INPUTS:
        resp = await client.post("/api/briefings", json=body(**change), headers=bearer(token))
        assert resp.status == status, (change, await resp.text())
        err = await resp.json()
        assert err["field"] == field, change
        assert err["error"] == ("invalid" if status == 422 else "bad_request"), change
        assert err["detail"], change
        assert await stored(redis) == [], change


async def test_bad_json_is_a_400(client, api_token, redis):
    token = await api_token("organizer")
    resp = await client.post("/api/briefings", data=b"{nope", headers={**bearer(token), "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())["error"] == "bad_json"
    assert await stored(redis) == []


async def test_double_booking_is_a_409_listing_each_conflict(client, api_token):
    first = await create(client, await api_token("organizer"))
    resp = await client.post("/api/briefings", json=body(title="Khác", selection={"sites": ["YB-MCC-MODE"]}, chair="YB-MCC-MODE",
                                                          start=f"{DAY}T09:30", end=f"{DAY}T10:30"), headers=bearer(await api_token("organizer", "org2")))
    assert resp.status == 409
    err = await resp.json()
    assert err["error"] == "conflict" and err["field"] == "sites"
    (c,) = err["conflicts"]
    assert c["briefing_id"] == first["id"] and c["title"] == "Giao ban tuần" and c["sites"] == ["YB-MCC-MODE"]
    assert c["starts_at"] == first["occurrences"][0]["starts_at"]
    # the dry run (what the form's "check" button does) answers the same and writes nothing
    org2 = await api_token("organizer", "org2")
    resp = await client.post("/api/briefings?dry_run=1", json=body(selection={"sites": ["YB-MCC-MODE"]}, chair="YB-MCC-MODE"), headers=bearer(org2))
    assert resp.status == 409 and (await resp.json())["conflicts"][0]["briefing_id"] == first["id"]
    resp = await client.post("/api/briefings?dry_run=1", json=body(selection={"sites": ["YB-NL"]}, chair="YB-NL"), headers=bearer(org2))
    assert resp.status == 200 and await resp.json() == {"ok": True, "conflicts": []}
    listed = await (await client.get(f"/api/briefings?from={DAY}", headers=bearer(org2))).json()
    assert [o["briefing_id"] for o in listed["occurrences"]] == [first["id"]]


async def test_chair_cannot_create_but_can_read_and_start(client, api_token):
    chair = await api_token("chair")
    resp = await client.post("/api/briefings", json=body(), headers=bearer(chair))
    assert resp.status == 403 and (await resp.json())["error"] == "forbidden"
    b = await create(client, await api_token("organizer"))
    assert (await client.get(f"/api/briefings/{b['id']}", headers=bearer(chair))).status == 200
    assert (await client.patch(f"/api/briefings/{b['id']}", json={"title": "x"}, headers=bearer(chair))).status == 403
    occ = b["occurrences"][0]["id"]
    # an organizer is not the chair
    resp = await client.post(f"/api/briefings/{b['id']}/occurrences/{occ}/start", headers=bearer(await api_token("organizer")))
    assert resp.status == 403


async def test_anonymous_is_refused(client, redis):
    assert (await client.get("/api/briefings")).status == 401
    assert (await client.get("/briefings/week", allow_redirects=False)).status == 303  # to the login page
    assert (await client.post("/api/briefings", json=body())).status in (401, 403)  # no session: no CSRF token either
    assert await stored(redis) == []


async def test_organizer_cannot_change_another_organizers_briefing_unless_admin(client, api_token):
    owner = await api_token("organizer", "org1")
    other = await api_token("organizer", "org2")
    admin = await api_token("admin")
    b = await create(client, owner)
    occ = b["occurrences"][0]["id"]
    for method, url, payload in [
        ("PATCH", f"/api/briefings/{b['id']}", {"title": "x"}),
        ("DELETE", f"/api/briefings/{b['id']}", None),
        ("PATCH", f"/api/briefings/{b['id']}/occurrences/{occ}", {"start": f"{DAY}T14:00"}),
        ("DELETE", f"/api/briefings/{b['id']}/occurrences/{occ}", None),
    ]:
        resp = await client.request(method, url, json=payload, headers=bearer(other))
        assert resp.status == 403, (method, url)
        assert "org1" in (await resp.json())["detail"]
    resp = await client.patch(f"/api/briefings/{b['id']}", json={"title": "Sửa bởi admin", "seq": 0}, headers=bearer(admin))
    assert resp.status == 200 and (await resp.json())["seq"] == 1
    resp = await client.patch(f"/api/briefings/{b['id']}", json={"title": "Sửa lại", "seq": 1}, headers=bearer(owner))
    assert resp.status == 200
    resp = await client.patch(f"/api/briefings/{b['id']}", json={"title": "Cũ", "seq": 0}, headers=bearer(owner))
    assert resp.status == 409 and (await resp.json())["error"] == "stale"


async def test_occurrences_can_be_moved_and_cancelled(client, api_token):
    token = await api_token("organizer")
    b = await create(client, token, rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3")
    second = b["occurrences"][1]["id"]
    base = f"/api/briefings/{b['id']}/occurrences"
    next_day = (MONDAY + timedelta(days=8)).isoformat()
    resp = await client.patch(f"{base}/{second}", json={"start": f"{next_day}T14:00", "end": f"{next_day}T15:00"}, headers=bearer(token))
    assert resp.status == 200, await resp.text()
    moved = await resp.json()
    assert moved["id"] == second and moved["moved"] and moved["starts_at"].endswith("07:00:00Z")
    resp = await client.patch(f"{base}/{second}", json={"end": f"{next_day}T13:00"}, headers=bearer(token))
    assert resp.status == 422 and (await resp.json())["field"] == "end"
    resp = await client.delete(f"{base}/{b['occurrences'][2]['id']}", headers=bearer(token))
    assert resp.status == 200 and (await resp.json())["state"] == "cancelled"
    listed = await (await client.get(base, headers=bearer(token))).json()
    assert [o["state"] for o in listed["occurrences"]] == ["scheduled", "scheduled", "cancelled"]
    assert (await client.get(f"{base}/{b['id']}-20000101T0000Z", headers=bearer(token))).status == 404
    assert (await client.get(f"/api/briefings/other/occurrences/{second}", headers=bearer(token))).status == 404


async def test_list_by_range(client, api_token):
    token = await api_token("organizer")
    b = await create(client, token, rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3")
    resp = await client.get(f"/api/briefings?from={DAY}&to={(MONDAY + timedelta(days=8)).isoformat()}", headers=bearer(token))
    got = await resp.json()
    assert [o["id"] for o in got["occurrences"]] == [o["id"] for o in b["occurrences"][:2]]
    resp = await client.get(f"/api/briefings?from={DAY}&to={DAY}&site=YB-NL", headers=bearer(token))
    assert resp.status == 400 and (await resp.json())["field"] == "to"
    resp = await client.get("/api/briefings?from=yesterday", headers=bearer(token))
    assert resp.status == 400 and (await resp.json())["field"] == "from"
    resp = await client.get("/api/briefings?from=2026-01-01&to=2028-01-01", headers=bearer(token))
    assert resp.status == 400


async def test_chair_starts_and_ends_then_the_briefing_is_read_only(client, api_token):
    b = await create(client, await api_token("organizer"), start=f"{(date.today() + timedelta(days=1)).isoformat()}T08:00",
                     end=f"{(date.today() + timedelta(days=1)).isoformat()}T10:00")
    occ = b["occurrences"][0]["id"]
    chair = await api_token("chair")
    resp = await client.post(f"/api/briefings/{b['id']}/occurrences/{occ}/start", headers=bearer(chair))
    assert resp.status == 200 and (await resp.json())["state"] == "live"
    resp = await client.post(f"/api/briefings/{b['id']}/occurrences/{occ}/end", headers=bearer(chair))
    assert resp.status == 200 and (await resp.json())["state"] == "ended"
    resp = await client.patch(f"/api/briefings/{b['id']}", json={"title": "x"}, headers=bearer(await api_token("organizer")))
    assert resp.status == 409 and (await resp.json())["error"] == "read_only"


async def test_cancel_gives_a_method_cancel_file_with_a_higher_sequence(client, api_token, login):
    b = await create(client, await api_token("organizer", "organizer1"))
    await login(client, "organizer")
    before = Calendar.from_ical(await (await client.get(f"/briefings/{b['id']}.ics")).read())
    resp = await client.post(f"/briefings/{b['id']}/cancel", data={"_csrf": client.csrf}, allow_redirects=False)
    assert resp.status == 303
    resp = await client.get(f"/briefings/{b['id']}.ics")
    assert resp.headers["Content-Type"].startswith("text/calendar")
    after = Calendar.from_ical(await resp.read())
    assert str(before["METHOD"]) == "PUBLISH" and str(after["METHOD"]) == "CANCEL"
    ev_before, ev_after = before.walk("VEVENT")[0], after.walk("VEVENT")[0]
    assert str(ev_before["UID"]) == str(ev_after["UID"])
    assert int(ev_after["SEQUENCE"]) == int(ev_before["SEQUENCE"]) + 1
    assert str(ev_after["STATUS"]) == "CANCELLED"


async def test_site_feed(client, api_token, redis):
    b = await create(client, await api_token("organizer"))
    links = SiteLinks(redis, TEST_SECRET)
    invited, elsewhere = await links.token("YB-MCC-MODE"), await links.token("YB-NL")
    resp = await client.get(f"/s/{invited}/calendar.ics")
    assert resp.status == 200
    cal = Calendar.from_ical(await resp.read())
    (ev,) = cal.walk("VEVENT")
    assert str(ev["UID"]).startswith(b["id"] + "@")
    assert ev["DTSTART"].dt.replace(tzinfo=None) == datetime.fromisoformat(f"{DAY}T08:00")
    assert str(cal.walk("VTIMEZONE")[0]["TZID"]) == "Asia/Ho_Chi_Minh"
    assert Calendar.from_ical(await (await client.get(f"/s/{elsewhere}/calendar.ics")).read()).walk("VEVENT") == []
    assert (await client.get("/s/not-a-token/calendar.ics")).status == 404


# --- pages ------------------------------------------------------------------------------------
def form(**kw):
    out = {"title": "Giao ban tháng", "agenda": "", "chair": "YB", "date": DAY, "start_time": "08:00", "end_time": "10:00",
           "lobby_minutes": "60", "repeat": "none", "ends": "count", "count": "10"}
    out.update(kw)
    return out


def with_sites(data, codes):
    items = list(data.items()) + [("site", c) for c in codes]
    return items


async def test_form_creates_and_shows_the_briefing(client, login, redis):
    await login(client, "organizer")
    data = with_sites(form(repeat="monthly_nth", nth="1", nth_day="MO", count="3", _csrf=client.csrf), ["YB-NL", "YB-MCC"])
    resp = await client.post("/briefings/new", data=data, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await client.get(resp.headers["Location"])
    html = await page.text()
    assert page.status == 200 and "Giao ban tháng" in html
    assert "Thứ Hai đầu tiên của mỗi tháng" in html and "3 lần" in html
    assert 'id="site-YB-NL"' in html and "/s/" in html  # invited sites with their join links
    bid = resp.headers["Location"].rsplit("/", 1)[1]
    stored = json.loads(await redis.hget(keys.briefing(bid), "json"))
    assert stored["selection"]["province"] is False and stored["selection"]["districts"] == []
    assert sorted(stored["selection"]["sites"]) == ["YB-MCC", "YB-NL"]  # district halls alone, without communes
    assert stored["rrule"] == "FREQ=MONTHLY;COUNT=3;BYDAY=1MO"


async def test_form_ticking_a_whole_district_stores_the_district(client, login, redis):
    await login(client, "organizer")
    html = await (await client.get("/briefings/new")).text()
    mcc = re.findall(r'value="(YB-MCC[^"]*)"', html)
    assert len(mcc) > 5
    resp = await client.post("/briefings/new", data=with_sites(form(_csrf=client.csrf), mcc), allow_redirects=False)
    bid = resp.headers["Location"].rsplit("/", 1)[1]
    assert json.loads(await redis.hget(keys.briefing(bid), "json"))["selection"]["districts"] == ["YB-MCC"]


async def test_form_shows_errors_and_conflicts_inline(client, login, api_token):
    await create(client, await api_token("organizer", "org2"))
    await login(client, "organizer")
    resp = await client.post("/briefings/new", data=with_sites(form(title="", _csrf=client.csrf), ["YB-NL"]))
    html = await resp.text()
    assert resp.status == 422 and 'id="err-title"' in html and "Cần nhập tiêu đề." in html  # said in Vietnamese
    resp = await client.post("/briefings/new", data=with_sites(form(_csrf=client.csrf), []))
    assert resp.status == 422 and 'id="err-selection"' in await resp.text()
    resp = await client.post("/briefings/new", data=with_sites(form(_csrf=client.csrf, action="check"), ["YB-MCC-MODE"]))
    html = await resp.text()
    assert resp.status == 409 and 'id="conflicts"' in html and "Giao ban tuần" in html and "org2" in html
    assert re.search(r'commune clash" data-name="[^"]+"><input type="checkbox" name="site" value="YB-MCC-MODE"', html)  # marked in the picker
    resp = await client.post("/briefings/new", data=with_sites(form(_csrf=client.csrf, action="check", chair="YB-NL"), ["YB-NL"]))
    assert resp.status == 200 and 'id="check-ok"' in await resp.text()


async def test_pages_render_in_both_languages(client, login, api_token):
    b = await create(client, await api_token("organizer", "organizer1"), rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=2")
    await login(client, "organizer")
    for url in ["/briefings", f"/briefings/week?date={DAY}", "/briefings/new", f"/briefings/{b['id']}", f"/briefings/{b['id']}/edit"]:
        vi = await client.get(url)
        assert vi.status == 200, url
        en = await client.get(url + ("&" if "?" in url else "?") + "lang=en")
        assert en.status == 200
        assert "sched." not in (await en.text()).replace("scheduling/", ""), url  # no key left untranslated
    week = await (await client.get(f"/briefings/week?date={DAY}")).text()
    assert b["occurrences"][0]["id"] in week and "08:00–10:00" in week
    home = await (await client.get("/")).text()
    assert 'href="/briefings/week"' in home


async def test_another_organizer_cannot_open_the_edit_page(client, login, api_token):
    b = await create(client, await api_token("organizer", "org2"))
    await login(client, "organizer")
    assert (await client.get(f"/briefings/{b['id']}/edit")).status == 403
    resp = await client.post(f"/briefings/{b['id']}/edit", data=with_sites(form(_csrf=client.csrf), ["YB-NL"]))
    assert resp.status == 403


async def test_chair_has_no_new_button_and_no_links(client, login, api_token):
    b = await create(client, await api_token("organizer"))
    await login(client, "chair")
    assert (await client.get("/briefings/new", allow_redirects=False)).status == 403
    html = await (await client.get(f"/briefings/{b['id']}")).text()
    assert 'id="site-YB-MCC"' in html and 'class="linkbox"' not in html  # join links are for organizers


def test_catalogues_have_the_same_keys():
    from confsvc.http.i18n import WEB_DIR

    vi = json.loads((WEB_DIR / "i18n/vi/scheduling.json").read_text(encoding="utf-8"))
    en = json.loads((WEB_DIR / "i18n/en/scheduling.json").read_text(encoding="utf-8"))
    assert set(vi) == set(en)


async def test_edit_form_changes_the_series_from_now_on_and_keeps_history(client, login, redis, settings):
    from confsvc.directory.service import Directory
    from confsvc.scheduling.service import Actor, Briefings

    # a weekly series created three weeks ago that began two weeks ago (the service on a past clock)
    three_weeks_ago = datetime.now().astimezone() - timedelta(days=21)
    first = (three_weeks_ago + timedelta(days=7 - three_weeks_ago.weekday())).date()
    past_svc = Briefings(redis, Directory(redis), settings, now=lambda: three_weeks_ago)
    b = await past_svc.create(
        {"title": "Giao ban", "selection": {"sites": ["YB-NL"]}, "chair": "YB-NL", "start": f"{first}T08:00",
         "end": f"{first}T10:00", "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=6"}, Actor("organizer1"))
    await login(client, "organizer")
    page = await client.get(f"/briefings/{b.id}/edit")
    html = await page.text()
    assert page.status == 200 and f'value="{first}"' in html and 'value="weekly" selected' in html
    data = with_sites(form(title="Giao ban (mới)", chair="YB-NL", date=first.isoformat(), start_time="08:00", end_time="11:00",
                           repeat="weekly", count="6", seq="0", _csrf=client.csrf), ["YB-NL"]) + [("weekday", "MO")]
    resp = await client.post(f"/briefings/{b.id}/edit", data=data, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    occs = (await (await client.get(f"/api/briefings/{b.id}/occurrences")).json())["occurrences"]
    assert len(occs) == 6
    past = [o for o in occs if o["state"] == "ended"]
    future = [o for o in occs if o["state"] == "scheduled"]
    assert len(past) >= 2 and len(past) + len(future) == 6
    assert all(o["ends_at"].endswith("03:00:00Z") and o["title"] == "Giao ban" for o in past)  # history kept
    assert all(o["ends_at"].endswith("04:00:00Z") and o["title"] == "Giao ban (mới)" for o in future)  # 11:00 local


async def test_unknown_briefing_is_a_404(client, api_token):
    token = await api_token("organizer")
    for method in ("GET", "PATCH", "DELETE"):
        resp = await client.request(method, "/api/briefings/nosuchthing", json={"title": "x"} if method == "PATCH" else None, headers=bearer(token))
        assert resp.status == 404 and (await resp.json())["error"] == "not_found", method


async def test_moving_an_occurrence_into_the_past_is_refused(client, api_token):
    token = await api_token("organizer")
    b = await create(client, token, rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=2")
    occ = b["occurrences"][0]["id"]
    resp = await client.patch(f"/api/briefings/{b['id']}/occurrences/{occ}", json={"start": f"{PAST}T08:00"}, headers=bearer(token))
    assert resp.status == 422 and (await resp.json())["field"] == "start"
    resp = await client.patch(f"/api/briefings/{b['id']}/occurrences/{occ}", json={}, headers=bearer(token))
    assert resp.status == 400


async def test_page_moves_one_occurrence_and_says_why_it_cannot(client, login, api_token):
    b = await create(client, await api_token("organizer", "organizer1"), rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3")
    tuesday = (MONDAY + timedelta(days=8)).isoformat()
    wednesday = (MONDAY + timedelta(days=9)).isoformat()
    await create(client, await api_token("organizer", "org2"), selection={"sites": ["YB-MCC-MODE"]}, chair="YB-MCC-MODE",
                 start=f"{wednesday}T08:00", end=f"{wednesday}T09:00")
    await login(client, "organizer")
    second, third = b["occurrences"][1]["id"], b["occurrences"][2]["id"]

    async def move(occ, day, start, end):
        return await client.post(f"/briefings/{b['id']}/occurrences/{occ}/move",
                                 data={"_csrf": client.csrf, "date": day, "start_time": start, "end_time": end}, allow_redirects=False)

    resp = await move(second, tuesday, "14:00", "15:30")
    assert resp.status == 303 and resp.headers["Location"] == f"/briefings/{b['id']}"
    occ = await (await client.get(f"/api/briefings/{b['id']}/occurrences/{second}")).json()
    assert occ["moved"] and occ["starts_at"] == f"{tuesday}T07:00:00Z" and occ["ends_at"] == f"{tuesday}T08:30:00Z"
    resp = await move(third, wednesday, "09:30", "10:00")  # its lobby (08:30) meets org2's briefing at Mồ Dề
    assert resp.status == 303 and resp.headers["Location"].endswith("?error=conflict")
    page = await (await client.get(resp.headers["Location"])).text()
    assert 'id="action-error"' in page and "Trùng lịch" in page
    resp = await move(third, tuesday, "15:00", "16:00")  # onto the moved second one
    assert resp.headers["Location"].endswith("?error=invalid")
    occ = await (await client.get(f"/api/briefings/{b['id']}/occurrences/{third}")).json()
    assert not occ["moved"]


async def test_metrics_count_state_changes(client, api_token):
    b = await create(client, await api_token("organizer"), start=f"{(date.today() + timedelta(days=1)).isoformat()}T08:00",
                     end=f"{(date.today() + timedelta(days=1)).isoformat()}T10:00")
    occ = b["occurrences"][0]["id"]
    await client.post(f"/api/briefings/{b['id']}/occurrences/{occ}/start", headers=bearer(await api_token("chair")))
    text = await (await client.get("/metrics")).text()
    assert 'confsvc_sched_transitions_total{by="person",state="live"} 1.0' in text
    assert "confsvc_sched_clock_leader" in text


async def test_a_bad_change_is_refused_and_writes_nothing(client, api_token, redis):
    token = await api_token("organizer")
    b = await create(client, token, rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3")
    before = await redis.hgetall(keys.briefing(b["id"]))
    for change, field in [
        ({"end": f"{DAY}T07:00"}, "end"),
        ({"selection": {"sites": ["YB-NOWHERE"]}}, "selection.sites"),
        ({"selection": {}}, "selection"),
        ({"rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=200"}, "rrule"),
        ({"start": f"{PAST}T08:00"}, "start"),
        ({"title": ""}, "title"),
    ]:
        resp = await client.patch(f"/api/briefings/{b['id']}", json=change, headers=bearer(token))
        assert resp.status == 422 and (await resp.json())["field"] == field, change
    assert await redis.hgetall(keys.briefing(b["id"])) == before
