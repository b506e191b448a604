"""iCalendar output (RFC 5545) with the ``icalendar`` library. Pure logic.

One briefing is one VEVENT with a stable UID (``<id>@<host>``): a series carries its RRULE,
cancelled occurrences as EXDATE, moved ones as extra VEVENTs with RECURRENCE-ID. SEQUENCE is the
briefing's ``seq`` (raised on each change). Times are in the province's zone, with its VTIMEZONE.
A cancelled briefing's file uses METHOD:CANCEL; a site's feed is METHOD:PUBLISH, listing
cancelled ones with STATUS:CANCELLED.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event

from confsvc.scheduling.model import Briefing, Occurrence, State, occurrence_id
from confsvc.scheduling.recurrence import original_starts

PRODID = "-//confsvc//briefings//VI"


def uid(briefing_id: str, domain: str) -> str:
    return f"{briefing_id}@{domain}"


def _calendar(name: str, zone: ZoneInfo, method: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    cal.add("x-wr-calname", name)
    cal.add("x-wr-timezone", zone.key)
    return cal


def _event(b: Briefing, zone: ZoneInfo, domain: str, url: str, start: datetime, end: datetime, stamp: datetime) -> Event:
    ev = Event()
    ev.add("uid", uid(b.id, domain))
    ev.add("dtstamp", stamp)
    ev.add("sequence", b.seq)
    ev.add("summary", b.title)
    description = b.agenda
    if url:
        description = f"{description}\n\n{url}" if description else url
        ev.add("url", url)
    if description:
        ev.add("description", description)
    ev.add("dtstart", start.astimezone(zone))
    ev.add("dtend", end.astimezone(zone))
    ev.add("organizer", f"mailto:{b.organizer}@{domain}", parameters={"CN": b.organizer})
    return ev


def briefing_events(
    b: Briefing, occurrences: Iterable[Occurrence], zone: ZoneInfo, domain: str, url: str = ""
) -> list[Event]:
    """The VEVENTs of one briefing (the series, its moved occurrences, its history)."""
    stamp = b.updated or b.created or b.start
    occs = {o.id: o for o in occurrences}
    main = _event(b, zone, domain, url, b.start, b.end, stamp)
    main.add("status", "CANCELLED" if b.cancelled else "CONFIRMED")
    events = [main]
    if not b.rrule:
        return events
    main.add("rrule", _recur(b.rrule))
    rule_ids = set()
    exdates = []
    for original in original_starts(b, zone):
        oid = occurrence_id(b.id, original)
        rule_ids.add(oid)
        occ = occs.get(oid)
        ov = b.overrides.get(oid)
        cancelled = (ov is not None and ov.cancelled) or (occ is not None and occ.state is State.CANCELLED and not b.cancelled)
        if cancelled:
            exdates.append(original.astimezone(zone))
        elif occ is not None and (occ.moved or occ.starts_at != original):
            ev = _event(b, zone, domain, url, occ.starts_at, occ.ends_at, stamp)
            ev.add("recurrence-id", original.astimezone(zone))
            ev.add("status", "CANCELLED" if b.cancelled else "CONFIRMED")
            events.append(ev)
    if exdates:
        main.add("exdate", exdates)
    # occurrences kept from before an edit of the series (no longer instances of its rule)
    for occ in sorted(occs.values(), key=lambda o: o.starts_at):
        if occ.id in rule_ids or not occ.frozen:
            continue
        ev = _event(b, zone, domain, url, occ.starts_at, occ.ends_at, stamp)
        ev["uid"] = uid(occ.id, domain)
        ev.add("status", "CANCELLED" if occ.state is State.CANCELLED else "CONFIRMED")
        events.append(ev)
    return events


def _recur(rule: str) -> dict[str, object]:
    from icalendar.prop import vRecur

    return vRecur.from_ical(rule)


def briefing_ics(b: Briefing, occurrences: Iterable[Occurrence], zone: ZoneInfo, domain: str, url: str = "") -> bytes:
    """The file of one briefing: METHOD:CANCEL once it is cancelled, else METHOD:PUBLISH."""
    cal = _calendar(b.title, zone, "CANCEL" if b.cancelled else "PUBLISH")
    for ev in briefing_events(b, occurrences, zone, domain, url):
        cal.add_component(ev)
    cal.add_missing_timezones()
    return cal.to_ical()


def occurrence_ics(b: Briefing, occ: Occurrence, zone: ZoneInfo, domain: str, url: str = "") -> bytes:
    """The file of one occurrence: a RECURRENCE-ID event of the series (METHOD:CANCEL when cancelled)."""
    cancelled = occ.state is State.CANCELLED
    cal = _calendar(b.title, zone, "CANCEL" if cancelled else "PUBLISH")
    ev = _event(b, zone, domain, url, occ.starts_at, occ.ends_at, b.updated or b.start)
    if b.rrule:
        ev.add("recurrence-id", occ.original_start.astimezone(zone))
    ev.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    cal.add_component(ev)
    cal.add_missing_timezones()
    return cal.to_ical()


def feed_ics(
    name: str, items: Iterable[tuple[Briefing, list[Occurrence], str]], zone: ZoneInfo, domain: str
) -> bytes:
    """A site's subscription feed: every briefing it is invited to or chairs (METHOD:PUBLISH)."""
    cal = _calendar(name, zone, "PUBLISH")
    for b, occs, url in items:
        for ev in briefing_events(b, occs, zone, domain, url):
            cal.add_component(ev)
    cal.add_missing_timezones()
    return cal.to_ical()
