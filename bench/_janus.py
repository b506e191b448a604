"""Janus (Debian package ``janus``) as the reference SFU: configuration, process, videoroom API.

The configuration is written at run time into a folder of its own under ``bench/.cache``: only the
videoroom plugin and the plain-HTTP transport (bound to 127.0.0.1) are loaded, no event handlers
or loggers, no admin API; ``event_loops`` = the number of cores; IPv6 off; ICE candidates only on
127.0.0.1 (``ice_enforce_list``).

Janus 1.1.2 skips every interface flagged IFF_LOOPBACK when it gathers candidates (src/ice.c,
``janus_ice_setup_local``), and no setting changes that: neither ``ice_enforce_list``,
``ice_ignore_list`` nor ``nat_1_1_mapping`` (which only rewrites the announced address of a socket
bound elsewhere). The benchmark therefore runs inside a private network namespace (``forwarding``
makes it) where 127.0.0.1 is also set on an ``ifb`` device, which is not flagged loopback; with
``ice_enforce_list = "127.0.0.1"`` Janus gathers exactly one candidate, 127.0.0.1. Nothing in that
namespace can reach any other address.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

LIBDIR = Path("/usr/lib/x86_64-linux-gnu/janus")
ROOM = 4242


def ensure_installed() -> str:
    """Path of the janus binary, installing the Debian package when it is missing."""
    path = shutil.which("janus")
    if path:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "janus"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "janus"], env=env, capture_output=True, text=True)
    path = shutil.which("janus")
    if not path:
        raise RuntimeError(f"could not install janus: {r.stderr[-500:]}")
    return path


def version() -> str:
    try:
        out = subprocess.run(["janus", "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].split(":", 1)[1].strip()
    except Exception:
        return "unknown"


def _libs(kind: str, keep: str) -> str:
    folder = LIBDIR / kind
    names = sorted(p.name for p in folder.glob("*.so")) if folder.is_dir() else []
    return ",".join(n for n in names if n != keep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, http_port: int, event_loops: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "janus.jcfg").write_text(f"""
general: {{
	configs_folder = "{folder}"
	plugins_folder = "{LIBDIR}/plugins"
	transports_folder = "{LIBDIR}/transports"
	events_folder = "{LIBDIR}/events"
	loggers_folder = "{LIBDIR}/loggers"
	log_to_stdout = true
	debug_level = 3
	interface = "127.0.0.1"
	session_timeout = 0
	event_loops = {event_loops}
	hide_dependencies = true
}}
media: {{
	ipv6 = false
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "127.0.0.1"
	ignore_mdns = true
}}
plugins: {{
	disable = "{_libs('plugins', 'libjanus_videoroom.so')}"
}}
transports: {{
	disable = "{_libs('transports', 'libjanus_http.so')}"
}}
loggers: {{
	disable = "{_libs('loggers', '')}"
}}
events: {{
	broadcast = false
	disable = "{_libs('events', '')}"
}}
""")
    (folder / "janus.transport.http.jcfg").write_text(f"""
