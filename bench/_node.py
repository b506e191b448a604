"""A minimal confsvc media node for the benchmark: one ``confsvc.media.Room`` (ICE on 127.0.0.1
only), driven over stdin/stdout by JSON lines, so that its process can be measured alone.

Requests (one JSON object a line, each with an ``rid`` echoed in its reply):

    {"rid": 1, "op": "publish", "id": "chair", "sdp": "<offer>"}   -> {"rid": 1, "sdp": "<answer>"}
        (the publisher is put on the stage)
    {"rid": 2, "op": "subscribe_offer", "id": "sub1"}             -> {"rid": 2, "sdp": "<offer>"}
    {"rid": 3, "op": "subscribe_answer", "id": "sub1", "sdp": ".."} -> {"rid": 3}
    {"rid": 4, "op": "stats"}                                     -> {"rid": 4, "stats": {...}}
    {"rid": 6, "op": "mark"}                                      -> {"rid": 6} (GC pauses in "stats"
                                                                     count from here: the window's start)
    {"rid": 5, "op": "close"}                                     -> {"rid": 5}, then exit

A failed request gets ``{"rid": n, "error": "..."}``. The first line written is ``{"ready": true}``.

``CONFSVC_MEDIA_CONFIG`` (a JSON object, e.g. ``{"connect_udp": false}``) overrides MediaConfig fields,
for A/B runs of a setting without editing the tree.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import sys
import time
import traceback


class GcPauses:
    """The garbage collector's pauses per generation (the event loop, and every packet, waits)."""

    def __init__(self) -> None:
        self.reset()
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.max = [0.0, 0.0, 0.0]

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        spent = time.perf_counter() - self._t0
        g = info["generation"]
        self.count[g] += 1
        self.total[g] += spent
        self.max[g] = max(self.max[g], spent)

    def report(self) -> dict:
        return {f"gen{g}": {"count": self.count[g], "total_ms": round(self.total[g] * 1000, 2),
                            "max_ms": round(self.max[g] * 1000, 2)} for g in range(3)}


async def main() -> None:
    from confsvc.media import MediaConfig, Room

    overrides = json.loads(os.environ.get("CONFSVC_MEDIA_CONFIG") or "{}")
    room = Room(MediaConfig(**{"ice_addresses": ("127.0.0.1",), **overrides}))
    pauses = GcPauses()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout
    tasks: set[asyncio.Task] = set()
    done = asyncio.Event()

    def reply(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    async def handle(req: dict) -> None:
        rid = req.get("rid")
        try:
            op = req["op"]
            if op == "publish":
                p = room.add_participant(req["id"])
                answer = await p.publish(req["sdp"])
                room.set_stage(req["id"])
                reply({"rid": rid, "sdp": answer})
            elif op == "subscribe_offer":
                p = room.add_participant(req["id"])
                reply({"rid": rid, "sdp": await p.subscribe_offer()})
            elif op == "subscribe_answer":
                await room.participant(req["id"]).subscribe_answer(req["sdp"])
                reply({"rid": rid})
            elif op == "stats":
                reply({"rid": rid, "stats": {**room.stats(), "gc": pauses.report()}})
            elif op == "mark":
                pauses.reset()
                reply({"rid": rid})
            elif op == "close":
                await room.close()
                reply({"rid": rid})
                done.set()
            else:
                reply({"rid": rid, "error": f"unknown op {op!r}"})
        except Exception as e:  # reported to the driver, which fails the run with it
            reply({"rid": rid, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]})

    reply({"ready": True, "pid": os.getpid()})
    while not done.is_set():
        line = await reader.readline()
        if not line:
            break
        t = asyncio.ensure_future(handle(json.loads(line)))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if not done.is_set():
        await room.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
