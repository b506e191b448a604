"""Attendance: a durable log of who was there, and the reports admins hand in.

Modules
-------
- ``events``    the event types and their packed stream form (pure)
- ``log``       ``AttendanceLog``: the writer used by signaling and media (Redis Stream + local spool)
- ``spool``     the bounded append-only file that holds events while Redis is unreachable
- ``briefing``  ``BriefingInfo``/``BriefingSource``: what attendance needs from scheduling
- ``rollups``   pure rollups: per-site rows, summary, per-site period (no I/O)
- ``service``   ``AttendanceService``: reads a log in chunks, builds and caches reports, absence reasons
- ``exports``   CSV (UTF-8 + BOM) and XLSX with Vietnamese headers
- ``timeline``  the server-side SVG timeline

``attendance`` imports ``store``, ``config`` and the pure ``directory.model``; never ``media``,
``http`` or ``signaling``.

Writer API (for signaling and media)
------------------------------------
The node has one log, started with the app (``confsvc.http.attendance.ATTENDANCE_LOG``)::

    from confsvc.attendance.events import (Joined, Left, LeaveReason, Reconnected, MediaToggled,
                                           QualitySample, RollCallAnswer, FloorGiven, FloorTaken)

    log = app[ATTENDANCE_LOG]
    await log.append(briefing_id, Joined(site=code, conn=conn_id))            # a site's page connected
    await log.append(briefing_id, Reconnected(site=code, conn=new, previous=old))  # came back after a drop
    await log.append(briefing_id, Left(site=code, conn=conn_id, reason=LeaveReason.DROPPED))
    # reasons: LEFT (closed / pressed leave), DROPPED (link lost), REMOVED (by the chair), ENDED (briefing ended)
    log.submit(briefing_id, QualitySample(site=code, conn=conn_id, bitrate_in=kbps_in, bitrate_out=kbps_out,
                                          loss=fraction, rtt_ms=rtt, layer="m"))   # every 10 s, no await
    await log.append(briefing_id, MediaToggled(site=code, conn=conn_id, medium="mic", on=True, by="chair"))
    await log.append(briefing_id, RollCallAnswer(site=code, conn=conn_id, roll_call=rc_id, answer="present"))
    await log.append(briefing_id, FloorGiven(site=code, conn=conn_id, by="chair"))

Every event carries ``site``, ``conn``, ``node`` (filled with the log's node id when empty) and
``at`` (UTC; defaults to now: pass the time the thing happened when it is known). ``append``
returns the event's stable id once the event is durable: in Redis (AOF ``appendfsync always``:
the reply comes after the fsync), or, while Redis is unreachable, fsynced in the node's spool,
from which it is flushed in order when Redis returns. ``submit`` is the same without waiting: it
returns a future (quality samples should not hold up the signaling loop). A bad event raises
``EventError`` at once; a full spool raises ``SpoolFull`` (samples first, at 90 %). Events of one
log are written in submission order. Media never waits on Redis: the log has its own connection
with short timeouts, and an outage only moves events to the spool.

Rules of the reports are in ``rollups``' docstring and on the report page's legend.
"""
