"""Fixtures for the media integration tests: a Room on 127.0.0.1, peers in another process, and
the node's aiortc encoders/decoders patched to raise."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from confsvc.media import MediaConfig, Room

PEERS = pathlib.Path(__file__).with_name("peers.py")


class PeerProcess:
    """JSON-lines client of peers.py."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lock = asyncio.Lock()

    async def call(self, op: str, **kw: Any) -> dict:
        async with self.lock:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write((json.dumps({"op": op, **kw}) + "\n").encode())
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), 60)
        if not line:
            raise RuntimeError("the peers process died")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"peers {op}: {reply['error']}")
        return reply

    async def publish(self, room: Room, name: str, **kw: Any):
        p = room.participants.get(name) or room.add_participant(name)
        offer = (await self.call("publish", name=name, **kw))["offer"]
        answer = await p.publish(offer)
        await self.call("answer", name=name, sdp=answer)
        return p

    async def subscribe(self, room: Room, name: str, grid_slots: int = 0, **kw: Any):
        p = room.participants.get(name) or room.add_participant(name, grid_slots=grid_slots)
        offer = await p.subscribe_offer()
        answer = (await self.call("subscribe", name=name, offer=offer, **kw))["answer"]
        await p.subscribe_answer(answer)
        return p

    async def stats(self) -> dict:
        return await self.call("stats")

    async def wait_for(self, pred: Callable[[dict], bool], within: float = 20.0) -> dict:
        """Poll the peers' stats until pred holds (a deadline for liveness, not a speed assertion)."""
        deadline = time.monotonic() + within
        while True:
            st = await self.stats()
            if pred(st):
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within}s; last stats: {json.dumps(st)[:2000]}")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def _peer_process(*cmd: str, env: dict[str, str] | None = None) -> AsyncIterator[PeerProcess]:
    """peers.py in a process of its own (``cmd`` runs it), told to quit at the end, killed if it won't."""
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, limit=1 << 22)
    try:
        yield PeerProcess(proc)
    finally:
        try:
            assert proc.stdin is not None
            proc.stdin.write(b'{"op": "quit"}\n')
            await proc.stdin.drain()
            await asyncio.wait_for(proc.wait(), 15)
        except Exception:  # noqa: BLE001 - includes TimeoutError
            proc.kill()
            await proc.wait()


@pytest.fixture
def spawn_peers() -> Callable[..., Any]:
    """``async with spawn_peers(*cmd, env=...) as pp``: another peers.py process, e.g. in a network namespace."""
    return _peer_process


@pytest.fixture
async def peers() -> AsyncIterator[PeerProcess]:
    async with _peer_process(sys.executable, str(PEERS)) as pp:
        yield pp


class TranscodeCalls(list):
    pass


@pytest.fixture
def no_transcoding(monkeypatch) -> TranscodeCalls:
    """Every aiortc encoder/decoder entry point in the node's process raises (and is recorded)."""
    import aiortc.codecs as codecs
    import aiortc.codecs.g711 as g711
    import aiortc.codecs.h264 as h264
    import aiortc.codecs.opus as opus
    import aiortc.codecs.vpx as vpx
    import aiortc.rtcrtpreceiver as receiver
    import aiortc.rtcrtpsender as sender

    calls = TranscodeCalls()

    def forbid(what: str):
        def boom(*args: Any, **kwargs: Any):
            calls.append(what)
            raise AssertionError(f"the node must never transcode: {what} was called")

        return boom

    for mod, name in ((codecs, "get_decoder"), (codecs, "get_encoder"), (receiver, "get_decoder"),
                      (sender, "get_encoder")):
        monkeypatch.setattr(mod, name, forbid(f"{mod.__name__}.{name}"))
    # nor reassembles frames: the receiver's depayloader and jitter buffer never run either
    monkeypatch.setattr(receiver, "depayload", forbid("aiortc depayload"))
    monkeypatch.setattr(receiver.JitterBuffer, "add", forbid("JitterBuffer.add"))
    for cls in (vpx.Vp8Decoder, opus.OpusDecoder, h264.H264Decoder, g711.PcmaDecoder, g711.PcmuDecoder):
        monkeypatch.setattr(cls, "decode", forbid(f"{cls.__name__}.decode"))
        monkeypatch.setattr(cls, "__init__", forbid(f"{cls.__name__}()"))
    for cls in (vpx.Vp8Encoder, opus.OpusEncoder, h264.H264Encoder, g711.PcmaEncoder, g711.PcmuEncoder):
        monkeypatch.setattr(cls, "encode", forbid(f"{cls.__name__}.encode"))
        monkeypatch.setattr(cls, "__init__", forbid(f"{cls.__name__}()"))
    return calls


@pytest.fixture
async def room(no_transcoding) -> AsyncIterator[Room]:
    r = Room(MediaConfig(ice_addresses=("127.0.0.1",)))
    try:
        yield r
    finally:
        await r.close()
        assert list(no_transcoding) == []
