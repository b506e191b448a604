"""The signaling protocol: message types and their validation (pure, no I/O).

Every message is a JSON object ``{"type": ..., ...}`` of at most ``MAX_MESSAGE_BYTES``. Each type
has a schema: its fields, their JSON types and bounds. ``parse()`` returns a validated ``Message``
or raises ``ProtocolError`` naming the problem, which the session sends back as an ``error``
message; nothing else happens and the connection stays usable. ``docs/protocol.md`` documents
the same schemas for client writers (a test checks that every type is documented).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_BYTES = 64 * 1024
MAX_SDP = 48 * 1024
MAX_ID = 100


class ProtocolError(ValueError):
    """A message that breaks the protocol; ``code`` is machine-readable, ``detail`` human."""

    def __init__(self, code: str, detail: str, ref: Any = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.ref = ref

    def to_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "error", "code": self.code, "detail": self.detail}
        if self.ref is not None:
            msg["ref"] = self.ref
        return msg


@dataclass(frozen=True)
class F:
    """A field: JSON type, required or not, bounds."""

    kind: str  # "str", "int", "num", "bool", "dict", "list", "str?" (string or null)
    required: bool = True
    max_len: int = MAX_ID
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()


# who may send a type: "site" (a site's page), "chair" (the chair's control page), "any"
@dataclass(frozen=True)
class Schema:
    who: str
    fields: Mapping[str, F] = field(default_factory=dict)
    doc: str = ""


SDP = F("str", max_len=MAX_SDP)
SITE = F("str")
LAYER = ("high", "mid", "low", "off")

CLIENT_TYPES: dict[str, Schema] = {
    # --- any participant ---
    "ping": Schema("any", {"t": F("num", required=False)}, "keep-alive and round-trip probe; answered with pong"),
    "publish": Schema("any", {"sdp": SDP, "layers": F("list", required=False, max_len=3)},
                      "offer of the publish connection (camera, microphone); answered with publish_answer"),
    "subscribe": Schema("any", {}, "ask for the subscribe connection; answered with subscribe_offer"),
    "subscribe_answer": Schema("any", {"sdp": SDP}, "answer to subscribe_offer"),
    "media_state": Schema("any", {"mic": F("bool", required=False), "cam": F("bool", required=False)},
                          "the page's own microphone/camera state (a site may not open its microphone unless allowed)"),
    "raise_hand": Schema("site", {"raised": F("bool")}, "raise or lower this site's hand"),
    "rollcall_answer": Schema("site", {"rollcall": F("str")}, "answer 'Có mặt' to the running roll call"),
    "low_data": Schema("site", {"on": F("bool")}, "cap what this site receives (the stage's lowest layer)"),
    "quality": Schema("any", {
        "rtt_ms": F("num", required=False, min=0, max=60000),
        "loss": F("num", required=False, min=0, max=1),
        "bitrate_in": F("num", required=False, min=0, max=1e6),
        "bitrate_out": F("num", required=False, min=0, max=1e6),
        "fps": F("num", required=False, min=0, max=240),
    }, "the page's own view of its link (getStats), every few seconds"),
    "leave": Schema("any", {}, "leave the briefing (the page closes)"),
    # --- chair only ---
    "start": Schema("chair", {}, "start the briefing now (from the lobby)"),
    "end": Schema("chair", {}, "end the briefing for everyone"),
    "give_floor": Schema("chair", {"site": SITE}, "give the floor: every stage shows that site, its microphone may open"),
    "take_floor": Schema("chair", {}, "take the floor back: the stage shows the chair"),
    "mute": Schema("chair", {"site": SITE}, "mute one site's microphone"),
    "mute_all": Schema("chair", {}, "mute every site but the chair"),
    "ask_unmute": Schema("chair", {"site": SITE}, "ask a site to open its microphone (it decides)"),
    "lower_hand": Schema("chair", {"site": SITE}, "lower a site's raised hand"),
    "remove": Schema("chair", {"site": SITE}, "remove a site from the briefing (it may not rejoin this briefing)"),
    "lock": Schema("chair", {"locked": F("bool")}, "lock the room: no new site may join"),
    "open_mics": Schema("chair", {"on": F("bool")}, "allow every site to open its microphone"),
    "rollcall_start": Schema("chair", {}, "start a roll call"),
    "rollcall_end": Schema("chair", {}, "close the running roll call"),
    "pin_quality": Schema("chair", {"site": SITE, "layer": F("str?", required=False, choices=LAYER)},
                          "pin what a site receives to a layer (null: automatic)"),
    "grid_page": Schema("chair", {"page": F("int", min=0, max=1000), "size": F("int", required=False, min=1, max=16)},
                        "which page of site thumbnails the chair's grid shows"),
}

SERVER_TYPES = {
    "welcome": "first message: who you are, the briefing, ICE servers, and the whole room state",
    "state": "the whole room state (after a reconnect, or when much changed)",
    "site": "one site's entry changed (state, link quality, microphone, camera, hand)",
    "sites": "many sites' entries changed at once (the quality round every 10 s)",
    "rollcall": "a roll call started: answer with rollcall_answer",
    "room": "room-wide fields changed (phase, floor, locked, open_mics, rollcall)",
    "publish_answer": "the node's answer to publish",
    "subscribe_offer": "the node's offer of the subscribe connection, with which mid carries which slot",
    "slots": "what each of your slots now shows (stage, audio0-2, grid0-n), without renegotiation",
    "speaker": "the dominant speaker changed",
    "ask_unmute": "the chair asks this site to open its microphone",
    "mute": "the chair muted this site: close the microphone",
    "removed": "the chair removed this site; the page stops reconnecting",
    "ended": "the briefing ended",
    "pong": "answer to ping (echoes t)",
    "error": "a message was refused: code, detail, and ref (the offending type when known)",
}

_JSON_TYPES = {
    "str": (str,),
    "int": (int,),
    "num": (int, float),
    "bool": (bool,),
    "dict": (dict,),
    "list": (list,),
}


@dataclass(frozen=True)
class Message:
    type: str
    data: Mapping[str, Any]
    schema: Schema

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def parse(raw: str | bytes) -> Message:
    """Decode and validate one client message; ProtocolError otherwise."""
    if isinstance(raw, (bytes, bytearray)):
        raise ProtocolError("binary", "binary frames are not part of the protocol: send JSON text")
    if len(raw) > MAX_MESSAGE_BYTES:  # characters; bytes checked by the transport's max_msg_size
        raise ProtocolError("too_large", f"the message is over {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}") from None
    return validate(obj)


def validate(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise ProtocolError("bad_message", "a message must be a JSON object with a 'type'")
    mtype = obj.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError("bad_message", "the field 'type' is missing or not a string")
    schema = CLIENT_TYPES.get(mtype)
    if schema is None:
        shown = mtype if len(mtype) <= 40 else mtype[:40] + "…"
        raise ProtocolError("unknown_type", f"unknown message type {shown!r}")
    data: dict[str, Any] = {}
    for name, spec in schema.fields.items():
        if name not in obj or (obj[name] is None and not spec.kind.endswith("?")):
            if spec.required:
                raise ProtocolError("missing_field", f"{mtype}: the field {name!r} is required", ref=mtype)
            continue
        data[name] = _check(mtype, name, spec, obj[name])
    extra = [k for k in obj if k != "type" and k not in schema.fields and k != "id"]
    if extra:
        raise ProtocolError("unknown_field", f"{mtype}: unknown field {sorted(extra)[0]!r}", ref=mtype)
    return Message(mtype, data, schema)


def _check(mtype: str, name: str, spec: F, value: Any) -> Any:
    kind = spec.kind.rstrip("?")
    if value is None and spec.kind.endswith("?"):
        return None
    allowed = _JSON_TYPES[kind]
    if not isinstance(value, allowed) or (kind != "bool" and isinstance(value, bool)):
        raise ProtocolError("bad_field", f"{mtype}: the field {name!r} must be {_KIND_WORDS[kind]}", ref=mtype)
    if kind == "num" and value != value:  # NaN (json.loads accepts it)
        raise ProtocolError("bad_field", f"{mtype}: the field {name!r} must be a finite number", ref=mtype)
    if kind in ("str", "list") and len(value) > spec.max_len:
        raise ProtocolError("bad_field", f"{mtype}: the field {name!r} is longer than {spec.max_len}", ref=mtype)
    if kind == "str" and not value and spec.required:
        raise ProtocolError("bad_field", f"{mtype}: the field {name!r} may not be empty", ref=mtype)
    if spec.choices and value not in spec.choices:
        raise ProtocolError("bad_field", f"{mtype}: the field {name!r} must be one of {', '.join(spec.choices)}", ref=mtype)
    if kind in ("int", "num"):
        if spec.min is not None and value < spec.min or spec.max is not None and value > spec.max:
            raise ProtocolError("bad_field", f"{mtype}: the field {name!r} must be between {spec.min:g} and {spec.max:g}", ref=mtype)
    return value


_KIND_WORDS = {"str": "a string", "int": "a whole number", "num": "a number", "bool": "true or false", "dict": "an object", "list": "a list"}


class RateLimiter:
    """Token bucket per connection: ``rate`` messages a second, bursts up to ``burst``."""

    def __init__(self, rate: float = 20.0, burst: float = 40.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last: float | None = None

    def allow(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
