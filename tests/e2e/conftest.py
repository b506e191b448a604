"""Fixtures of the end-to-end tests: a namespace, a node in it, Chromium in it (see harness.py).

- ``netns`` (session): the network namespace ``confsvc-e2e-<pid>``, loopback only. Skips every e2e
  test, with the reason, when the machine cannot make one (not root, no ``ip``, no Chromium...).
- ``node`` (module): ``confsvc serve`` in the namespace, bootstrapped (demo directory, admin with
  ``harness.ADMIN_PASSWORD``); ``node.kill()`` / ``node.start()`` / ``node.restart()``, ``node.get()``,
  ``node.post()``, ``node.cli(...)``, ``node.site_link(code)``, ``node.url(path)``.
- ``start_node()`` (test): another node of the test's own, stopped at the end of the test.
- ``site_browser(name, width, height)`` / ``browser_for(width, height)``: a Playwright Browser whose
  fake camera is a ``width`` x ``height`` picture in the site's own colour (``harness.color_for``).
  One Chromium per camera, kept for the test module.
- ``new_page(browser)``: a fresh context and page, its console kept; every page the test opened is
  screenshotted into ``test-artifacts/e2e/<test>/`` when the test fails, and closed after it.
- ``artifacts``: ``artifacts.screenshot(page, "name")`` saves a screenshot on demand.

At the end of the session no namespace, node, redis-server or Chromium of the run may be left:
the ``netns`` fixture checks, kills what it finds, and fails the run if it found anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h

_POOL: h.BrowserPool | None = None
_CONSOLE: dict[int, list[str]] = {}  # console lines of every page opened by new_page, by id(page)
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="session")
def e2e_workdir() -> Iterator[Path]:
    """A temporary folder for the whole run; its path marks every process the run starts."""
    path = Path(tempfile.mkdtemp(prefix=f"confsvc-e2e-{os.getpid()}-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def e2e_ready() -> None:
    """Skips, saying why, when this machine cannot run the e2e tests (not root, no ip, no Chromium...)."""
    reason = h.unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def netns(e2e_ready: None, e2e_workdir: Path) -> Iterator[h.NetNS]:
    try:
        ns = h.NetNS(workdir=e2e_workdir).create()
    except h.HarnessUnavailable as exc:
        pytest.skip(f"cannot make a network namespace here: {exc}")
    # If this run is killed (SIGKILL, SIGTERM, a CI timeout) before the teardown below, the
    # namespace's watchdog process (harness.NetNS._start_reaper) kills what is inside, deletes it and
    # removes the run's folder; a namespace left all the same goes at the next run's start.
    try:
        yield ns
    finally:
        # Everything that uses the namespace has been torn down by now (they depend on it).
        left = h.leftovers(ns, str(e2e_workdir))
        killed = ns.delete()
        still = h.leftovers(None, str(e2e_workdir))
        gone = not ns.path.exists()
        if left or killed or still or not gone:
            pytest.fail(
                "the e2e run left things behind (now killed): "
                + "; ".join(left + killed + still + ([] if gone else [f"namespace {ns.name}"])),
                pytrace=False,
            )


@pytest.fixture(scope="module")
def playwright(netns: h.NetNS, e2e_workdir: Path) -> Iterator[Any]:
    """Playwright's sync API, per module: while it runs, the main thread has a running event loop,
    so pytest-asyncio's tests (in other modules) can only run once it has stopped. Browser tests
    are plain functions; async tests (e.g. WebSocket protocol tests) go in modules of their own."""
    from playwright.sync_api import sync_playwright

    # The driver makes each browser's fresh --user-data-dir in its TMPDIR: put them in the run's
    # folder, so that they go with it even when the run is killed.
    tmp = e2e_workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp)
    try:
        pw = sync_playwright().start()
    finally:
        if before is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = before
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def browsers(playwright: Any, netns: h.NetNS, e2e_workdir: Path) -> Iterator[h.BrowserPool]:
    global _POOL
    pool = _POOL = h.BrowserPool(playwright, netns, e2e_workdir / "chromium")
    try:
        yield pool
    finally:
        _POOL = None
        pool.close()
        _CONSOLE.clear()


@pytest.fixture
def browser_for(browsers: h.BrowserPool) -> Callable[..., Any]:
    """``browser_for(width, height, rgb=(128, 128, 128), audio=None)``: a Chromium whose camera is
    that picture (and whose microphone is Chromium's beep, a tone of ``audio`` Hz, or "silence")."""
    return browsers.get


@pytest.fixture
def site_browser(browsers: h.BrowserPool) -> Callable[[str, int, int], Any]:
    """``site_browser(name, width, height, audio=None)``: a Chromium whose camera is the site's colour
    at that size (and whose microphone is as in ``browser_for``)."""

    def get(name: str, width: int = 640, height: int = 360, audio: float | str | None = None) -> Any:
        return browsers.get(width, height, h.color_for(name), audio)

    return get


class Artifacts:
    """Screenshots and logs of one test, under test-artifacts/e2e/<test>/ (git-ignored)."""

    def __init__(self, nodeid: str) -> None:
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:120]
        self.module = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(nodeid.split("::", 1)[0]).stem)
        self.dir = h.ARTIFACTS / self.module / self.name
        self.console: dict[int, list[str]] = {}
        self.pages: list[Any] = []
        self.contexts: list[Any] = []  # closed after the test

    def screenshot(self, page: Any, name: str, full_page: bool = True) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        page.screenshot(path=str(path), full_page=full_page, timeout=15_000)
        return path

    def write(self, name: str, text: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / name
        path.write_text(text, encoding="utf-8")
        return path

    def watch(self, page: Any) -> Any:
        lines = self.console[id(page)] = _CONSOLE[id(page)] = []
        self.pages.append(page)
        page.on("console", lambda m: lines.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: lines.append(f"[pageerror] {e}"))
        page.on("crash", lambda _p: lines.append("[crash] the page crashed"))
        return page


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Artifacts:
    return Artifacts(request.node.nodeid)


@pytest.fixture
def new_page(artifacts: Artifacts, browsers: h.BrowserPool) -> Callable[..., Any]:
    """``new_page(browser, keep=False, **context_options)``: a page in a new context of that browser.

    Closed after the test, unless ``keep=True``: then it lives until the module's browsers close
    (for a module whose tests go on with the same pages, e.g. a briefing joined once).
    """

    def make(browser: Any = None, keep: bool = False, **context_options: Any) -> Any:
        browser = browser or browsers.get()
        context_options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**context_options)
        context.set_default_timeout(15_000)
        if not keep:
            artifacts.contexts.append(context)
        return artifacts.watch(context.new_page())

    return make


