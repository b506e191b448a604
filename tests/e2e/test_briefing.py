"""A briefing from the browser: the chair's control page and three site pages in real Chromium.

One briefing for the module (the whole province invited, so the chair's wall holds 182 sites),
joined once; the tests go on with the same pages: the chair's picture on every site, the floor,
a raised hand, a roll call, then the node killed and restarted under everyone's feet.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e import harness as h

pytestmark = pytest.mark.e2e

CHAIR_PW = "chair password 1234"
# (code, camera width, height): sizes and colours (harness.color_for) all different from each other
SITES = [("YB-TPYB-YENNINH", 640, 360), ("YB-TPYB-MINHTAN", 424, 240), ("YB-NL-PUTRANG", 320, 180)]
CHAIR_CAM = ("YB", 1280, 720)
PAGES: dict[str, Any] = {}
SUB = "window.confsvc.subscribe"
PUB = "window.confsvc.publish"
# How long a site may take to reach (or get back to) the chair's top layer. The fake cameras show a
# flat colour: VP8 sends a few tens of kbps even at 1280x720, so Chromium's REMB (about 1.5 x what
# it receives) starts near the floor and the allocator climbs back by probes, over 10-20 s here
# (node log: "down: over the estimate; estimate 30 kbps"). bench/adaptation.py measures the
# back-on-top time on real content (6-9 s); here it only has to happen.
TOP_LAYER_S = 30


# Resolves window._stageAt (Date.now()) at the first frame the page's #stage shows of the given
# width and colour: measured in the page, frame by frame (requestVideoFrameCallback).
WATCH_STAGE = """({rgb, width}) => {
  window._stageAt = null;
  const v = document.querySelector('#stage');
  const c = document.createElement('canvas'); c.width = 16; c.height = 16; const g = c.getContext('2d');
  const near = (px) => px.every((x, i) => Math.abs(x - rgb[i]) <= 40);
  const check = (now, meta) => {
    if (meta.width === width) {
      g.drawImage(v, 0, 0, 16, 16);
      const d = g.getImageData(0, 0, 16, 16).data; const px = [];
      for (let i = 0; i < d.length; i += 4) px.push([d[i], d[i + 1], d[i + 2]]);
      px.sort((a, b) => (a[0] + a[1] + a[2]) - (b[0] + b[1] + b[2]));
      if (near(px[px.length >> 1])) { window._stageAt = Date.now(); return; }
    }
    v.requestVideoFrameCallback(check);
  };
  v.requestVideoFrameCallback(check);
}"""


def _stage(page: Any) -> dict[str, Any]:
    return h.video_element(page, "#stage")


def _chair_top() -> int:
    """The width the chair's top layer is encoded at now: 1280, unless Chromium scaled it down
    (qualityLimitationReason "cpu" while four Chromiums and the node share two cores)."""
    return max((o["frameWidth"] for o in h.outbound_video(PAGES["chair"], PUB)), default=0)


def _media_state(node: h.Node, page: Any) -> str:
    """What the node's media plane and the page's receiver say (for a failure's message)."""
    try:
        lines = [ln for ln in node.get("/metrics").text.splitlines()
                 if ln.startswith("confsvc_media") and not ln.startswith("#")]
    except Exception as exc:  # noqa: BLE001
        lines = [f"/metrics: {exc!r}"]
    try:
        lines.append(f"page inbound video: {h.inbound_video(page, SUB)}")
        lines.append(f"chair outbound video: {h.outbound_video(PAGES['chair'], PUB)}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"page: {exc!r}")
    return "\n".join(lines[-150:])


class _Miss:
    """A false answer that says what the stage showed instead (wait_until prints the last one)."""

    def __init__(self, **seen: Any) -> None:
        self.seen = seen

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"stage showed {self.seen}"


def _shows(page: Any, code: str, width: int | None = None) -> bool | _Miss:
    """The stage shows ``code``'s camera (at ``width``, when given)."""
    v = _stage(page)
    color = h.video_color(page, "#stage")
    if width in (None, v["videoWidth"]) and h.same_color(color, h.color_for(code)):
        return True
    return _Miss(width=v["videoWidth"], color=color, wanted=(width, h.color_for(code)))


@pytest.fixture(scope="module")
def briefing(node: h.Node) -> dict[str, Any]:
    node.add_user("org1", "organizer", "organizer password 1234")
    token = node.api_token("org1")
    node.add_user("chair1", "chair", CHAIR_PW)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    body = {"title": "Giao ban kiểm thử", "agenda": "", "selection": {"province": True, "districts": [], "sites": []},
            "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()}
    r = node.post("/api/briefings", json_body=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status == 201, r.text
    b = r.json()
    # and a weekly one from the day after tomorrow: the site page counts down to it
    later = start + timedelta(days=2)
    body2 = {**body, "title": "Giao ban tuần", "start": later.isoformat(), "end": (later + timedelta(hours=2)).isoformat(),
             "rrule": "FREQ=WEEKLY;COUNT=3"}
    r2 = node.post("/api/briefings", json_body=body2, headers={"Authorization": f"Bearer {token}"})
    assert r2.status == 201, r2.text
    return {"id": b["id"], "occ": b["occurrences"][0]["id"], "links": {c: node.site_link(c) for c, _, _ in SITES}}


def test_the_chair_and_three_sites_join_and_every_site_shows_the_chair(node, briefing, site_browser, new_page, artifacts):
    chair = new_page(site_browser(*CHAIR_CAM), keep=True, viewport={"width": 1600, "height": 1000})
    h.login(chair, node, "chair1", CHAIR_PW)
    chair.goto(node.url(f"/briefings/{briefing['occ']}/control"))
    h.wait_until(lambda: chair.evaluate("window.confsvc.status") == "joined", timeout=15, message="chair joined")
    assert chair.locator("tr.site-row").count() == 182
    chair.click("#btn-start")
    h.wait_until(lambda: chair.evaluate("window.confsvc.state.room.phase") == "live", message="briefing live")
    PAGES["chair"] = chair

    for code, w, hgt in SITES:
        page = new_page(site_browser(code, w, hgt), keep=True)
        page.goto(briefing["links"][code])
        page.locator("#btn-join:not([disabled])").wait_for()
        if code == SITES[0][0]:  # the checks before joining: each ends in a verdict
            h.wait_until(lambda p=page: p.locator("#check-network .verdict").get_attribute("data-verdict"), timeout=15,
                         message="network verdict")
            h.wait_until(lambda p=page: p.locator("#check-mic .verdict").get_attribute("data-verdict"), timeout=10,
                         message="microphone verdict")
            assert page.locator("#check-camera .verdict").get_attribute("data-verdict") == "good"
            assert page.locator("#upcoming li").count() == 3
            assert "Bắt đầu sau 2 ngày" in page.locator("#upcoming li .countdown").first.inner_text()
            artifacts.screenshot(page, "site-before-joining")
        page.click("#btn-join")
        PAGES[code] = page
    for code, _, _ in SITES:
        page = PAGES[code]
        h.wait_frames_rising(page, SUB, timeout=20)
        stats = h.wait_until(lambda p=page: (s := h.inbound_video(p, SUB))["frameWidth"] == 1280 and s, timeout=TOP_LAYER_S,
                             message=f"{code} decodes the chair's top layer")
        assert (stats["frameWidth"], stats["frameHeight"]) == (1280, 720), stats
        try:
            h.wait_until(lambda p=page: _shows(p, "YB"), message=f"{code} stage shows the chair")
            # at the chair's top layer (as the chair encodes it now; see TOP_LAYER_S)
            h.wait_until(lambda p=page: _shows(p, "YB", _chair_top()), timeout=TOP_LAYER_S,
                         message=f"{code} stage shows the chair's top layer")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{_media_state(node, page)}") from None
        assert "UBND tỉnh Yên Bái" in page.locator("#stage-label").inner_text()
        # the microphone starts closed, and stays closed when it is not allowed
        assert page.evaluate("window.confsvc.local.getAudioTracks()[0].enabled") is False
    # the wall shows the three as connected
    for code, _, _ in SITES:
        h.wait_until(lambda c=code: chair.locator(f"#row-{c}").get_attribute("data-state") == "connected",
                     message=f"{code} connected on the wall")
    assert chair.locator("#n-connected").inner_text() == "3"
    artifacts.screenshot(PAGES[SITES[0][0]], "site-page")
    artifacts.screenshot(chair, "chair-wall", full_page=False)


def test_the_floor_goes_to_one_site_and_every_stage_shows_it_within_2_s(node, briefing, artifacts):
    chair = PAGES["chair"]
    code, w, _ = SITES[1]
    others = [PAGES[c] for c, _, _ in SITES if c != code]
    # a site may not open its microphone before it has the floor: the page says so, and the server refuses
    PAGES[code].click("#btn-mic")
    h.wait_until(lambda: PAGES[code].locator("#notice").is_visible(), message="not allowed notice")
    PAGES[code].evaluate("""() => { window._refused = null; window.confsvc.addEventListener('error',
        (e) => { window._refused = e.detail.code; }); window.confsvc.send({type: 'media_state', mic: true}); }""")
    h.wait_until(lambda: PAGES[code].evaluate("window._refused") == "not_allowed", message="the server refuses the mic")
    assert PAGES[code].evaluate("window.confsvc.local.getAudioTracks()[0].enabled") is False
    assert chair.locator(f"#row-{code}").get_attribute("data-state") == "connected"
    for p in [*others, chair]:
        p.evaluate(WATCH_STAGE, {"rgb": list(h.color_for(code)), "width": w})
    # from the moment the chair's page sends give_floor (the click's own dispatch by Playwright aside)
    chair.evaluate("""() => { window._sentAt = null; const live = window.confsvc, send = live.send.bind(live);
        live.send = (m) => { if (m.type === 'give_floor' && !window._sentAt) window._sentAt = Date.now(); return send(m); }; }""")
    chair.locator(f"#row-{code} button[data-act=give_floor]").click()
    at = [h.wait_until(lambda p=p: p.evaluate("window._stageAt"), timeout=10, message="the stage switches") for p in [*others, chair]]
    sent = chair.evaluate("window._sentAt")
    took = [round((t - sent) / 1000, 2) for t in at]
    print(f"seconds from give_floor until each stage showed {code} (sites..., chair): {took}")
    # every stage within 2 s, the chair's own too (measured on this machine: 0.16-0.39 s)
    assert max(took) <= 2.0, f"seconds from give_floor until each stage showed {code} (sites..., chair): {took}"
    assert all(_shows(p, code, w) for p in [*others, chair])
    site = PAGES[code]
    h.wait_until(lambda: site.locator("#ask").is_visible(), message="the site is asked to open its microphone")
    site.click("#btn-ask-open")
    h.wait_until(lambda: site.evaluate("window.confsvc.local.getAudioTracks()[0].enabled"), message="mic opened")
    h.wait_until(lambda: "Mic bật" in chair.locator(f"#row-{code} .mic").inner_text(), message="mic on the wall")
    for p in others:
        assert "Đang phát biểu" in p.locator("#stage-label").inner_text()
    assert site.locator("#floor-note").is_visible()
    artifacts.screenshot(others[0], "site-another-has-the-floor", full_page=False)
    artifacts.screenshot(site, "site-with-the-floor", full_page=False)
    chair.click("#btn-take")
    # the chair's picture at once (whatever layer the allocator starts it on), its top layer within the
    # adaptation's "back on top" time
    h.wait_until(lambda: all(h.same_color(h.video_color(p, "#stage"), h.color_for("YB")) for p in others), timeout=2,
                 message="the chair's picture again")
    h.wait_until(lambda: next((miss for p in others if not (miss := _shows(p, "YB", _chair_top()))), True),
                 timeout=TOP_LAYER_S, message="the chair's top layer again")
    h.wait_until(lambda: not site.evaluate("window.confsvc.local.getAudioTracks()[0].enabled"), message="mic closed")


def test_a_raised_hand_appears_on_the_chairs_wall(node, briefing):
    chair = PAGES["chair"]
    code = SITES[2][0]
    PAGES[code].click("#btn-hand")
    h.wait_until(lambda: chair.locator(f"#row-{code}").get_attribute("data-hand") == "true", message="hand on the wall")
    assert "Giơ tay" in chair.locator(f"#row-{code} .c-hand").inner_text()
    assert chair.locator(f"#hands li[data-code='{code}']").count() == 1
    assert chair.locator("#n-hands").inner_text() == "1"
    chair.locator(f"#row-{code} button[data-act=lower_hand]").click()
    h.wait_until(lambda: chair.locator(f"#row-{code}").get_attribute("data-hand") == "false", message="hand lowered")
    h.wait_until(lambda: PAGES[code].locator("#btn-hand").get_attribute("data-on") == "false", message="lowered on the site")


def test_a_roll_call_is_answered_and_tallied(node, briefing, artifacts):
    chair = PAGES["chair"]
    chair.click("#btn-rollcall")
    for code, _, _ in SITES:
        PAGES[code].locator("#btn-present").click()
    h.wait_until(lambda: chair.evaluate("window.confsvc.state.room.rollcall.answered") == 3, message="tally 3")
    h.wait_until(lambda: "3/182" in chair.locator("#rollcall-tally").inner_text(), message="tally shown")
    assert chair.locator(f"#row-{SITES[0][0]} .flags").inner_text().count("Có mặt") == 1
    artifacts.screenshot(chair, "chair-rollcall", full_page=False)
    chair.click("#btn-rollcall")
    h.wait_until(lambda: chair.evaluate("window.confsvc.state.room.rollcall.open") is False, message="closed")


def test_open_microphones_then_mute_all(node, briefing):
    chair = PAGES["chair"]
    code = SITES[0][0]
    site = PAGES[code]
    assert site.locator("#btn-mic").get_attribute("data-allowed") == "false"
    chair.check("#open-mics")
    h.wait_until(lambda: site.locator("#btn-mic").get_attribute("data-allowed") == "true", message="mics allowed")
    site.click("#btn-mic")
    h.wait_until(lambda: site.evaluate("window.confsvc.local.getAudioTracks()[0].enabled"), message="the site's mic opens")
    h.wait_until(lambda: chair.locator(f"#row-{code} .mic").get_attribute("data-on") == "true", message="mic on the wall")
    chair.click("#btn-mute-all")
    h.wait_until(lambda: not site.evaluate("window.confsvc.local.getAudioTracks()[0].enabled"), message="muted")
    h.wait_until(lambda: chair.locator(f"#row-{code} .mic").get_attribute("data-on") == "false", message="mic off on the wall")
    h.wait_until(lambda: not chair.locator("#open-mics").is_checked(), message="mute all also closes open microphones")
    assert site.locator("#btn-mic").get_attribute("data-allowed") == "false"


def test_when_the_media_fails_the_page_publishes_and_subscribes_again_on_the_same_socket(node, briefing):
    """aiortc has no ICE restart: the page closes both connections and starts its media over."""
    page = PAGES[SITES[0][0]]
    page.evaluate("() => { window._ws = window.confsvc.ws; window._pc = window.confsvc.subscribe; window.confsvc.mediaFailed(0); }")
    h.wait_until(lambda: page.evaluate("window.confsvc.subscribe && window.confsvc.subscribe !== window._pc"),
                 message="a new subscribe connection")
    h.wait_frames_rising(page, SUB, timeout=20)
    assert page.evaluate("window.confsvc.ws === window._ws && window.confsvc.ws.readyState === 1")
    h.wait_until(lambda: _shows(page, "YB", _chair_top()), message="the chair's picture again")
    chair = PAGES["chair"]
    h.wait_until(lambda: chair.locator(f"#row-{SITES[0][0]}").get_attribute("data-state") == "connected", message="still connected")


def test_the_node_is_killed_and_restarted_and_every_page_comes_back_by_itself(node, briefing, artifacts):
    pages = {"chair": PAGES["chair"], **{c: PAGES[c] for c, _, _ in SITES}}
    chair = pages["chair"]
    # the chair's decisions must outlive the node: a site holds the floor, the room is locked
    floor, floor_w, _ = SITES[1]
    chair.locator(f"#row-{floor} button[data-act=give_floor]").click()
    chair.check("#lock")
    h.wait_until(lambda: _shows(pages[SITES[0][0]], floor, floor_w), message="the floor before the restart")
    h.wait_until(lambda: pages[SITES[0][0]].evaluate("window.confsvc.state.room.locked"), message="locked")
    node.kill()
    for name, page in pages.items():
        h.wait_until(lambda p=page: p.locator("#banner").is_visible(), timeout=10, message=f"{name} shows the banner")
    assert "Mất kết nối" in pages[SITES[0][0]].locator("#banner").inner_text()
    artifacts.screenshot(pages[SITES[0][0]], "site-reconnecting", full_page=False)
    node.start()
    for code, _, _ in SITES:
        h.wait_frames_rising(pages[code], SUB, timeout=40)
        assert not pages[code].locator("#banner").is_visible()
    # the briefing goes on as it was: the same site has the floor on every stage, the room is still locked,
    # the roll call's tally is kept
    for name, page in pages.items():
        h.wait_until(lambda p=page: p.evaluate("window.confsvc.state.room.floor") == floor, timeout=20,
                     message=f"{name}: the floor kept across the restart")
        assert page.evaluate("window.confsvc.state.room.locked") is True
    for code, _, _ in SITES:
        if code != floor:
            h.wait_until(lambda p=pages[code]: _shows(p, floor, floor_w), timeout=10, message=f"{code} sees the floor again")
    assert chair.evaluate("window.confsvc.state.room.rollcall.answered") == 3
    assert chair.is_checked("#lock")
    chair.uncheck("#lock")
    chair.click("#btn-take")
    for code, _, _ in SITES:
        h.wait_until(lambda p=pages[code]: _shows(p, "YB", _chair_top()), timeout=10, message=f"{code} sees the chair again")
    for code, _, _ in SITES:
        h.wait_until(lambda c=code: chair.locator(f"#row-{c}").get_attribute("data-state") == "connected",
                     timeout=20, message=f"{code} connected again on the wall")
    # the chair's own picture is published again: a site's stage decodes it (checked above); the grid too
    h.wait_until(lambda: chair.locator(".thumb:not([hidden])").count() == 3, timeout=15, message="grid thumbnails")
    artifacts.screenshot(chair, "chair-wall-after-restart", full_page=False)


def test_a_removed_site_stops_and_the_end_stops_everyone(node, briefing, artifacts):
    chair = PAGES["chair"]
    chair.on("dialog", lambda d: d.accept())
    gone = SITES[2][0]
    chair.locator(f"#row-{gone} button[data-act=more]").click()
    chair.locator("#row-menu button[data-menu=remove]").click()
    page = PAGES[gone]
    h.wait_until(lambda: page.locator("#stopped").is_visible(), message="the removed site's page stops")
    assert "mời ra khỏi" in page.locator("#stopped-title").inner_text()
    h.wait_until(lambda: chair.locator(f"#row-{gone}").get_attribute("data-state") == "removed", message="removed on the wall")
    time.sleep(1.5)  # it does not come back by itself
    assert page.evaluate("window.confsvc.status") == "stopped" and page.evaluate("window.confsvc.ws") is None
    chair.click("#btn-end")
    for code, _, _ in SITES[:2]:
        h.wait_until(lambda p=PAGES[code]: p.locator("#stopped").is_visible(), message=f"{code} sees the end")
        assert "kết thúc" in PAGES[code].locator("#stopped-title").inner_text()
    artifacts.screenshot(PAGES[SITES[0][0]], "site-ended", full_page=False)


def test_the_wall_updates_its_182_rows_in_place(node, briefing, artifacts):
    """A quality round for every site (the server's `sites` message) changes the rows, not the DOM."""
    chair = PAGES["chair"]
    result = chair.evaluate("""() => {
      const rows = [...document.querySelectorAll('tr.site-row')];
      const sites = rows.map((tr, i) => ({code: tr.dataset.code, name: tr.dataset.code, kind: 'commune', district: null,
        state: ['connected', 'poor', 'dropped', 'lobby'][i % 4], mic: false, cam: true, hand: i % 30 === 0, hand_at: null,
        low_data: false, pin: null, quality: {bitrate_in: 300, bitrate_out: 900, loss: i % 4 === 1 ? 0.08 : 0.0, rtt_ms: 40},
        rollcall: null}));
      window.confsvc.onMessage({type: 'sites', sites});
      return new Promise((done) => requestAnimationFrame(() => done({
        same: rows.every((tr) => tr.isConnected && document.getElementById(tr.id) === tr),
        poor: document.querySelectorAll('tr.site-row[data-state=poor]').length,
        counts: ['connected', 'poor', 'dropped', 'lobby', 'hands'].map((k) => document.getElementById('n-' + k).textContent),
        tiles: document.querySelectorAll('#mosaic .tile[data-state=dropped]').length,
      })));
    }""")
    assert result["same"], "rows were rebuilt"
    assert result["poor"] == 182 // 4 + (1 if 182 % 4 > 1 else 0)
    assert result["counts"] == ["46", "46", "45", "45", "7"], result
    assert result["tiles"] == 45
    chair.check("input[name=filter][value=problems]")
    assert chair.locator("tr.site-row:visible").count() == 91
    artifacts.screenshot(chair, "chair-wall-problems", full_page=False)
