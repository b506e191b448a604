"""The attendance log on a real Redis: durable appends, the spool across a Redis crash, a writer crash."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from confsvc.attendance.briefing import BriefingFacts
from confsvc.attendance.events import Joined, Left, QualitySample, decode, event_id
from confsvc.attendance.log import AttendanceLog
from confsvc.attendance.rollups import Accumulator, Status, build_report
from confsvc.attendance.spool import Spool
from confsvc.store import keys
from confsvc.store.redis import client as redis_client
from confsvc.store.redis import durability
from tests.integration.redis_private import PrivateRedis

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BID = "b-log"


def sample(i: int, site: str = "YB-VY", conn: str = "c1") -> QualitySample:
    return QualitySample(site=site, conn=conn, node="n1", loss=0.0, rtt_ms=50 + i % 7, bitrate_in=300, bitrate_out=800)


async def stream_ids(r, bid: str = BID) -> list[str]:
    return [event_id(f["e"]) for _, f in await r.xrange(keys.attendance_log(bid))]


@pytest.fixture
def private():
    pr = PrivateRedis()
    pr.start()
    yield pr
    pr.stop()


async def test_append_returns_a_stable_id_once_in_redis(redis, tmp_path):
    log = AttendanceLog.for_store(redis, tmp_path / "spool.log", node="n1")
    await log.start()
    try:
        ids = [await log.append(BID, Joined(site="YB", conn="p1"))]
        futs = [log.submit(BID, sample(i)) for i in range(50)]
        ids += await asyncio.gather(*futs)
        # acknowledged means readable from Redis now
        assert await stream_ids(redis) == ids
        assert ids[0] == f"{log.writer}:1" and ids[-1] == f"{log.writer}:51"
        entry = (await redis.xrange(keys.attendance_log(BID), count=1))[0][1]
        first = decode(entry["e"])
        assert isinstance(first, Joined) and first.site == "YB" and first.node == "n1" and first.id == ids[0]
        # the log reports the server's durability as it is (a test Redis may run without AOF)
        assert log.state["durable"] is (await durability(redis)).durable and log.state["redis"] == "up"
    finally:
        await log.close()


async def test_writing_a_batch_again_adds_nothing(redis, tmp_path):
    # the reply of a pipeline is lost (Redis died after writing): the same events are sent again
    log = AttendanceLog.for_store(redis, tmp_path / "spool.log", node="n1")
    await log.start()
    try:
        packed = [replace(sample(i), id=f"w9:{i + 1}").encode() for i in range(10)]
        await log._write([(BID, e) for e in packed[:6]])
        await log._write([(BID, e) for e in packed])
        await log._write([(BID, e) for e in packed[3:]])
        assert await stream_ids(redis) == [f"w9:{i + 1}" for i in range(10)]
    finally:
        await log.close()


async def test_bad_event_is_refused_before_the_log(redis, tmp_path):
    from confsvc.attendance.events import EventError

    log = AttendanceLog.for_store(redis, tmp_path / "spool.log")
    await log.start()
    try:
        with pytest.raises(EventError):
            log.submit(BID, QualitySample(site="YB", conn="c", loss=2.0))
        assert await redis.xlen(keys.attendance_log(BID)) == 0
    finally:
        await log.close()


async def test_redis_killed_events_spooled_then_flushed_in_order(private, tmp_path):
    r = redis_client(private.url)
    log = AttendanceLog.for_store(r, tmp_path / "spool.log", node="n1", retry_min=0.05, retry_max=0.2)
    await log.start()
    try:
        acked = [await log.append(BID, sample(i)) for i in range(20)]
        private.kill9()
        # Redis is gone: appends still return, once the events are fsynced in the spool
        for i in range(20, 50):
            acked.append(await log.append(BID, sample(i)))
        assert log.state["redis"] == "down"
        assert log.spool.pending == 30 and log.state["spooled"] == 30
        private.start()  # reloads its AOF
        assert await log.wait_idle(10)
        assert await stream_ids(r) == acked  # nothing lost, nothing doubled, in order
        assert log.spool.pending == 0 and log.spool.path.stat().st_size == 0
        assert log.state["redis"] == "up"
    finally:
        await log.close()
        await r.aclose()


async def test_redis_killed_under_a_steady_writer(private, tmp_path):
    """kill -9 lands at a random point of a pipelined batch: no acknowledged event lost, none twice."""
    r = redis_client(private.url)
    log = AttendanceLog.for_store(r, tmp_path / "spool.log", node="n1", retry_min=0.05, retry_max=0.2, batch_max=16)
    await log.start()
    acked: list[str] = []
    submitted: list[str] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            futs = [log.submit(BID, sample(i + k, site=f"S{k}", conn=f"c{k}")) for k in range(8)]
            i += 8
            acked.extend(await asyncio.gather(*futs))
            await asyncio.sleep(0.002)

    task = asyncio.create_task(writer())
    try:
        await asyncio.sleep(0.3)
        private.kill9()
        await asyncio.sleep(0.3)
        private.start()
        await asyncio.sleep(0.3)
        private.kill9()  # twice, for good measure
        await asyncio.sleep(0.2)
        private.start()
        await asyncio.sleep(0.2)
        stop.set()
        await task
        assert await log.wait_idle(10)
        ids = await stream_ids(r)
        assert len(ids) == len(set(ids)), "an event was written twice"
        assert ids == acked, "acknowledged events missing or out of order"
        submitted = [f"{log.writer}:{n}" for n in range(1, len(acked) + 1)]
        assert ids == submitted
        assert len(acked) > 100
        assert log.state["spooled_total"] > 0  # the kills did push events through the spool
    finally:
        stop.set()
        await log.close()
        await r.aclose()


async def test_spool_flush_cut_short_is_repeated_without_doubles(redis, tmp_path):
    path = tmp_path / "spool.log"
    spool = Spool(path)
    spool.open()
    events = [(BID, replace(sample(i), id=f"old.w:{i + 1}").encode()) for i in range(30)]
    spool.append(events)
    spool.close()
    # a previous process flushed the first 12, then died before it could record how far it got
    log = AttendanceLog.for_store(redis, tmp_path / "other.log")
    await log.start()
    await log._write(events[:12])
    await log.close()
    log = AttendanceLog.for_store(redis, path, node="n2")
    await log.start()
    try:
        assert await log.wait_idle(10)
        assert await stream_ids(redis) == [f"old.w:{i + 1}" for i in range(30)]
        # new events come after the spooled ones
        new_id = await log.append(BID, Joined(site="YB", conn="z"))
        assert (await stream_ids(redis))[-1] == new_id
    finally:
        await log.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from confsvc.attendance.events import Joined, QualitySample
    from confsvc.attendance.log import AttendanceLog
    from confsvc.store.redis import client

    async def main(url, spool, bid):
        log = AttendanceLog.for_store(client(url), Path(spool), node="crashy", retry_min=0.05, retry_max=0.2)
        await log.start()
        print("started", log.writer, log.spool.pending, flush=True)
        await log.append(bid, Joined(site="YB", conn="k1"))
        i = 0
        while True:
            futs = [log.submit(bid, QualitySample(site="YB", conn="k1", loss=0.01, rtt_ms=i % 300)) for _ in range(4)]
            for f in futs:
                print("ack", await f, flush=True)
            i += 1
            if i % 10 == 0 and log.spool.pending == 0 and sys.argv[4] == "flush-only":
                print("flushed", flush=True)
                await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:4]))
    """
)


