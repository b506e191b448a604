import json
import re
from pathlib import Path

import pytest

from confsvc.signaling.protocol import (
    CLIENT_TYPES,
    MAX_MESSAGE_BYTES,
    SERVER_TYPES,
    ProtocolError,
    RateLimiter,
    parse,
)

DOC = (Path(__file__).resolve().parents[3] / "docs" / "protocol.md").read_text(encoding="utf-8")


def code_of(raw):
    with pytest.raises(ProtocolError) as err:
        parse(raw)
    return err.value.code, err.value.detail


def test_valid_messages_parse():
    m = parse('{"type": "give_floor", "site": "YB-MCC"}')
    assert m.type == "give_floor" and m["site"] == "YB-MCC" and m.schema.who == "chair"
    assert parse('{"type": "ping"}').get("t") is None
    assert parse('{"type": "pin_quality", "site": "X", "layer": null}').get("layer") is None
    assert parse('{"type": "quality", "loss": 0.02, "rtt_ms": 80}')["loss"] == 0.02


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        ("not json", "bad_json", "not valid JSON"),
        ("[1, 2]", "bad_message", "JSON object"),
        ('{"site": "x"}', "bad_message", "'type'"),
        ('{"type": 5}', "bad_message", "'type'"),
        ('{"type": "fly"}', "unknown_type", "'fly'"),
        ('{"type": "give_floor"}', "missing_field", "'site' is required"),
        ('{"type": "give_floor", "site": 3}', "bad_field", "'site' must be a string"),
        ('{"type": "give_floor", "site": ""}', "bad_field", "may not be empty"),
        ('{"type": "raise_hand", "raised": 1}', "bad_field", "true or false"),
        ('{"type": "lock", "locked": "yes"}', "bad_field", "true or false"),
        ('{"type": "grid_page", "page": -1}', "bad_field", "between 0 and 1000"),
        ('{"type": "grid_page", "page": 1.5}', "bad_field", "whole number"),
        ('{"type": "grid_page", "page": true}', "bad_field", "whole number"),
        ('{"type": "quality", "loss": 2}', "bad_field", "between 0 and 1"),
        ('{"type": "quality", "loss": NaN}', "bad_field", "finite"),
        ('{"type": "pin_quality", "site": "X", "layer": "ultra"}', "bad_field", "one of high"),
        ('{"type": "ping", "extra": 1}', "unknown_field", "'extra'"),
        ('{"type": "give_floor", "site": "' + "x" * 200 + '"}', "bad_field", "longer than"),
    ],
)
def test_each_problem_is_named(raw, code, words):
    got_code, detail = code_of(raw)
    assert got_code == code
    assert words in detail


def test_binary_and_oversize_frames():
    assert code_of(b'{"type":"ping"}')[0] == "binary"
    assert code_of('{"type": "ping", "t": "' + "x" * MAX_MESSAGE_BYTES + '"}')[0] == "too_large"


def test_error_message_shape():
    with pytest.raises(ProtocolError) as err:
        parse('{"type": "give_floor"}')
    msg = err.value.to_message()
    assert msg == {"type": "error", "code": "missing_field", "detail": "give_floor: the field 'site' is required", "ref": "give_floor"}
    json.dumps(msg)


def test_rate_limiter_allows_bursts_then_refuses_then_recovers():
    rl = RateLimiter(rate=20, burst=40)
    assert all(rl.allow(0.0) for _ in range(40))
    assert not rl.allow(0.0)
    assert rl.allow(0.05)  # one token back after 50 ms
    assert not rl.allow(0.05)
    assert all(rl.allow(10.0) for _ in range(40))


def test_every_message_type_is_documented():
    client_rows = set(re.findall(r"^\| `([a-z_]+)`(?: / `([a-z_]+)`)?", DOC, re.M))
    documented = {t for row in client_rows for t in row if t}
    missing = sorted(t for t in list(CLIENT_TYPES) + list(SERVER_TYPES) if t not in documented)
    assert not missing, f"not in docs/protocol.md: {missing}"
