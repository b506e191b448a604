"""The spool file on its own: torn tails, the size bound, one owner."""

from __future__ import annotations

import pytest

from confsvc.attendance.events import event_id
from confsvc.attendance.spool import Spool, SpoolBusy


def ev(i: int, t: str = "quality") -> tuple[str, str]:
    return ("b1", f"{t}|w:{i}|YB|c1|n1|{1_700_000_000_000 + i}|300|800|0|50|m")


def test_append_read_advance_and_empty(tmp_path):
    s = Spool(tmp_path / "spool.log")
    s.open()
    assert s.append([ev(i) for i in range(10)]) == [True] * 10
    assert s.pending == 10
    got = s.read(4)
    assert [event_id(e.event) for e in got] == ["w:0", "w:1", "w:2", "w:3"]
    s.advance(got[-1].end, len(got))
    s.close()
    # a new owner starts where the old one stopped
    s = Spool(tmp_path / "spool.log")
    s.open()
    assert s.pending == 6 and event_id(s.read(1)[0].event) == "w:4"
    rest = s.read(100)
    s.advance(rest[-1].end, len(rest))
    assert s.pending == 0 and s.size == 0 and (tmp_path / "spool.log").stat().st_size == 0
    s.close()


def test_a_torn_last_line_is_cut_off(tmp_path):
    path = tmp_path / "spool.log"
    s = Spool(path)
    s.open()
    s.append([ev(1), ev(2)])
    s.close()
    with open(path, "ab") as fh:
        fh.write(b'0badc0de\t{"b":"b1","e":"quality|w:3|Y')  # a crash in the middle of a write
    s = Spool(path)
    s.open()
    assert s.pending == 2
    assert [event_id(e.event) for e in s.read(10)] == ["w:1", "w:2"]
    s.append([ev(4)])
    assert [event_id(e.event) for e in s.read(10)] == ["w:1", "w:2", "w:4"]
    s.close()


def test_a_damaged_line_is_skipped_not_fatal(tmp_path):
    path = tmp_path / "spool.log"
    s = Spool(path)
    s.open()
    s.append([ev(1), ev(2), ev(3)])
    s.close()
    data = path.read_bytes().split(b"\n")
    data[1] = data[1].replace(b"w:2", b"w:X")  # checksum no longer matches
    path.write_bytes(b"\n".join(data))
    s = Spool(path)
    s.open()
    assert s.corrupt == 1 and s.pending == 2
    assert [event_id(e.event) for e in s.read(10)] == ["w:1", "w:3"]
    s.close()


def test_bounded_samples_give_way_first(tmp_path):
    s = Spool(tmp_path / "spool.log", max_bytes=4000)
    s.open()
    s.append([ev(0)])
    one = s.size
    n = 0
    while s.append([ev(n + 1)], [True]) == [True]:
        n += 1
    assert s.size <= 0.9 * 4000 < s.size + one  # samples stop at 90 %
    kept = 0
    while s.append([ev(1000 + kept, "joined")], [False]) == [True]:
        kept += 1
    assert kept >= 2  # joins and leaves still fit in the last 10 %
    assert s.size <= 4000
    assert s.append([ev(5000, "left")]) == [False]
    s.close()


def test_one_owner_at_a_time(tmp_path):
    a = Spool(tmp_path / "spool.log")
    a.open()
    with pytest.raises(SpoolBusy):
        Spool(tmp_path / "spool.log").open()
    a.close()
    b = Spool(tmp_path / "spool.log")
    b.open()
    b.close()