general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	ip = "127.0.0.1"
	port = {http_port}
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
""")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


class JanusProcess:
    def __init__(self, folder: Path, event_loops: int) -> None:
        self.folder = folder
        self.port = free_port()
        self.config = write_config(folder, self.port, event_loops)
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}/janus"
        self.log = folder / "janus.log"

    async def start(self) -> None:
        self._logf = self.log.open("wb")
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - one short fork, before any media flows
            ["janus", "-C", str(self.config), "-F", str(self.folder)],
            stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as s:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"janus exited: {self.log.read_text()[-2000:]}")
                try:
                    async with s.get(self.url + "/info") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("janus did not answer on HTTP")
                await asyncio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_logf", None):
            self._logf.close()


class JanusError(RuntimeError):
    pass


class JanusApi:
    """The Janus HTTP API: one session, a long-poll loop dispatching events by transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        self.session_id: int | None = None
        self._tx = itertools.count(1)
        self._waiting: dict[str, asyncio.Future] = {}
        self._poller: asyncio.Task | None = None

    async def _post(self, path: str, body: dict) -> dict:
        async with self.http.post(self.url + path, json=body) as r:
            data = await r.json(content_type=None)
        if data.get("janus") == "error":
            raise JanusError(str(data.get("error")))
        return data

    async def create(self) -> None:
        data = await self._post("", {"janus": "create", "transaction": self._next()})
        self.session_id = data["data"]["id"]
        self._poller = asyncio.ensure_future(self._poll())

    def _next(self) -> str:
        return f"t{next(self._tx)}"

    async def attach(self) -> int:
        data = await self._post(f"/{self.session_id}", {
            "janus": "attach", "plugin": "janus.plugin.videoroom", "transaction": self._next()})
        return data["data"]["id"]

    async def request(self, handle: int, body: dict) -> dict:
        """A synchronous plugin request (create, list, ...): the answer comes in the POST reply."""
        data = await self._post(f"/{self.session_id}/{handle}", {
            "janus": "message", "body": body, "transaction": self._next()})
        pd = data.get("plugindata", {}).get("data", {})
        if "error" in pd:
            raise JanusError(pd["error"])
        return pd

    async def message(self, handle: int, body: dict, jsep: dict | None = None, wait: float = 20) -> dict:
        """An asynchronous plugin request: returns the event (with its jsep) that answers it."""
        tx = self._next()
        fut = asyncio.get_running_loop().create_future()
        self._waiting[tx] = fut
        msg = {"janus": "message", "body": body, "transaction": tx}
        if jsep:
            msg["jsep"] = jsep
        try:
            data = await self._post(f"/{self.session_id}/{handle}", msg)
            if data.get("janus") != "ack":
                return data
            event = await asyncio.wait_for(fut, wait)
        finally:
            self._waiting.pop(tx, None)
        pd = event.get("plugindata", {}).get("data", {})
        if "error" in pd:
            raise JanusError(pd["error"])
        return event

    async def _poll(self) -> None:
        while True:
            try:
                async with self.http.get(f"{self.url}/{self.session_id}?maxev=50") as r:
                    data = await r.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.1)
                continue
            for ev in data if isinstance(data, list) else [data]:
                fut = self._waiting.get(ev.get("transaction", ""))
                if fut is not None and not fut.done() and ev.get("janus") == "event":
                    fut.set_result(ev)

    async def close(self) -> None:
        if self._poller:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
        await self.http.close()


class JanusTarget:
    """What the driver needs from an SFU: publish(offer) -> answer; subscribe() -> (offer, answer cb)."""

    name = "janus"

    def __init__(self, folder: Path, event_loops: int) -> None:
        self.proc = JanusProcess(folder, event_loops)
        self.api: JanusApi | None = None
        self.publisher_id: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def describe(self) -> dict:
        return {"version": version(), "event_loops": self.proc_event_loops, "transport": "http 127.0.0.1",
                "ice": "127.0.0.1 only (ice_enforce_list, private netns)", "room": {
                    "audiolevel_ext": False, "videoorient_ext": False, "playoutdelay_ext": False,
                    "transport_wide_cc_ext": False, "fir_freq": 0, "bitrate": 0}}

    async def start(self) -> None:
        await self.proc.start()
        self.api = JanusApi(self.proc.url)
        await self.api.create()
        h = await self.api.attach()
        await self.api.request(h, {
            "request": "create", "room": ROOM, "publishers": 1, "bitrate": 0, "fir_freq": 0,
            "audiocodec": "opus", "videocodec": "vp8", "notify_joining": False,
            "audiolevel_ext": False, "audiolevel_event": False, "videoorient_ext": False,
            "playoutdelay_ext": False, "transport_wide_cc_ext": False, "record": False,
        })

    async def publish(self, offer_sdp: str) -> str:
        h = await self.api.attach()
        ev = await self.api.message(h, {"request": "joinandconfigure", "room": ROOM, "ptype": "publisher",
                                        "display": "chair", "audio": True, "video": True},
                                    jsep={"type": "offer", "sdp": offer_sdp})
        self.publisher_id = ev["plugindata"]["data"]["id"]
        return ev["jsep"]["sdp"]

    async def subscribe(self) -> tuple[str, object]:
        h = await self.api.attach()
        ev = await self.api.message(h, {"request": "join", "room": ROOM, "ptype": "subscriber",
                                        "streams": [{"feed": self.publisher_id}]})
        offer = ev["jsep"]["sdp"]

        async def answer(sdp: str) -> None:
            await self.api.message(h, {"request": "start", "room": ROOM}, jsep={"type": "answer", "sdp": sdp})

        return offer, answer

    async def stop(self) -> None:
        if self.api:
            await self.api.close()
        self.proc.stop()

    @property
    def proc_event_loops(self) -> int:
        return os.cpu_count() or 1
