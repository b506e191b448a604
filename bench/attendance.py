"""Benchmark: the attendance report of a 183-site, 4-hour briefing with a quality sample every 10 s.

Starts a private redis-server (unix socket, AOF with appendfsync always, like the embedded one),
loads the log (~263,000 events), then times the report as the HTTP handler makes it: the stream
read in chunks, the rollup, and the exports. Prints one JSON object.

    python bench/attendance.py [--sites 183] [--hours 4] [--period 10]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confsvc.attendance.briefing import BriefingFacts, StaticBriefings  # noqa: E402
from confsvc.attendance.events import Joined, Left, QualitySample, Reconnected  # noqa: E402
from confsvc.attendance.exports import to_csv, to_xlsx  # noqa: E402
from confsvc.attendance.log import AttendanceLog  # noqa: E402
from confsvc.attendance.service import AttendanceService  # noqa: E402
from confsvc.attendance.timeline import render  # noqa: E402
from confsvc.directory.model import Tree, parse_csv  # noqa: E402
from confsvc.directory.service import demo_csv  # noqa: E402
from confsvc.store import keys  # noqa: E402
from confsvc.store.redis import client  # noqa: E402
from tests.integration.redis_private import PrivateRedis  # noqa: E402

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def events_of(briefing: BriefingFacts, sites: list[str], period_s: int, rnd: random.Random):
    """A plausible briefing: most sites early, some late, a few absent, drops and reconnects, samples."""
    t0, t1 = briefing.starts_at, briefing.ends_at
    for si, code in enumerate(sites):
        if rnd.random() < 0.04:
            continue  # absent
        join = t0 + timedelta(minutes=rnd.uniform(-45, 2) if rnd.random() < 0.9 else rnd.uniform(5, 40))
        leave = t1 if rnd.random() < 0.93 else t1 - timedelta(minutes=rnd.uniform(6, 60))
        n_drops = rnd.choice((0, 0, 0, 1, 1, 2, 4))
        drops = sorted(join + (leave - join) * rnd.random() for _ in range(n_drops))
        conn = f"{code}-0"
        yield Joined(site=code, conn=conn, node="n1", at=join)
        segments = []
        start = join
        for k, d in enumerate(drops):
            segments.append((conn, start, d, "dropped"))
            nxt = f"{code}-{k + 1}"
            start = d + timedelta(seconds=rnd.uniform(2, 40))
            segments.append((None, nxt, conn, start))
            conn = nxt
        segments.append((conn, start, leave, "ended" if leave >= t1 else "left"))
        for seg in segments:
            if seg[0] is None:
                _, nxt, prev, at = seg
                yield Reconnected(site=code, conn=nxt, previous=prev, node="n1", at=at)
                continue
            c, s, e, reason = seg
            t = s + timedelta(seconds=period_s)
            base_loss = rnd.choice((0.0, 0.005, 0.01, 0.03, 0.09))
            while t < e:
                yield QualitySample(
                    site=code,
                    conn=c,
                    node="n1",
                    at=t,
                    bitrate_in=rnd.randint(250, 1500),
                    bitrate_out=rnd.randint(400, 2500),
                    loss=min(1.0, max(0.0, base_loss + rnd.uniform(-0.005, 0.02))),
                    rtt_ms=rnd.randint(20, 400),
                    layer=rnd.choice(("h", "m", "l")),
                )
                t += timedelta(seconds=period_s)
            yield Left(site=code, conn=c, node="n1", at=e, reason=reason)  # type: ignore[arg-type]
        del si


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=183)
    ap.add_argument("--hours", type=float, default=4)
    ap.add_argument("--period", type=int, default=10, help="seconds between quality samples")
    ap.add_argument("--runs", type=int, default=3, help="timed reports (the best and the median are printed)")
    args = ap.parse_args()

    tree = Tree.build(parse_csv(demo_csv()))
    sites = [s.code for s in tree.ordered()][: args.sites]
    t0 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
    b = BriefingFacts("bench", "Giao ban bench", t0, t0 + timedelta(hours=args.hours), tuple(sites), "org")
    pr = PrivateRedis()
    pr.start()
    r = client(pr.url)
    out: dict[str, object] = {"sites": len(sites), "hours": args.hours, "sample_period_s": args.period}
    try:
        # load the log: plain pipelined XADDs (the fast way to fill it; the writer path is timed below)
        t = time.perf_counter()
        n = 0
        key = keys.attendance_log(b.id)
        pipe = r.pipeline(transaction=False)
        for i, e in enumerate(events_of(b, sites, args.period, random.Random(1))):
            pipe.xadd(key, {"e": replace(e, id=f"bench:{i + 1}").encode()})
            n += 1
            if n % 5000 == 0:
                await pipe.execute()
        await pipe.execute()
        out["events"] = n
        out["load_s"] = round(time.perf_counter() - t, 2)
        info = await r.memory_usage(key)
        out["stream_mb"] = round((info or 0) / 1e6, 1)

        async def tree_fn() -> Tree:
            return tree

        now = t0 + timedelta(hours=args.hours + 1)

        def fresh() -> AttendanceService:  # a new process's view: no in-memory state
            return AttendanceService(r, StaticBriefings([b]), tree_fn, clock=lambda: now)

        cache_key = keys.attendance_report_cache(b.id)
        gc.collect()
        rss_before = rss_mb()
        times = []
        cpu = []
        for _ in range(args.runs):
            await r.delete(cache_key)
            svc = fresh()
            t = time.perf_counter()
            c = time.process_time()
            rep = await svc.report(b)
            cpu.append(time.process_time() - c)
            times.append(time.perf_counter() - t)
        out["report_s"] = round(min(times), 3)
        out["report_s_median"] = round(statistics.median(times), 3)
        out["report_cpu_s"] = round(min(cpu), 3)  # this process only (Redis's share is in report_s)
        out["load_average"] = round(os.getloadavg()[0], 2)
        out["peak_rss_mb"] = round(rss_mb(), 1)
        out["rss_growth_mb"] = round(rss_mb() - rss_before, 1)
        t = time.perf_counter()
        await fresh().report(b)
        out["report_stored_s"] = round(time.perf_counter() - t, 4)  # finished: read back from Redis
        await svc.redis.xadd(keys.attendance_log(b.id), {"e": Joined(site=sites[0], conn="late", at=now, id="x:1").encode()})
        t = time.perf_counter()
        await svc.report(b)
        out["report_after_one_more_event_s"] = round(time.perf_counter() - t, 4)  # live path: only new entries

        # the same report under tracemalloc (slower: memory only), from scratch
        await r.delete(cache_key)
        tracemalloc.start()
        rep2 = await fresh().report(b)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_peak_mb"] = round(peak / 1e6, 1)
        assert rep2.row(sites[1]) == rep.row(sites[1])

        t = time.perf_counter()
        csv_bytes = to_csv(rep, ZONE)
        out["csv_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        xlsx = to_xlsx(rep, ZONE)
        out["xlsx_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        svg = render(rep, ZONE)
        out["svg_s"] = round(time.perf_counter() - t, 3)
        out["sizes_kb"] = {"csv": len(csv_bytes) // 1024, "xlsx": len(xlsx) // 1024, "svg": len(svg) // 1024}
        s = rep.summary
        out["summary"] = {"present": s.present, "absent": s.absent, "late": s.late, "left_early": s.left_early, "drops": s.drops}

        # the writer path: durable appends through AttendanceLog (Lua dedup, fsync per pipelined batch)
        spool_dir = pr.dir / "spool"
        log = AttendanceLog.for_store(r, spool_dir / "spool.log", node="bench")
        await log.start()
        m = 20_000
        t = time.perf_counter()
        futs = [log.submit("bench-w", QualitySample(site="YB", conn="c", rtt_ms=50, loss=0.01)) for _ in range(m)]
        await asyncio.gather(*futs)
        out["log_append_per_s"] = round(m / (time.perf_counter() - t))
        t = time.perf_counter()
        for _ in range(200):
            await log.append("bench-w", QualitySample(site="YB", conn="c", rtt_ms=50, loss=0.01))
        out["log_append_one_by_one_ms"] = round((time.perf_counter() - t) / 200 * 1000, 2)
        await log.close()
    finally:
        await r.aclose()
        pr.stop()
    out["target_report_s"] = 2.0
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
