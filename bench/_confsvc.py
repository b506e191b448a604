"""confsvc as a benchmark target: ``bench/_node.py`` in its own process, driven over its stdin/stdout.

The node imports ``confsvc.media`` from the repository this file sits in, or from the folder named
by ``CONFSVC_SRC`` (e.g. a worktree where the media plane is being written).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def source_root() -> Path:
    return Path(os.environ.get("CONFSVC_SRC") or ROOT)


def media_api_status(src: Path | None = None) -> str | None:
    """None when ``confsvc.media`` offers the API the benchmark needs, else why not."""
    src = src or source_root()
    code = ("import confsvc.media as m, sys; R = m.Room; P = m.Participant; "
            "missing = [n for n in ('add_participant', 'set_stage', 'close', 'stats') if not hasattr(R, n)]"
            " + [n for n in ('publish', 'subscribe_offer', 'subscribe_answer') if not hasattr(P, n)]"
            " + ([] if hasattr(m, 'MediaConfig') else ['MediaConfig']); "
            "print(','.join(missing))")
    env = dict(os.environ, PYTHONPATH=str(src))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=str(src))
    if r.returncode != 0:
        return f"confsvc.media does not import from {src}: {r.stderr.strip().splitlines()[-1] if r.stderr else r.returncode}"
    if r.stdout.strip():
        return f"confsvc.media at {src} lacks: {r.stdout.strip()}"
    return None


class ConfsvcTarget:
    name = "confsvc"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.src = source_root()
        self.proc: asyncio.subprocess.Process | None = None
        self._rid = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self._n = itertools.count(1)
        self._stderr = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def describe(self) -> dict:
        rev = subprocess.run(["git", "-C", str(self.src), "log", "-1", "--format=%h %s"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(self.src), "status", "--porcelain", "confsvc/media"],
                               capture_output=True, text=True).stdout.strip()
        return {"source": str(self.src), "commit": rev, "media_tree_dirty": bool(dirty),
                "process": "bench/_node.py: one Room, MediaConfig(ice_addresses=('127.0.0.1',))",
                "config_overrides": json.loads(os.environ.get("CONFSVC_MEDIA_CONFIG") or "{}")}

    async def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._stderr = (self.folder / "node.log").open("wb")
        env = dict(os.environ, PYTHONPATH=str(self.src))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "bench" / "_node.py"), cwd=str(self.src), env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, limit=2**22)
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line or not json.loads(line).get("ready"):
            raise RuntimeError(f"the confsvc node did not start: {(self.folder / 'node.log').read_text()[-2000:]}")
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                err = RuntimeError(f"the confsvc node exited: {(self.folder / 'node.log').read_text()[-2000:]}")
                for fut in self._waiting.values():
                    if not fut.done():
                        fut.set_exception(err)
                return
            msg = json.loads(line)
            fut = self._waiting.pop(msg.get("rid"), None)
            if fut and not fut.done():
                fut.set_result(msg)

    async def call(self, op: str, **kw) -> dict:
        assert self.proc and self.proc.stdin
        rid = next(self._rid)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self.proc.stdin.write((json.dumps({"rid": rid, "op": op, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        msg = await asyncio.wait_for(fut, 30)
        if "error" in msg:
            raise RuntimeError(f"node {op}: {msg['error']}\n{msg.get('trace', '')}")
        return msg

    async def publish(self, offer_sdp: str) -> str:
        return (await self.call("publish", id="chair", sdp=offer_sdp))["sdp"]

    async def subscribe(self) -> tuple[str, object]:
        pid = f"site{next(self._n)}"
        offer = (await self.call("subscribe_offer", id=pid))["sdp"]

        async def answer(sdp: str) -> None:
            await self.call("subscribe_answer", id=pid, sdp=sdp)

        return offer, answer

    async def stats(self) -> dict:
        return (await self.call("stats"))["stats"]

    async def mark(self) -> None:
        """The measurement window starts: the node's GC pause figures count from here."""
        await self.call("mark")

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.call("close"), 20)
            except Exception:
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader:
            self._reader.cancel()
        if self._stderr:
            self._stderr.close()