def _spawn(tmp_path: Path, url: str, spool: Path, mode: str = "write") -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(script), url, str(spool), BID, mode], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


async def _read_acks(proc: subprocess.Popen[str], until: int) -> tuple[list[str], str]:
    acks: list[str] = []
    first = ""

    def read() -> None:
        nonlocal first
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("started"):
                first = line.strip()
            elif line.startswith("ack "):
                acks.append(line.split()[1])
                if len(acks) >= until:
                    return
            elif line.startswith("flushed"):
                return

    await asyncio.wait_for(asyncio.to_thread(read), 30)
    return acks, first


async def test_writer_killed_mid_stream_keeps_every_acknowledged_event(private, tmp_path):
    r = redis_client(private.url)
    spool = tmp_path / "node" / "spool.log"
    try:
        # 1. Redis up: kill -9 the writer mid-stream
        proc = _spawn(tmp_path, private.url, spool)
        acks, _ = await _read_acks(proc, 300)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ids = await stream_ids(r)
        assert set(acks) <= set(ids) and len(ids) == len(set(ids))
        # the dead node wrote no 'left': the report shows the drop once its connection has gone quiet
        now = datetime.now(UTC)
        b = BriefingFacts(BID, "x", now - timedelta(minutes=10), now + timedelta(minutes=50), ("YB",), "o")
        acc = Accumulator(b)
        for _, f in await r.xrange(keys.attendance_log(BID)):
            acc.add(f["e"])
        row = build_report(acc, now + timedelta(minutes=2)).row("YB")
        assert row is not None and row.drops == 1 and row.segments[-1].reason == "lost"
        assert row.status is Status.PRESENT and not row.connected_now
        # 2. Redis down: the writer spools, and is killed -9 too
        private.kill9()
        proc = _spawn(tmp_path, private.url, spool)
        spooled, _ = await _read_acks(proc, 100)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        private.start()
        # 3. the node restarts: the new writer flushes what the dead one spooled, then goes on
        proc = _spawn(tmp_path, private.url, spool, "flush-only")
        more, started = await _read_acks(proc, 10**9)
        assert int(started.split()[2]) >= len(spooled)  # it found them in the spool
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ids = await stream_ids(r)
        assert len(ids) == len(set(ids)), "an event was written twice"
        missing = set(acks + spooled + more) - set(ids)
        assert not missing, f"{len(missing)} acknowledged events missing"
    finally:
        await r.aclose()


