"""End-to-end harness: a network namespace, a confsvc node in it, Debian's Chromium in it.

DESIGN §7: only 127.0.0.1, or addresses inside network namespaces the test run makes itself, are
ever a target. Chromium gathers no loopback ICE candidates unless told to, and would otherwise talk
over the machine's interfaces; so everything runs inside a namespace of its own whose only
interface is loopback (IPv6 off, so 127.0.0.1 is the one address there is):

- ``NetNS``: ``ip netns add confsvc-e2e-<pid>``; commands run in it with ``ip netns exec``; Python
  calls run in it on a worker thread that has joined it with setns(2) (a thread's network namespace
  is its own), so the test process can make HTTP requests to the node without a subprocess.
- ``Node``: ``python -m confsvc serve`` in the namespace on a fixed data folder and port, with
  ``kill()`` (SIGKILL) and ``start()`` again on the same folder and port.
- ``BrowserPool``: Chromium launched by Playwright through a wrapper script that execs
  ``ip netns exec NAME /usr/bin/chromium`` (Playwright talks to it over a pipe, not a socket),
  one browser per fake camera (a .y4m file of a given size and colour).

Nothing here is pytest-specific; the fixtures in ``conftest.py`` wire it up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
NS_PREFIX = "confsvc-e2e-"
NETNS_DIR = Path("/run/netns")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"

# The flags of DESIGN §7 and the machine notes: no background traffic, a fake camera and
# microphone accepted without a prompt, loopback ICE candidates, real IPs (not mDNS names) in them.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-dev-shm-usage",
]


class HarnessUnavailable(RuntimeError):
    """The machine cannot run the e2e tests (not root, no ip, no chromium...): the tests skip."""


def unavailable_reason() -> str | None:
    """Why the e2e tests cannot run here, or None."""
    if sys.platform != "linux":
        return "e2e tests need Linux network namespaces"
    if os.geteuid() != 0:
        return "e2e tests need root to make a network namespace (ip netns add); run them as root"
    if shutil.which("ip") is None:
        return "iproute2's 'ip' is missing (apt-get install iproute2)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's Chromium is missing at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is missing (pip install playwright; never 'playwright install')"
    try:
        import av  # noqa: F401
    except ImportError:
        return "the Python package av (PyAV) is missing: it writes the fake cameras' .y4m files"
    return None


# --- the namespace -----------------------------------------------------------------------------
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "setns"):  # Python 3.12+
            os.setns(fd, CLONE_NEWNET)
        elif _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise HarnessUnavailable(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> list[str]:
    """Delete confsvc-e2e-<pid> namespaces whose test run (that pid) is gone: a crash's leftovers."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NS_PREFIX):
            continue
        try:
            pid = int(name[len(NS_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            for p in _ns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


def _ns_pids(name: str) -> list[int]:
    out = _ip("netns", "pids", name, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class NetNS:
    """A network namespace of this test run: loopback only (plus veths it makes itself)."""

    def __init__(self, name: str | None = None, workdir: Path | None = None) -> None:
        self.name = name or f"{NS_PREFIX}{os.getpid()}"
        self.path = NETNS_DIR / self.name
        self.workdir = workdir
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._reaper_pipe: int | None = None
        self._veths = 0

    # life cycle
    def create(self) -> NetNS:
        remove_stale_namespaces()
        if self.path.exists():  # our own pid: a namespace left by a fixture that did not finish
            self.delete()
        _ip("netns", "add", self.name)
        try:
            self._start_reaper()
            _ip("-n", self.name, "link", "set", "lo", "up")
            # IPv6 off: 127.0.0.1 is then the only address in here, and the only ICE candidate.
            self.run(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
            self.run(["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"], check=False)
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix=f"netns-{self.name}", initializer=_setns, initargs=(self.path,)
            )
            assert self.call(lambda: socket.gethostbyname("127.0.0.1")) == "127.0.0.1"
        except BaseException:
            self.delete()
            raise
        return self

    def pids(self) -> list[int]:
        """Every process in the namespace (the node, its redis-server, Chromium and its children)."""
        return _ns_pids(self.name)

    def delete(self) -> list[str]:
        """Kill what is still inside (SIGKILL), delete the namespace; returns what had to be killed."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        leftovers = []
        if self.path.exists():
            for _ in range(3):
                pids = self.pids()
                if not pids:
                    break
                for pid in pids:
                    leftovers.append(f"{pid} {_cmdline(pid)}")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            _ip("netns", "del", self.name, check=False)
        self._stop_reaper()
        return leftovers

    # the reaper: cleans up if this process dies without tearing down (SIGKILL, a CI timeout...)
    def _start_reaper(self) -> None:
        """A watchdog in its own session holding the read end of a pipe only this process can write:
        when this process ends, however it ends, the pipe closes and the watchdog kills what is in
        the namespace, deletes it and removes the run's folder (if the run did not do so itself)."""
        read, write = os.pipe()
        os.set_inheritable(write, False)
        args = [sys.executable, str(Path(__file__).resolve()), "reap", self.name]
        if self.workdir is not None:
            args.append(str(self.workdir))
        self._reaper = subprocess.Popen(args, stdin=read, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True, close_fds=True)
        os.close(read)
        self._reaper_pipe = write

    def _stop_reaper(self) -> None:
        if self._reaper_pipe is not None:
            os.close(self._reaper_pipe)
            self._reaper_pipe = None
        if self._reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(30)
            self._reaper = None

    # running things inside
    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, args: list[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([*self.exec_prefix, *args], check=check, **kw)

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen([*self.exec_prefix, *args], **kw)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float = 60, **kw: Any) -> T:
        """Run ``fn`` on a thread that is inside the namespace (its sockets are the namespace's)."""
        if self._pool is None:
            raise RuntimeError(f"namespace {self.name} is not open")
        return self._pool.submit(fn, *args, **kw).result(timeout)

    def free_port(self) -> int:
        """A port free on 127.0.0.1 inside, and outside too at the time of asking (so that nothing
        outside answers on it when a test checks that the namespace is closed off)."""

        def pick() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        for _ in range(50):
            port = self.call(pick)
            with socket.socket() as outside:
                try:
                    outside.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
        raise RuntimeError("no port free both inside and outside the namespace")

    def addresses(self) -> list[str]:
        """The IPv4 and IPv6 addresses of every interface inside."""
        out = json.loads(self.run(["ip", "-j", "addr", "show"]).stdout)
        return [a["local"] for link in out for a in link.get("addr_info", [])]

    def add_veth(self, subnet: int | None = None) -> tuple[str, str]:
        """A veth pair with both ends inside, addressed in 198.18.N.0/24 (RFC 2544's test range).

        Nothing of it exists outside the namespace; it goes away with it. Returns the two addresses.
        """
        self._veths += 1
        n = subnet if subnet is not None else self._veths
        a, b = f"ve{n}a", f"ve{n}b"
        _ip("-n", self.name, "link", "add", a, "type", "veth", "peer", "name", b)
        ips = (f"198.18.{n}.1", f"198.18.{n}.2")
        for dev, ip in zip((a, b), ips, strict=True):
            _ip("-n", self.name, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", self.name, "link", "set", dev, "up")
        return ips

    # HTTP into the namespace
    def http(self, method: str, url: str, data: bytes | dict[str, str] | None = None,
             headers: dict[str, str] | None = None, json_body: Any = None, timeout: float = 10) -> Response:
        return self.call(_http, method, url, data, headers, json_body, timeout)

    # a throwaway aiohttp application inside
    def serve_app(self, app: Any, port: int | None = None) -> AppServer:
        return AppServer(self, app, port).start()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a: Any, **kw: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def _http(method: str, url: str, data: Any, headers: dict[str, str] | None, json_body: Any, timeout: float) -> Response:
    hdrs = dict(headers or {})
    body: bytes | None = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(data, dict):
        from urllib.parse import urlencode

        body = urlencode(data).encode()
        hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif data is not None:
        body = data
    req = urllib.request.Request(url, data=body, headers=hdrs, method=method)
    try:
        with _opener.open(req, timeout=timeout) as r:
            return Response(r.status, dict(r.headers), r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, dict(e.headers), e.read())


class AppServer:
    """An aiohttp Application served on 127.0.0.1 inside the namespace, on a thread of its own."""

    def __init__(self, ns: NetNS, app: Any, port: int | None) -> None:
        self.ns, self.app, self.port = ns, app, port or 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppServer:
        from aiohttp import web

        started = concurrent.futures.Future()

        def main() -> None:
            _setns(self.ns.path)
            loop = self._loop = asyncio.new_event_loop()

            async def up() -> None:
                self._runner = web.AppRunner(self.app, access_log=None)
                await self._runner.setup()
                site = web.TCPSite(self._runner, "127.0.0.1", self.port)
                await site.start()
                self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

            try:
                loop.run_until_complete(up())
            except BaseException as exc:  # noqa: BLE001
                started.set_exception(exc)
                loop.close()
                return
            started.set_result(None)
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"app-in-{self.ns.name}", daemon=True)
        self._thread.start()
        started.result(30)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the node ----------------------------------------------------------------------------------
ADMIN_PASSWORD = "e2e admin password 2026"
SECRET_KEY = "e2e-secret-key-0123456789abcdef-0123456789"


class Node:
    """``python -m confsvc serve`` inside the namespace, on one data folder and one port for life.

    ``kill()`` is SIGKILL (a crash: the embedded redis-server goes with it by PDEATHSIG) and
    ``start()`` again brings the same node back on the same folder and port.
    """

    def __init__(self, ns: NetNS, data_dir: Path, port: int | None = None, **env: str) -> None:
        self.ns = ns
        self.data_dir = Path(data_dir)
        self.port = port or ns.free_port()
        self.extra_env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-serve.log"
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONFSVC_") and k != "REDIS_URL"}
        env.update(
            {
                "CONFSVC_DATA_DIR": str(self.data_dir),
                "CONFSVC_HOST": "127.0.0.1",
                "CONFSVC_PORT": str(self.port),
                "CONFSVC_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "CONFSVC_SECRET_KEY": SECRET_KEY,
                "CONFSVC_ICE_ADDRESSES": "127.0.0.1",
                "CONFSVC_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> Node:
        if self.running:
            raise RuntimeError("the node is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        log.write(f"\n--- start {self.starts} ---\n".encode())
        log.flush()
        try:
            self.proc = self.ns.popen([sys.executable, "-m", "confsvc", "serve"], env=self.env, cwd=ROOT,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                      preexec_fn=_die_with_parent)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"confsvc serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = self.get("/healthz", timeout=2)
                if r.status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"confsvc serve did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL, then wait until its redis-server is gone too (so a restart finds the folder free)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(30)
        self._wait_redis_gone()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as systemd stops it; SIGKILL if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._wait_redis_gone()
        return self.proc.returncode

    def restart(self, timeout: float = 60) -> Node:
        self.kill()
        return self.start(timeout)

    def redis_pids(self) -> list[int]:
        return processes_mentioning(str(self.data_dir.resolve()), "redis-server")

    def _wait_redis_gone(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.redis_pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # talking to it
    def get(self, path: str, **kw: Any) -> Response:
        return self.ns.http("GET", self.url(path), **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.ns.http("POST", self.url(path), **kw)

    def cli(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``python -m confsvc ARGS`` in the namespace, on this node's folder (it shares the node's Redis)."""
        proc = self.ns.run([sys.executable, "-m", "confsvc", *args], check=False, env=self.env, cwd=ROOT, input=stdin)
        if check and proc.returncode != 0:
            raise RuntimeError(f"confsvc {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def add_user(self, username: str, role: str, password: str = ADMIN_PASSWORD, name: str = "") -> str:
        """Create an account (admin, organizer or chair) through the CLI; returns the username."""
        args = ["users", "add", username, "--role", role, "--password-stdin"] + (["--name", name] if name else [])
        self.cli(*args, stdin=password + "\n")
        return username

    def api_token(self, username: str) -> str:
        """A Bearer token for the JSON API (``headers={"Authorization": f"Bearer {token}"}``)."""
        return self.cli("tokens", "create", username).stdout.strip().splitlines()[0]

    def site_link(self, code: str) -> str:
        """The join link of a site (``/s/<token>``), as the CLI prints it."""
        return self.cli("sites", "link", code).stdout.strip()


def _die_with_parent() -> None:  # in the child, before exec: if the test run is killed, so is the node
    with contextlib.suppress(OSError, AttributeError):
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; kept across exec by ip netns exec


def processes_mentioning(text: str, name: str | None = None) -> list[int]:
    """Live (not zombie) processes whose command line contains ``text`` (and ``name``)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        cmd = _cmdline(int(p.name))
        if text not in cmd or (name and name not in cmd):
            continue
        try:
            status = (p / "status").read_text()
        except OSError:
            continue
        if "State:\tZ" not in status:
            out.append(int(p.name))
    return out


# --- fake cameras ------------------------------------------------------------------------------
PALETTE = [(220, 40, 40), (40, 170, 60), (40, 80, 220), (230, 200, 30), (200, 60, 200), (30, 200, 200),
           (240, 130, 20), (130, 130, 130)]


def color_for(name: str) -> tuple[int, int, int]:
    return PALETTE[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(PALETTE)]


def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = round(16 + 0.257 * r + 0.504 * g + 0.098 * b)
    u = round(128 - 0.148 * r - 0.291 * g + 0.439 * b)
    v = round(128 + 0.439 * r - 0.368 * g - 0.071 * b)
    return y, u, v


def write_y4m(path: Path, width: int, height: int, rgb: tuple[int, int, int] = (128, 128, 128),
              fps: int = 30, frames: int = 30) -> Path:
    """A looping fake camera: a solid colour with a white bar sweeping across (so frames differ).

    The colour tells sites apart even after a layer switch rescales the picture; the size is the
    camera's resolution (Chromium's file capture device delivers the file's size).
    """
    from fractions import Fraction

    import av

    if width % 2 or height % 2:
        raise ValueError("y4m 4:2:0 needs an even width and height")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    y, u, v = _yuv(rgb)
    bar = max(2, width // 16)
    with av.open(str(tmp), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("wrapped_avframe", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            x = (i * (width - bar) // max(1, frames - 1)) & ~1
            row = bytes([y]) * x + b"\xeb" * bar + bytes([y]) * (width - x - bar)
            frame = av.VideoFrame(width, height, "yuv420p")
            chroma = width * height // 4
            planes = (row * height, bytes([u]) * chroma, bytes([v]) * chroma)
            for n, (plane, data) in enumerate(zip(frame.planes, planes, strict=True)):
                _fill_plane(plane, data, width if n == 0 else width // 2)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def write_wav(path: Path, hz: float, seconds: float = 2.0, rate: int = 48000, level: float = 0.5) -> Path:
    """A fake microphone, looped by Chromium: ``hz`` > 0 is someone talking (bursts of a tone of
    that pitch, 0.4 s on, 0.6 s off: a steady tone would be taken for noise and suppressed by the
    browser's noise suppression), 0 is silence. 16-bit mono."""
    import math
    import struct
    import wave

    n = int(seconds * rate)
    amp = int(32767 * level)
    ramp = rate // 100  # 10 ms fades, no clicks

    def sample(i: int) -> int:
        t = i % rate  # position within the second
        on = int(0.4 * rate)
        if hz <= 0 or t >= on:
            return 0
        env = min(1.0, t / ramp, (on - t) / ramp)
        return int(amp * env * math.sin(2 * math.pi * hz * i / rate))

    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", sample(i)) for i in range(n)))
    return path


def _fill_plane(plane: Any, data: bytes, width: int) -> None:
    if plane.line_size == width:
        plane.update(data)
        return
    rows = len(data) // width
    padded = b"".join(data[r * width:(r + 1) * width].ljust(plane.line_size, b"\0") for r in range(rows))
    plane.update(padded)


# --- Chromium ----------------------------------------------------------------------------------
def write_wrapper(path: Path, ns: NetNS) -> Path:
    """The executable Playwright starts: Debian's launcher, inside the namespace.

    Chromium reads only the last ``--disable-features`` (and ``--enable-features``) switch, and
    Playwright passes lists of its own: the wrapper merges every occurrence into one.
    """
    path.write_text(
        "#!/bin/sh\n"
        "# written by tests/e2e/harness.py: Chromium inside the test's network namespace\n"
        "disable=''; enable=''\n"
        'for a in "$@"; do\n'
        "  shift\n"
        '  case "$a" in\n'
        '    --disable-features=*) disable="$disable,${a#--disable-features=}" ;;\n'
        '    --enable-features=*) enable="$enable,${a#--enable-features=}" ;;\n'
        '    *) set -- "$@" "$a" ;;\n'
        "  esac\n"
        "done\n"
        '[ -n "$disable" ] && set -- "$@" "--disable-features=${disable#,}"\n'
        '[ -n "$enable" ] && set -- "$@" "--enable-features=${enable#,}"\n'
        f'exec ip netns exec {ns.name} {CHROMIUM} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass
class _Camera:
    width: int
    height: int
    rgb: tuple[int, int, int]

    @property
    def key(self) -> str:
        return f"{self.width}x{self.height}-{''.join(f'{c:02x}' for c in self.rgb)}"


@dataclass
class BrowserPool:
    """One Chromium per fake camera, launched on first use and kept until ``close()``."""

    playwright: Any
    ns: NetNS
    workdir: Path
    browsers: dict[str, Any] = field(default_factory=dict)
    cameras: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.wrapper = write_wrapper(self.workdir / "chromium-in-netns", self.ns)

    def camera(self, width: int, height: int, rgb: tuple[int, int, int]) -> Path:
        cam = _Camera(width, height, rgb)
        if cam.key not in self.cameras:
            path = self.workdir / f"camera-{cam.key}.y4m"
            self.cameras[cam.key] = path if path.exists() else write_y4m(path, width, height, rgb)
        return self.cameras[cam.key]

    def microphone(self, audio: float | str) -> Path:
        name = f"mic-{audio}.wav"
        path = self.workdir / name
        if not path.exists():
            write_wav(path, 0.0 if audio == "silence" else float(audio))
        return path

    def get(self, width: int = 640, height: int = 360, rgb: tuple[int, int, int] = (128, 128, 128),
            audio: float | str | None = None) -> Any:
        """The Chromium of this camera (and microphone: None is Chromium's own beep once a second,
        a number a steady sine tone of that frequency, "silence" a silent microphone)."""
        key = _Camera(width, height, rgb).key + (f"-{audio}" if audio is not None else "")
        browser = self.browsers.get(key)
        if browser is None or not browser.is_connected():
            args = [*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={self.camera(width, height, rgb)}"]
            if audio is not None:
                args.append(f"--use-file-for-fake-audio-capture={self.microphone(audio)}")
            browser = self.playwright.chromium.launch(
                executable_path=str(self.wrapper), headless=True, args=args, timeout=60_000
            )
            self.browsers[key] = browser
        return browser

    def all_pages(self) -> list[Any]:
        return [p for b in self.browsers.values() if b.is_connected() for c in b.contexts for p in c.pages]

    def close(self) -> None:
        for b in self.browsers.values():
            with contextlib.suppress(Exception):
                b.close()
        self.browsers.clear()


# --- page helpers (JavaScript run in the page) -----------------------------------------------
INBOUND_VIDEO_JS = """async (pc) => {
  const out = {framesDecoded: 0, frameWidth: 0, frameHeight: 0, bytesReceived: 0};
  (await pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.framesDecoded += s.framesDecoded || 0; out.bytesReceived += s.bytesReceived || 0;
      out.frameWidth = Math.max(out.frameWidth, s.frameWidth || 0);
      out.frameHeight = Math.max(out.frameHeight, s.frameHeight || 0);
    }
  });
  return out;
}"""

OUTBOUND_VIDEO_JS = """async (pc) => {
  const out = [];
  (await pc.getStats()).forEach(s => {
    if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.push({mid: s.mid, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
                framesSent: s.framesSent || 0, limitation: s.qualityLimitationReason || ''});
    }
  });
  return out;
}"""

CANDIDATES_JS = """async (pc) => {
  const out = {local: [], remote: [], selected: null};
  const stats = await pc.getStats();
  stats.forEach(s => {
    if (s.type === 'local-candidate') out.local.push(s.address || s.ip);
    if (s.type === 'remote-candidate') out.remote.push(s.address || s.ip);
    if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      if (pair) out.selected = [stats.get(pair.localCandidateId)?.address, stats.get(pair.remoteCandidateId)?.address];
    }
  });
  return out;
}"""

AUDIO_LEVEL_JS = """async (pc) => {
  let level = 0;
  (await pc.getStats()).forEach(s => {
    if ((s.type === 'media-source' || s.type === 'inbound-rtp') && s.kind === 'audio') level = Math.max(level, s.audioLevel || 0);
  });
  return level;
}"""

VIDEO_ELEMENT_JS = """(el) => ({
  videoWidth: el.videoWidth, videoHeight: el.videoHeight, paused: el.paused,
  frames: el.getVideoPlaybackQuality ? el.getVideoPlaybackQuality().totalVideoFrames : 0,
})"""

VIDEO_COLOR_JS = """(el) => {
  const c = document.createElement('canvas'); c.width = 32; c.height = 32;
  const g = c.getContext('2d'); g.drawImage(el, 0, 0, 32, 32);
  // the median pixel by brightness: the background, not the sweeping white bar (1/16 of the width)
  const d = g.getImageData(0, 0, 32, 32).data; const px = [];
  for (let i = 0; i < d.length; i += 4) px.push([d[i], d[i + 1], d[i + 2]]);
  px.sort((a, b) => (a[0] + a[1] + a[2]) - (b[0] + b[1] + b[2]));
  return px[px.length >> 1];
}"""


def inbound_video(page: Any, pc_expr: str) -> dict[str, int]:
    """framesDecoded, frameWidth, frameHeight, bytesReceived summed over a connection's inbound video.

    ``pc_expr`` is a JavaScript expression for the RTCPeerConnection (e.g. ``window.confsvc.subscribe``).
    """
    return page.evaluate(f"(async () => ({INBOUND_VIDEO_JS})({pc_expr}))()")


def outbound_video(page: Any, pc_expr: str) -> list[dict[str, Any]]:
    """Each video track a connection sends: mid, frameWidth/Height as encoded now, framesSent, and
    why Chromium limits it ("cpu", "bandwidth" or "": it scales a layer down under load)."""
    return page.evaluate(f"(async () => ({OUTBOUND_VIDEO_JS})({pc_expr}))()")


def audio_level(page: Any, pc_expr: str) -> float:
    """The loudest audioLevel (0..1) of a connection's sent (media-source) or received audio."""
    return page.evaluate(f"(async () => ({AUDIO_LEVEL_JS})({pc_expr}))()")


def ice_candidates(page: Any, pc_expr: str) -> dict[str, Any]:
    """Addresses of a connection's local and remote candidates, and of its selected pair."""
    return page.evaluate(f"(async () => ({CANDIDATES_JS})({pc_expr}))()")


def video_element(page: Any, selector: str) -> dict[str, Any]:
    """videoWidth, videoHeight, paused and frames shown of a <video> element."""
    return page.locator(selector).evaluate(VIDEO_ELEMENT_JS)


def video_color(page: Any, selector: str) -> tuple[int, int, int]:
    """The background colour a <video> shows (the camera colour of the site it carries)."""
    return tuple(page.locator(selector).evaluate(VIDEO_COLOR_JS))  # type: ignore[return-value]


def login(page: Any, node: Node, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    """Sign a page in through the login form (its context keeps the session cookie)."""
    page.goto(node.url("/login"))
    page.fill("input[name=username]", username)
    page.fill("input[type=password]", password)
    page.locator("form button[type=submit], form input[type=submit]").first.click()
    page.wait_for_url(lambda url: "/login" not in url)


def wait_frames_rising(page: Any, pc_expr: str, more: int = 10, timeout: float = 15) -> dict[str, int]:
    """Wait until a connection decodes video and then ``more`` frames again; returns the last stats."""
    first = wait_until(lambda: (s := inbound_video(page, pc_expr))["framesDecoded"] > 0 and s,
                       timeout=timeout, message=f"video frames decoded on {pc_expr}")
    return wait_until(lambda: (s := inbound_video(page, pc_expr))["framesDecoded"] >= first["framesDecoded"] + more
                      and s, timeout=timeout, message=f"framesDecoded rising on {pc_expr}")


def same_color(a: Iterable[int], b: Iterable[int], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def wait_until(predicate: Callable[[], T], timeout: float = 10, interval: float = 0.1, message: str = "") -> T:
    """Poll ``predicate`` until it returns something true; returns that value, else AssertionError."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - a page still loading raises; keep polling
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{message or 'condition'} not met within {timeout} s (last: {last!r})")
        time.sleep(interval)


def leftovers(ns: NetNS | None, marker: str) -> list[str]:
    """What a finished run left behind: processes in the namespace, or mentioning ``marker`` anywhere."""
    found = []
    if ns is not None and ns.path.exists():
        found += [f"in {ns.name}: {pid} {_cmdline(pid)}" for pid in ns.pids()]
    reaper = ns._reaper.pid if ns is not None and ns._reaper is not None else None
    found += [f"{pid} {_cmdline(pid)}" for pid in processes_mentioning(marker) if pid != reaper]
    return found


def _reap(name: str, workdir: str | None) -> None:
    """The watchdog's body (``python harness.py reap NAME [WORKDIR]``): wait for EOF, then clean up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    ns = NetNS(name)
    if ns.path.exists():
        ns.delete()
    if workdir:
        for _ in range(3):
            pids = processes_mentioning(workdir)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "reap":
    _reap(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)


__all__ = [
    "ADMIN_PASSWORD", "ARTIFACTS", "audio_level", "CHROMIUM_FLAGS", "AppServer", "BrowserPool", "HarnessUnavailable", "NetNS",
    "Node", "Response", "color_for", "ice_candidates", "inbound_video", "leftovers", "login", "same_color",
    "unavailable_reason", "video_color", "video_element", "wait_frames_rising", "wait_until", "write_wav", "write_y4m",
]
