"""The briefing form in a real Chromium: the tree picker and the recurrence fields (form.js)."""

import json
import shutil
from datetime import date, timedelta

import pytest

from confsvc.auth.accounts import Accounts
from confsvc.store import keys
from tests.conftest import PASSWORD

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
async def page(client, redis):
    playwright = pytest.importorskip("playwright.async_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("no chromium")
    await Accounts(redis).create("organizer1", "organizer", PASSWORD)
    async with playwright.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = await browser.new_page()
        base = str(client.make_url("/")).rstrip("/")
        await pg.goto(base + "/login")
        await pg.fill("input[name=username]", "organizer1")
        await pg.fill("input[name=password]", PASSWORD)
        await pg.click("#login-form button[type=submit]")
        await pg.wait_for_url(base + "/")
        await pg.goto(base + "/briefings/new")
        pg.base = base
        yield pg
        await browser.close()


async def checked(page, selector):
    return await page.eval_on_selector_all(selector, "els => els.map(e => e.checked)")


async def fill_and_save(page):
    day = date.today() + timedelta(days=14)
    await page.fill("input[name=title]", "Giao ban huyện")
    await page.fill("input[name=date]", day.isoformat())
    await page.fill("input[name=start_time]", "14:00")
    await page.fill("input[name=end_time]", "15:00")
    await page.select_option("#repeat-kind", "none")
    await page.click("button[name=action][value=save]")
    await page.wait_for_url(lambda url: "/briefings/" in url and not url.endswith("/new"))
    return page.url.rsplit("/", 1)[1]


async def test_ticking_a_district_ticks_its_communes(page, redis):
    await page.click("button[data-pick=none]")
    assert not any(await checked(page, "input[name=site]"))
    await page.check('input[name=site][value="YB-MCC"]')
    communes = await checked(page, 'input[data-parent="YB-MCC"]')
    assert len(communes) > 5 and all(communes)
    assert not any(await checked(page, 'input[data-parent="YB-NL"]'))
    assert (await page.inner_text("#picker-count")).startswith(f"{1 + len(communes)} /")
    bid = await fill_and_save(page)
    stored = json.loads(await redis.hget(keys.briefing(bid), "json"))
    assert stored["selection"] == {"province": False, "districts": ["YB-MCC"], "sites": []}


async def test_unticking_one_commune_keeps_the_rest(page, redis):
    await page.click("button[data-pick=none]")
    await page.check('input[name=site][value="YB-MCC"]')
    await page.eval_on_selector('details[data-district="YB-MCC"]', "d => d.open = true")
    first = await page.get_attribute('input[data-parent="YB-MCC"] >> nth=0', "value")
    await page.uncheck(f'input[name=site][value="{first}"]')
    n = len(await checked(page, 'input[data-parent="YB-MCC"]'))
    assert (await page.inner_text('[data-picked="YB-MCC"]')) == f"{n - 1}/{n}"
    bid = await fill_and_save(page)
    stored = json.loads(await redis.hget(keys.briefing(bid), "json"))
    assert stored["selection"]["districts"] == [] and first not in stored["selection"]["sites"]
    assert len(stored["sites"]) == n  # the district hall and all communes but one


async def test_recurrence_shows_only_the_fields_of_the_chosen_kind(page):
    await page.select_option("#repeat-kind", "monthly_nth")
    assert await page.is_visible("select[name=nth]") and not await page.is_visible("input[name=weekday] >> nth=0")
    await page.select_option("#repeat-kind", "none")
    assert not await page.is_visible("input[name=count]")
    await page.select_option("#repeat-kind", "custom")
    assert await page.is_visible("input[name=custom]")