@pytest.fixture(autouse=True)
def _e2e_pages(request: pytest.FixtureRequest, artifacts: Artifacts) -> Iterator[None]:
    """After each test: on failure, a screenshot and the console of every open page; then close the
    test's own pages."""
    yield
    pool = _POOL
    if pool is None:
        return
    if _failed(request.node):
        for i, page in enumerate(pool.all_pages()):
            try:
                artifacts.screenshot(page, f"failure-{i}", full_page=False)
            except Exception as exc:  # noqa: BLE001 - a crashed page: keep going
                artifacts.write(f"failure-{i}.txt", f"no screenshot: {exc}\n")
            try:
                url = page.url
            except Exception:  # noqa: BLE001
                url = "?"
            lines = _CONSOLE.get(id(page), [])
            artifacts.write(f"failure-{i}-console.txt", f"{url}\n" + "\n".join(lines) + "\n")
    for context in artifacts.contexts:
        with contextlib.suppress(Exception):
            context.close()


@pytest.fixture(scope="module")
def node(netns: h.NetNS, e2e_workdir: Path, request: pytest.FixtureRequest) -> Iterator[h.Node]:
    """A node for the test module, started once; tests may kill and restart it."""
    module = Path(str(request.path)).stem
    n = h.Node(netns, e2e_workdir / f"node-{module}" / "data").start()
    try:
        yield n
    finally:
        failed = any(_failed(i) for i in request.session.items if i.path == request.path)
        _stop_node(n, h.ARTIFACTS / module / "node.log" if failed else None)


def _stop_node(n: h.Node, keep_log: Path | None) -> None:
    n.stop()
    if keep_log is not None:
        keep_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(n.log_path, keep_log)
    left = n.redis_pids()
    if left:
        raise AssertionError(f"redis-server of {n.data_dir} still running after the node stopped: {left}")


@pytest.fixture
def start_node(netns: h.NetNS, e2e_workdir: Path, artifacts: Artifacts,
               request: pytest.FixtureRequest) -> Iterator[Callable[..., h.Node]]:
    """``start_node(**env)``: a node of this test's own (extra CONFSVC_* settings as keywords)."""
    started: list[h.Node] = []
    base = Path(tempfile.mkdtemp(prefix="test-", dir=e2e_workdir))

    def start(**env: str) -> h.Node:
        n = h.Node(netns, base / f"node{len(started)}" / "data", **env)
        started.append(n)
        return n.start()

    yield start
    for i, n in enumerate(started):
        _stop_node(n, artifacts.dir / f"node{i}.log" if _failed(request.node) else None)
