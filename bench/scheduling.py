"""Benchmark: the double-booking check of a weekly series (52 occurrences) over all 183 sites
against 500 existing briefings. Prints one JSON object.

Starts a private redis-server (unix socket, temporary folder), loads the demo directory, books 500
briefings spread over the coming year (weekly series of a district, one-offs of districts,
communes or the whole province), then times ``Briefings.create(..., dry_run=True)`` end to end —
parsing, rule expansion, and the Lua check across 183 sites x 52 windows — for a free slot (the
whole check runs) and for a slot that clashes. Target: under 50 ms.

    python bench/scheduling.py [--existing 500] [--runs 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confsvc.config import Settings  # noqa: E402
from confsvc.directory.service import Directory  # noqa: E402
from confsvc.scheduling.errors import Conflict  # noqa: E402
from confsvc.scheduling.service import Actor, Briefings  # noqa: E402
from confsvc.store import keys  # noqa: E402
from confsvc.store.embedded import find_redis_server  # noqa: E402
from confsvc.store.redis import client  # noqa: E402


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(sock), "--dir", str(tmp), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    for _ in range(500):
        if sock.exists():
            break
        time.sleep(0.01)
    return proc, f"unix://{sock}"


def ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "min": round(values[0] * 1000, 2),
        "median": round(statistics.median(values) * 1000, 2),
        "p95": round(values[int(len(values) * 0.95) - 1] * 1000, 2),
        "max": round(values[-1] * 1000, 2),
    }


async def run(existing: int, runs: int) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="confsvc-bench-"))
    proc, url = start_redis(tmp)
    r = client(url)
    try:
        directory = Directory(r)
        await directory.ensure_demo()
        tree = await directory.tree()
        today = datetime.now(UTC).date()
        first_monday = today + timedelta(days=7 - today.weekday())
        svc = Briefings(r, directory, Settings())
        rng = random.Random(6)
        districts = [d.code for d in tree.districts]
        communes = [c for d in districts for c in (x.code for x in tree.communes_of(d))]
        made = refused = 0
        t0 = time.perf_counter()
        attempts = 0
        while made < existing and attempts < existing * 20:
            attempts += 1
            kind = rng.random()
            day = first_monday + timedelta(days=rng.randrange(1, 360))
            if day.weekday() == 0:
                day += timedelta(days=1)  # Monday mornings are the province giao ban
            hour = rng.choice([8, 10, 13, 15])
            d = rng.choice(districts)
            if kind < 0.2:  # a district's weekly series
                sel, chair, rule = {"districts": [d]}, d, f"FREQ=WEEKLY;COUNT={rng.choice([12, 26, 52])}"
                day = first_monday + timedelta(days=rng.randrange(1, 5))  # Tue..Fri
            elif kind < 0.6:  # a district and its communes, once
                sel, chair, rule = {"districts": [d]}, d, None
            elif kind < 0.95:  # a handful of communes
                picked = rng.sample(communes, rng.randrange(1, 8))
                sel, chair, rule = {"sites": picked}, picked[0], None
            else:  # the whole province, once, on a weekday afternoon
                sel, chair, rule = {"province": True}, None, None
                hour = 15
            body = {
                "title": f"Họp {attempts}",
                "selection": sel,
                "start": f"{day.isoformat()}T{hour:02d}:00",
                "end": f"{day.isoformat()}T{hour + 1:02d}:30",
                "lobby_minutes": 30,
            }
            if chair:
                body["chair"] = chair
            if rule:
                body["rrule"] = rule
            try:
                await svc.create(body, Actor("bench"))
                made += 1
            except Conflict:
                refused += 1
        setup_s = time.perf_counter() - t0
        entries = [await r.zcard(keys.site_bookings(c)) for c in tree.sites]

        series = {
            "title": "Giao ban thứ Hai",
            "selection": {"province": True},
            "start": f"{first_monday.isoformat()}T08:00",
            "end": f"{first_monday.isoformat()}T10:00",
            "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=52",
        }
        clash = {**series, "start": f"{first_monday.isoformat()}T15:00", "end": f"{first_monday.isoformat()}T16:00",
                 "rrule": "FREQ=WEEKLY;BYDAY=TU,WE,TH,FR;COUNT=52"}

        async def timed(b: dict, expect_conflict: bool) -> tuple[list[float], int]:
            out, n = [], 0
            for _ in range(runs):
                t = time.perf_counter()
                try:
                    await svc.create(b, Actor("bench"), dry_run=True)
                    assert not expect_conflict
                except Conflict as exc:
                    assert expect_conflict
                    n = len(exc.conflicts)
                out.append(time.perf_counter() - t)
            return out, n

        await timed(series, False)  # warm up (script load, tree cache)
        free, _ = await timed(series, False)
        clashing, n_conflicts = await timed(clash, True)
        t = time.perf_counter()
        await svc.create(series, Actor("bench"))
        save_s = time.perf_counter() - t
        return {
            "benchmark": "scheduling.conflict_check",
            "sites": len(tree.sites),
            "series_occurrences": 52,
            "windows_checked": 52 * len(tree.sites),
            "existing_briefings": made,
            "existing_refused_while_seeding": refused,
            "booking_entries_per_site": {"min": min(entries), "median": statistics.median(entries), "max": max(entries)},
            "runs": runs,
            "check_free_ms": ms(free),
            "check_with_conflicts_ms": ms(clashing),
            "conflicts_reported": n_conflicts,
            "save_series_ms": round(save_s * 1000, 2),
            "seed_s": round(setup_s, 2),
            "target_ms": 50,
            "meets_target": statistics.median(free) * 1000 < 50,
        }
    finally:
        await r.aclose()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--existing", type=int, default=500)
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    print(json.dumps(asyncio.run(run(a.existing, a.runs)), ensure_ascii=False))


if __name__ == "__main__":
    main()