async def test_the_report_shows_the_drop_of_a_crashed_node(redis, tmp_path):
    """A node dies mid-briefing (no 'left' written): its connections end at their last sign of life."""
    t0 = datetime.now(UTC) - timedelta(hours=3)
    b = BriefingFacts("b-crash", "x", t0, t0 + timedelta(hours=2), ("YB", "YB-VY"), "o")
    log = AttendanceLog.for_store(redis, tmp_path / "spool.log", node="n1")
    await log.start()
    try:
        await log.append(b.id, Joined(site="YB", conn="a", at=t0))
        for i in range(1, 60):
            await log.append(b.id, QualitySample(site="YB", conn="a", at=t0 + timedelta(seconds=10 * i), rtt_ms=40))
        # the site's page reconnects to another node, which writes normally
        await log.append(b.id, Joined(site="YB", conn="b", at=t0 + timedelta(minutes=11)))
        await log.append(b.id, Left(site="YB", conn="b", at=t0 + timedelta(hours=2), reason="ended"))
    finally:
        await log.close()
    acc = Accumulator(b)
    for _, f in await redis.xrange(keys.attendance_log(b.id)):
        acc.add(f["e"])
    row = build_report(acc, datetime.now(UTC)).row("YB")
    assert row is not None and row.drops == 1
    assert [s.reason for s in row.segments] == ["lost", "ended"]
    assert row.connected_s == 2 * 3600 - (60 + 10)  # away from the last sample (9:50) to the rejoin (11:00)


async def test_a_non_durable_redis_is_reported(tmp_path, caplog):
    pr = PrivateRedis(appendfsync="everysec")
    pr.start()
    r = redis_client(pr.url)
    log = AttendanceLog.for_store(r, tmp_path / "spool.log")
    try:
        with caplog.at_level("WARNING"):
            await log.start()
        assert log.state["durable"] is False
        assert any("appendfsync=everysec" in rec.getMessage() for rec in caplog.records)
    finally:
        await log.close()
        await r.aclose()
        pr.stop()


async def test_a_full_spool_refuses_samples_before_joins(private, tmp_path):
    from confsvc.attendance.spool import SpoolFull

    r = redis_client(private.url)
    private.kill9()
    log = AttendanceLog.for_store(r, tmp_path / "spool.log", spool_max_bytes=4000, retry_min=30, retry_max=30)
    await log.start()
    try:
        n = 0
        with pytest.raises(SpoolFull):
            while n < 1000:
                await log.append(BID, sample(n))
                n += 1
        assert 10 < n < 1000
        await log.append(BID, Left(site="YB-VY", conn="c1", reason="dropped"))  # still kept
        assert log.state["refused"] == 1 and log.spool.pending == n + 1
    finally:
        await log.close(grace=0.5)
        await r.aclose()
