"""A hypothesis-driven fuzzer over the signaling WebSocket.

Random JSON, mutated valid messages, oversize and binary frames, sent by a site's page and by the
chair's: the server never fails (no ``internal`` error, no closed socket), answers every refused
message with an ``error``, and the connection stays usable (a ping after each is answered).
"""

from __future__ import annotations

import json
import random

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from confsvc.auth.sitelinks import SiteLinks
from confsvc.http.ws import HUB
from confsvc.signaling.protocol import CLIENT_TYPES, MAX_MESSAGE_BYTES, ProtocolError, parse
from tests.conftest import TEST_SECRET
from tests.integration.test_signaling_ws import make_briefing

pytestmark = pytest.mark.integration

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# media messages are left out of the random mix: a valid-looking SDP is exercised by the media tests
TYPES = [t for t in CLIENT_TYPES if t not in ("publish", "subscribe", "subscribe_answer", "leave", "end", "remove")]


@st.composite
def mutated(draw):
    """A message of a known type with fields dropped, retyped or added."""
    mtype = draw(st.sampled_from(TYPES))
    msg = {"type": mtype}
    for name in CLIENT_TYPES[mtype].fields:
        if draw(st.booleans()):
            msg[name] = draw(json_values)
    if draw(st.integers(0, 4)) == 0:
        msg[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    return json.dumps(msg)


frames = st.one_of(
    mutated(),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=40),
    st.sampled_from([
        "x" * (MAX_MESSAGE_BYTES + 10),
        '{"type": "' + "t" * 5000 + '"}',
        "[" * 5000 + "]" * 5000,
        '{"type": "ping", "t": 1e999}',
        '{"type": null}',
        "",
    ]),
)


def collect(strategy, n):
    out = []

    @settings(max_examples=n, database=None, derandomize=True, suppress_health_check=list(HealthCheck), deadline=None)
    @given(strategy)
    def run(frame):
        out.append(frame)

    run()
    return out


async def _fuzz(ws, sample):
    answered = 0
    for i, frame in enumerate(sample):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
            expect_error = True
        else:
            await ws.send_str(frame)
            try:
                parse(frame)
                expect_error = False
            except ProtocolError:
                expect_error = True
        await ws.send_str(json.dumps({"type": "ping", "t": i}))
        replies = []
        while True:
            raw = await ws.receive(timeout=10)
            assert raw.type == aiohttp.WSMsgType.TEXT, f"socket ended after {frame!r:.200}: {raw.type}"
            m = json.loads(raw.data)
            if m["type"] == "pong" and m.get("t") == i:
                break
            replies.append(m)
        codes = [m.get("code") for m in replies if m["type"] == "error"]
        assert "internal" not in codes, (frame, replies)
        if expect_error:
            assert codes, f"no error for {frame!r:.200}"
            answered += 1
    return answered


async def test_fuzzed_site_messages(client, app, redis):
    occ = await make_briefing(app)
    app[HUB].rate = (1e6, 1e6)  # the fuzzer sends faster than a page may
    token = await SiteLinks(redis, TEST_SECRET).token(occ.invited_sites[1])
    ws = await client.ws_connect(f"/ws?site={token}")
    assert (await ws.receive_json())["type"] == "welcome"
    sample = collect(frames, 250)
    random.Random(7).shuffle(sample)
    answered = await _fuzz(ws, sample)
    assert answered > 150
    assert not ws.closed


async def test_fuzzed_chair_messages(client, app, login):
    occ = await make_briefing(app)
    app[HUB].rate = (1e6, 1e6)
    await login(client, "chair")
    ws = await client.ws_connect(f"/ws?briefing={occ.id}")
    assert (await ws.receive_json())["type"] == "welcome"
    answered = await _fuzz(ws, collect(mutated(), 200))
    assert answered > 100
    assert not ws.closed
