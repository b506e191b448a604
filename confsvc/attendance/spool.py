"""The spool: a bounded, append-only local file of attendance events waiting for Redis.

While Redis is unreachable the log writes events here (and fsyncs) before acknowledging them;
when Redis returns they are flushed in order. One line per event::

    <crc32 of the JSON, 8 hex digits> TAB <JSON {"b": briefing id, "e": the packed event}> LF

A line torn by a crash was never acknowledged (the fsync comes before the acknowledgement): it is
cut off at the next open. How far the file has been flushed is kept in ``<spool>.offset``; a
flush that stopped half-way is simply repeated: the log's per-writer sequence numbers make a
second write of an event a no-op. When everything is flushed the file is emptied.

A spool file belongs to one process at a time (``flock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# quality samples may fill the spool up to this share; the rest is kept for joins, leaves, answers
SAMPLE_SHARE = 0.9


class SpoolError(RuntimeError):
    pass


class SpoolBusy(SpoolError):
    """Another process holds this spool file."""


class SpoolFull(SpoolError):
    """The spool reached its size limit: the event was not kept."""


@dataclass(frozen=True)
class SpooledEvent:
    briefing: str
    event: str  # packed (events.Event.encode())
    end: int  # file offset just after this event's line


def _line(briefing: str, event: str) -> bytes:
    body = json.dumps({"b": briefing, "e": event}, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x\t%s\n" % (zlib.crc32(body), body)


def _parse(line: bytes) -> tuple[str, str] | None:
    if len(line) < 10 or line[8:9] != b"\t" or not line.endswith(b"\n"):
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        doc = json.loads(body)
        return str(doc["b"]), str(doc["e"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class Spool:
    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(path)
        self.offset_path = self.path.with_name(self.path.name + ".offset")
        self.max_bytes = max_bytes
        self._fh: int | None = None
        self.size = 0
        self.offset = 0
        self.pending = 0
        self.corrupt = 0

    # -- life cycle -----------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusy(f"the attendance spool {self.path} is held by another process") from None
        self._fh = fd
        self.offset = self._read_offset()
        self.size = os.fstat(fd).st_size
        if self.offset > self.size:  # emptied, then a crash before the offset was rewritten
            self.offset = 0
        self._scan()
        if self.pending:
            log.warning("attendance spool %s holds %d events not yet in Redis: they will be flushed", self.path, self.pending)

    def close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            os.close(self._fh)
            self._fh = None

    def _read_offset(self) -> int:
        try:
            return max(0, int(self.offset_path.read_text().strip() or 0))
        except (OSError, ValueError):
            return 0

    def _write_offset(self, offset: int) -> None:
        tmp = self.offset_path.with_name(self.offset_path.name + ".tmp")
        tmp.write_text(str(offset))
        os.replace(tmp, self.offset_path)

    def _scan(self) -> None:
        """Count pending events; cut off a torn last line (never acknowledged)."""
        assert self._fh is not None
        pending = 0
        pos = self.offset
        good_end = self.offset
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            for line in fh:
                pos += len(line)
                if not line.endswith(b"\n"):
                    break  # torn tail
                if _parse(line) is None:
                    self.corrupt += 1
                    log.error("attendance spool %s: a damaged line at offset %d is skipped", self.path, pos - len(line))
                else:
                    pending += 1
                good_end = pos
        if good_end < self.size:
            log.warning("attendance spool %s: cutting a torn last line (%d bytes)", self.path, self.size - good_end)
            os.ftruncate(self._fh, good_end)
            os.fsync(self._fh)
            self.size = good_end
        self.pending = pending

    # -- writing --------------------------------------------------------------------------------
    def room_for(self, nbytes: int, sample: bool) -> bool:
        limit = self.max_bytes * (SAMPLE_SHARE if sample else 1.0)
        return self.size + nbytes <= limit

    def append(self, events: list[tuple[str, str]], samples: list[bool] | None = None) -> list[bool]:
        """Write and fsync events; returns, per event, whether it was kept (False: the spool is full)."""
        if self._fh is None:
            raise SpoolError("the spool is not open")
        kept: list[bool] = []
        chunks: list[bytes] = []
        size = self.size
        for i, (briefing, event) in enumerate(events):
            line = _line(briefing, event)
            sample = bool(samples and samples[i])
            limit = self.max_bytes * (SAMPLE_SHARE if sample else 1.0)
            if size + len(line) > limit:
                kept.append(False)
                continue
            chunks.append(line)
            size += len(line)
            kept.append(True)
        if chunks:
            data = b"".join(chunks)
            view = memoryview(data)
            while view:
                n = os.write(self._fh, view)
                view = view[n:]
            os.fsync(self._fh)
            self.size = size
            self.pending += len(chunks)
        return kept

    # -- flushing -------------------------------------------------------------------------------
    def read(self, max_events: int) -> list[SpooledEvent]:
        """Up to ``max_events`` pending events, oldest first (damaged lines skipped)."""
        out: list[SpooledEvent] = []
        if not self.pending:
            return out
        pos = self.offset
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            for line in fh:
                pos += len(line)
                if pos > self.size:
                    break
                parsed = _parse(line)
                if parsed is None:
                    continue
                out.append(SpooledEvent(parsed[0], parsed[1], pos))
                if len(out) >= max_events:
                    break
        return out

    def advance(self, end: int, count: int) -> None:
        """``count`` events up to file offset ``end`` are in Redis."""
        self.offset = end
        self.pending = max(0, self.pending - count)
        if self.pending == 0 and self._fh is not None:
            # everything flushed: empty the file (offset first: a crash in between re-flushes, harmlessly)
            self._write_offset(0)
            os.ftruncate(self._fh, 0)
            os.fsync(self._fh)
            self.size = 0
            self.offset = 0
        else:
            self._write_offset(end)
