"""A site behind strict NAT reaches the node through coturn, with the time-limited credentials the
node hands out (``use-auth-secret``): the site's peer may use relay candidates only."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time

import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from confsvc.app import bootstrap, build_app
from confsvc.auth.sitelinks import SiteLinks
from confsvc.http.ws import HUB
from tests.conftest import TEST_SECRET
from tests.integration.test_signaling_ws import Page, make_briefing

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn (turnserver) is not installed: scripts/test installs it"),
]

TURN_SECRET = "turn-test-secret-0123456789"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def coturn(tmp_path):
    port = _free_udp_port()
    relay_lo = 50000 + (port % 1000) * 10
    proc = subprocess.Popen(
        ["turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm=confsvc.test",
         "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls", "--no-multicast-peers",
         f"--min-port={relay_lo}", f"--max-port={relay_lo + 9}", f"--log-file={tmp_path / 'turn.log'}",
         "--simple-log", "--no-stdout-log", f"--pidfile={tmp_path / 'turn.pid'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    assert proc.poll() is None, (tmp_path / "turn.log").read_text() if (tmp_path / "turn.log").exists() else "coturn died"
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_a_relay_only_site_publishes_through_coturn(aiohttp_client, settings, redis, coturn):
    settings = settings.replace(turn_urls=(f"turn:127.0.0.1:{coturn}?transport=udp",), turn_secret=TURN_SECRET)
    await bootstrap(settings, redis, TEST_SECRET)
    app = build_app(settings, redis, TEST_SECRET)
    client = await aiohttp_client(app)
    occ = await make_briefing(app)
    token = await SiteLinks(redis, TEST_SECRET).token("YB-MCC")
    page = Page(await client.ws_connect(f"/ws?site={token}"))
    welcome = await page.next("welcome")
    (server,) = welcome["ice_servers"]
    assert server["urls"] == [f"turn:127.0.0.1:{coturn}?transport=udp"]
    expiry, _, name = server["username"].partition(":")
    assert name == "YB-MCC" and int(expiry) > time.time() + 3600  # time-limited, for this site

    pc = RTCPeerConnection(RTCConfiguration(
        iceServers=[RTCIceServer(urls=server["urls"], username=server["username"], credential=server["credential"])],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    ))
    try:
        pc.addTrack(VideoStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        assert " typ relay" in pc.localDescription.sdp and " typ host" not in pc.localDescription.sdp
        await page.send(type="publish", sdp=pc.localDescription.sdp)
        answer = await page.next("publish_answer", timeout=20)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        room = app[HUB].rooms[occ.id]
        async with asyncio.timeout(30):
            while room.media.counters.rtp_in < 10:  # noqa: ASYNC110 (polling a counter)
                await asyncio.sleep(0.1)
        pair = pc.getTransceivers()[0].sender.transport.transport.iceGatherer._connection._nominated
        (local, _remote), = [(p.local_candidate, p.remote_candidate) for p in pair.values()]
        assert local.type == "relay"
    finally:
        await pc.close()
