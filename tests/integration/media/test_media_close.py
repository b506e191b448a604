"""Closing a room leaves nothing behind in the node's process: no task, socket, transport, timer
or thread (the peers live in another process, so everything counted here is the node's)."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest

from confsvc.media import MediaConfig, Room
from tests.procinfo import open_sockets

pytestmark = pytest.mark.integration


def census() -> dict:
    loop = asyncio.get_running_loop()
    sockets = open_sockets()
    gc.collect()
    transports = sum(1 for o in gc.get_objects()
                     if isinstance(o, asyncio.BaseTransport) and not o.is_closing())
    return {
        "tasks": len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()]),
        "sockets": sockets,
        "transports": transports,
        "timers": len([h for h in loop._scheduled if not h.cancelled()]),
        # the event loop's default executor keeps idle workers ("asyncio_N") for the process; they
        # belong to the loop, not the room. Every other thread counts (aiortc decoder threads...).
        "threads": sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")),
    }


async def settle(before: dict, within: float = 10.0) -> dict:
    """aioice closes its sockets a loop turn or two after close() returns: wait for that, bounded."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        now = census()
        if now == before or loop.time() > end:
            return now
        await asyncio.sleep(0.1)


async def test_closing_a_room_leaves_no_task_transport_timer_or_thread(peers, no_transcoding):
    await peers.stats()  # the peers process is up: its pipes are part of the baseline
    before = census()
    room = Room(MediaConfig())
    await peers.publish(room, "A", width=160, height=120, audio=True)
    room.set_stage("A")
    subs = [await peers.subscribe(room, f"S{i}") for i in range(3)]
    mid = subs[0].mids()["stage"]
    await peers.wait_for(lambda st: all(st["subs"][p.id]["video"].get(mid, {}).get("frames", 0) >= 5 for p in subs))
    during = census()
    assert during["sockets"] > before["sockets"] and during["tasks"] > before["tasks"]
    await room.remove_participant("S0")  # one leaves early
    await room.close()
    after = await settle(before)
    assert after == before, {"before": before, "during": during, "after": after}
    assert list(no_transcoding) == []
