"""Every Redis key name confsvc uses. Nothing else in the code spells a key.

Prefix ``cs:`` keeps confsvc's keys apart from anything else in a shared Redis.
Times stored in Redis are UTC (ISO 8601 strings or epoch seconds, as each key says).
"""

from __future__ import annotations

PREFIX = "cs:"

# --- store meta -------------------------------------------------------------------------------
SCHEMA_VERSION = PREFIX + "schema"  # string: the data layout version
BOOTSTRAP_LOCK = PREFIX + "lock:bootstrap"  # string with TTL: first-start work runs once

# --- directory --------------------------------------------------------------------------------
SITES = PREFIX + "sites"  # hash: code -> JSON of the site (code, name, kind, parent, token_hash...)
SITES_VERSION = PREFIX + "sites:version"  # integer, raised on every import


def site_token(token_hash: str) -> str:
    """string: site code, for a site join token's SHA-256 hex digest."""
    return f"{PREFIX}sitetoken:{token_hash}"


# --- accounts ---------------------------------------------------------------------------------
USERS = PREFIX + "users"  # hash: username -> JSON of the account (role, password hash, ...)


def api_token(token_hash: str) -> str:
    """hash: username, created, label; for an API token's SHA-256 hex digest."""
    return f"{PREFIX}apitoken:{token_hash}"


def user_api_tokens(username: str) -> str:
    """set: token hashes of a user's API tokens."""
    return f"{PREFIX}user:{username}:apitokens"


# Web sessions: aiohttp-session's RedisStorage writes "<cookie name>_<session id>".
SESSION_COOKIE = "confsvc_session"


def web_session(session_id: str) -> str:
    return f"{SESSION_COOKIE}_{session_id}"


# --- login throttling -------------------------------------------------------------------------
def login_failures(username: str) -> str:
    """integer with TTL: failed logins of an account in the current window."""
    return f"{PREFIX}loginfail:{username}"

# --- site join links ------------------------------------------------------------------------
SITE_LINKS = PREFIX + "sitelinks"  # hash: site code -> JSON {nonce, hash, rotated_at, revoked}
SECRET_FINGERPRINT = PREFIX + "secret:fingerprint"  # string: which node secret the site links derive from


# --- scheduling -------------------------------------------------------------------------------
# A briefing ("series": one-off or recurring) and its occurrences. Occurrence ids are
# "<briefing id>-<original start, UTC, YYYYMMDDTHHMMZ>" and never change when one is moved.
BRIEFING_IDS = PREFIX + "sched:ids"  # zset: briefing id -> epoch s of its last window end (listing by range)
SCHED_TIMELINE = PREFIX + "sched:timeline"  # zset: occurrence id -> epoch s of its next state change (the clock's queue)
SCHED_EVENTS = PREFIX + "sched:events"  # pub/sub channel: JSON {"type": "briefing.state", ...} on each state change
SCHED_CHANGES = PREFIX + "sched:changes"  # pub/sub channel: JSON {"type": "briefing.saved"|"briefing.cancelled", "id"}
CLOCK_LOCK = PREFIX + "sched:clock:lock"  # string with TTL: "<node>:<fence>" of the node running the lifecycle clock
CLOCK_FENCE = PREFIX + "sched:clock:fence"  # integer: raised on each acquisition of the clock lock (fencing token)


def briefing(briefing_id: str) -> str:
    """hash: json (the briefing, see scheduling.model.Briefing), seq (integer, raised on each change)."""
    return f"{PREFIX}sched:b:{briefing_id}"


def briefing_occurrences(briefing_id: str) -> str:
    """hash: occurrence id -> JSON of its state record (state, frozen window and invited sites, transitions)."""
    return f"{PREFIX}sched:b:{briefing_id}:occ"


def briefing_bookings(briefing_id: str) -> str:
    """set: "<site>\\t<booking member>" of every booking the briefing holds (to release them on change)."""
    return f"{PREFIX}sched:b:{briefing_id}:book"


def site_bookings(code: str) -> str:
    """zset: "<occurrence id>|<window end epoch s>" -> window start (lobby opening) epoch s, per site."""
    return f"{PREFIX}sched:site:{code}:book"


def site_briefings(code: str) -> str:
    """set: ids of the briefings a site is invited to or chairs (its calendar feed)."""
    return f"{PREFIX}sched:site:{code}:briefings"
# --- attendance -------------------------------------------------------------------------------
def attendance_log(briefing_id: str) -> str:
    """stream: the briefing's attendance events (confsvc.attendance.events), append-only."""
    return f"{PREFIX}att:{briefing_id}:log"


def attendance_writers(briefing_id: str) -> str:
    """hash: writer id -> last sequence number appended to the briefing's log (no event twice)."""
    return f"{PREFIX}att:{briefing_id}:writers"


def attendance_report_cache(briefing_id: str) -> str:
    """string: JSON of the finished briefing's report rows, with the log position it was made at."""
    return f"{PREFIX}att:{briefing_id}:report"

# --- node presence (attendance) --------------------------------------------------------------
def node_open_connections(node: str) -> str:
    """hash: connection id -> "<briefing id>|<site code>|<opened epoch ms>" of the pages on a node now."""
    return f"{PREFIX}node:{node}:conns"


def node_alive(node: str) -> str:
    """string: epoch ms of the node's last heartbeat (its last sign of life)."""
    return f"{PREFIX}node:{node}:alive"


# --- live rooms (signaling) ----------------------------------------------------------------------
def live_room(occurrence_id: str) -> str:
    """string with TTL: JSON of a live occurrence's room state that outlives the node (floor, lock,
    open microphones, roll call and answers, removed sites, hands, low data, pins, who joined)."""
    return f"{PREFIX}live:{occurrence_id}:room"
