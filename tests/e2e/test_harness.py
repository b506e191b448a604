"""The harness proves itself: namespace, node in it, Chromium in it, WebRTC over loopback only.

These need none of confsvc's WebRTC; issue 5's browser tests build on the same fixtures.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

PAGES = Path(__file__).parent / "pages"


def test_the_namespace_has_only_loopback(netns: h.NetNS) -> None:
    assert netns.addresses() == ["127.0.0.1"]
    links = json.loads(netns.run(["ip", "-j", "link", "show"]).stdout)
    assert [link["ifname"] for link in links] == ["lo"]


def test_a_veth_pair_lives_inside_its_namespace_only(e2e_ready: None) -> None:
    ns = h.NetNS(f"{h.NS_PREFIX}{os.getpid()}-veth").create()
    try:
        a, b = ns.add_veth()
        assert {a, b} <= set(ns.addresses())
        host = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
        assert a not in host and b not in host

        def connect() -> str:  # a TCP connection from one end's address to the other's
            with socket.create_server((b, 0)) as srv, socket.create_connection(srv.getsockname(), 2,
                                                                              source_address=(a, 0)) as c:
                peer, _ = srv.accept()
                peer.close()
                return c.getsockname()[0]

        assert ns.call(connect) == a
    finally:
        assert ns.delete() == []
    assert not ns.path.exists()


def test_the_node_serves_its_login_page_to_chromium_inside_the_namespace(
    node: h.Node, site_browser, new_page, artifacts
) -> None:
    r = node.get("/healthz")
    assert r.status == 200 and r.json()["redis"] == "ok", r.text
    assert node.get("/login").status == 200
    # the node is not reachable from outside the namespace: nothing (of ours) listens there
    with pytest.raises(OSError):
        urllib.request.urlopen(node.url("/healthz"), timeout=2)

    page = new_page(site_browser("province", 1280, 720))
    page.goto(node.url("/login"))
    page.locator("input[type=password]").wait_for()
    shot = artifacts.screenshot(page, "login")
    assert shot.stat().st_size > 1000

    # the admin password from the environment logs in, and so does an account made with the CLI
    h.login(page, node)
    artifacts.screenshot(page, "home")
    chair = new_page()
    h.login(chair, node, node.add_user("chair1", "chair", "chair password 1234"), "chair password 1234")


_KEPT: list = []


def test_a_kept_page_outlives_its_test(node: h.Node, new_page) -> None:
    page = new_page(keep=True)
    page.goto(node.url("/login"))
    _KEPT.append(page)
    _KEPT.append(new_page())


def test_a_kept_page_is_there_in_the_next_test(node: h.Node) -> None:
    kept, closed = _KEPT
    assert not kept.is_closed() and kept.url == node.url("/login")
    assert closed.is_closed()


def test_the_node_comes_back_on_the_same_port_and_data_after_sigkill(node: h.Node, new_page) -> None:
    link = node.site_link("YB")
    assert link.startswith(node.base_url + "/s/")
    page = new_page()
    page.goto(node.url("/login"))
    before = node.proc.pid
    assert len(node.redis_pids()) == 1

    node.kill()
    assert not node.running and node.redis_pids() == []
    with pytest.raises(OSError):
        node.get("/healthz", timeout=1)
    with pytest.raises(Exception, match="ERR_CONNECTION_REFUSED"):
        page.goto(node.url("/login"))

    node.start()
    assert node.proc.pid != before and len(node.redis_pids()) == 1
    assert node.site_link("YB") == link  # same data folder: same secret, same links
    assert node.get(link[len(node.base_url):]).status == 200
    page.goto(node.url("/login"))
    page.locator("input[type=password]").wait_for()


LOOPBACK_JS = "async () => await window.loopback"


@pytest.fixture
def static_pages(netns: h.NetNS):
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/", PAGES)
    with netns.serve_app(app) as server:
        yield server


@pytest.mark.parametrize(("width", "height", "rgb"), [(424, 240, (40, 80, 220)), (640, 360, (220, 40, 40))])
def test_chromium_sends_the_fake_camera_over_loopback_only(
    static_pages, browser_for, new_page, artifacts, width: int, height: int, rgb: tuple[int, int, int]
) -> None:
    page = new_page(browser_for(width, height, rgb))
    page.goto(static_pages.url + "/loopback.html")
    assert page.evaluate(LOOPBACK_JS) == {"width": width, "height": height}

    later = h.wait_frames_rising(page, "pcs.b")
    assert (later["frameWidth"], later["frameHeight"]) == (width, height)
    shown = h.wait_until(lambda: (v := h.video_element(page, "#remote"))["videoWidth"] and v, message="videoWidth")
    assert (shown["videoWidth"], shown["videoHeight"]) == (width, height)
    assert h.same_color(h.video_color(page, "#remote"), rgb), h.video_color(page, "#remote")

    for pc in ("pcs.a", "pcs.b"):
        c = h.ice_candidates(page, pc)
        assert c["local"] and set(c["local"]) == {"127.0.0.1"}, c
        assert set(c["remote"]) <= {"127.0.0.1"}, c
        assert c["selected"] == ["127.0.0.1", "127.0.0.1"], c
    artifacts.screenshot(page, f"loopback-{width}x{height}")


def test_host_candidates_are_plain_addresses_even_without_a_camera(static_pages, browser_for, new_page) -> None:
    """A page that asks for no camera gets no media permission, and Chromium may then announce its
    host candidates as mDNS names (xxxx.local), which nothing resolves in the namespace. Here they
    are 127.0.0.1 (the harness also passes --disable-features=WebRtcHideLocalIpsWithMdns, merged
    with Playwright's own feature list by the wrapper, in case a Chromium release changes that)."""
    page = new_page(browser_for(320, 180))
    page.goto(static_pages.url + "/loopback.html?datachannel=1")
    assert page.evaluate(LOOPBACK_JS) == {"open": True}
    for pc in ("pcs.a", "pcs.b"):
        c = h.ice_candidates(page, pc)
        assert c["local"] and set(c["local"]) == {"127.0.0.1"}, c
        assert c["selected"] == ["127.0.0.1", "127.0.0.1"], c


@pytest.mark.parametrize(("audio", "loud"), [(440, True), ("silence", False)])
def test_a_fake_microphone_per_browser(static_pages, browser_for, new_page, audio, loud: bool) -> None:
    page = new_page(browser_for(320, 180, audio=audio))
    page.goto(static_pages.url + "/loopback.html?audio=1")
    page.evaluate(LOOPBACK_JS)
    h.wait_frames_rising(page, "pcs.b", more=5)
    if loud:
        h.wait_until(lambda: h.audio_level(page, "pcs.a") > 0.1, message="a loud tone")
    else:
        time.sleep(1)
        assert h.audio_level(page, "pcs.a") < 0.01


def test_a_failing_test_leaves_nothing_behind_and_keeps_its_screenshot(e2e_ready: None) -> None:
    """A whole pytest run of a failing e2e test, as a child: it fails, and leaves no trace but artefacts."""
    here = Path(__file__).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here / "selfcheck_failing.py")],
        cwd=h.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 1, out
    assert "1 failed" in out and "left things behind" not in out, out
    ns_name = f"{h.NS_PREFIX}{proc.pid}"
    assert ns_name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert h.processes_mentioning(f"confsvc-e2e-{proc.pid}-") == []
    shots = h.ARTIFACTS / "selfcheck_failing" / "test_fails_with_a_page_open"
    assert (shots / "failure-0.png").stat().st_size > 1000
    assert "from the page" in (shots / "failure-0-console.txt").read_text()
    assert (h.ARTIFACTS / "selfcheck_failing" / "node.log").exists()


def test_a_killed_run_leaves_nothing_behind(e2e_ready: None, tmp_path: Path) -> None:
    """A child pytest SIGKILLed with a node and Chromium up: its watchdog cleans up after it."""
    ready = tmp_path / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["E2E_READY_FILE"] = str(ready)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__).parent / "selfcheck_killed.py")],
        cwd=h.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        h.wait_until(ready.exists, timeout=90, message="the child run has a node and a page up")
        ns_name = f"{h.NS_PREFIX}{proc.pid}"
        inside = h._ns_pids(ns_name)
        assert len(inside) > 3, inside  # the node, its redis-server, Chromium's processes
    finally:
        proc.kill()
        proc.wait(30)
    marker = f"confsvc-e2e-{proc.pid}-"

    def clean() -> bool:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return ns_name not in listed and not h.processes_mentioning(marker) and not any(
            Path(tempfile.gettempdir()).glob(marker + "*"))

    h.wait_until(clean, timeout=20, message="namespace, processes and folder of the killed run gone")
    assert all(not _alive(pid) for pid in inside)


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def test_free_port_is_one_inside_the_namespace(netns: h.NetNS) -> None:
    port = netns.free_port()

    def bind() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
            return port

    assert netns.call(bind) == port
