"""Errors of the scheduling service. Each one knows its HTTP status, so the HTTP layer maps them in one place."""

from __future__ import annotations

from typing import Any


class SchedulingError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self, detail: str, field: str | None = None, *, key: str | None = None, params: dict[str, Any] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        # for pages: the catalogue key ("sched.err.<key>") and its values, to say it in the reader's language
        self.key = key
        self.params = params or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.field:
            out["field"] = self.field
        out.update(self.extra)
        return out


class BadRequest(SchedulingError):
    """The request is malformed: a missing field, a wrong JSON type, an unknown field."""

    status = 400
    code = "bad_request"


class Invalid(SchedulingError):
    """Well-formed but not acceptable: end before start, an unknown site, an invalid rule..."""

    status = 422
    code = "invalid"


class NotFound(SchedulingError):
    status = 404
    code = "not_found"


class Forbidden(SchedulingError):
    status = 403
    code = "forbidden"


class Stale(SchedulingError):
    """The briefing changed since the caller read it (its ``seq`` moved on)."""

    status = 409
    code = "stale"


class ReadOnly(SchedulingError):
    """An ended or cancelled briefing, or an occurrence in a state that forbids the change."""

    status = 409
    code = "read_only"


class BadTransition(SchedulingError):
    status = 409
    code = "bad_state"


class Conflict(SchedulingError):
    """Double booking: ``conflicts`` lists each clash (the other briefing, when, which sites)."""

    status = 409
    code = "conflict"

    def __init__(self, conflicts: list[dict[str, Any]]) -> None:
        n_sites = len({s for c in conflicts for s in c["sites"]})
        super().__init__(
            f"{len(conflicts)} booking conflict(s) over {n_sites} site(s): a site cannot be in two briefings at once",
            field="sites",
            key="conflict",
            params={"n": len(conflicts), "sites": n_sites},
            conflicts=conflicts,
        )
        self.conflicts = conflicts
