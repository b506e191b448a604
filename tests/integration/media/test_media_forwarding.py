"""The media plane with real aiortc peers on 127.0.0.1 (peers in another process)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time

import pytest

from confsvc.media.rtp import ntp_to_unix

pytestmark = pytest.mark.integration


def stage_mid(p) -> str:
    return p.mids()["stage"]


def frames(st: dict, sub: str, mid: str) -> int:
    return st["subs"][sub]["video"].get(mid, {}).get("frames", 0)


async def test_ten_subscribers_decode_every_frame_and_the_node_never_transcodes(room, peers, no_transcoding):
    await peers.publish(room, "A", width=320, height=240, audio=True)
    room.set_stage("A")
    subs = [await peers.subscribe(room, f"S{i}") for i in range(10)]
    mid = stage_mid(subs[0])
    await peers.wait_for(lambda st: all(frames(st, f"S{i}", mid) >= 10 for i in range(10)))
    before = await peers.stats()
    await asyncio.sleep(4.0)
    after = await peers.stats()
    sent = after["pubs"]["A"]["frames"] - before["pubs"]["A"]["frames"]
    assert sent >= 30
    for i in range(10):
        got = frames(after, f"S{i}", mid) - frames(before, f"S{i}", mid)
        # >= 29 of every 30 frames, allowing for the frames in flight (or in a busy decoder) at the edges
        assert got >= sent * 29 / 30 - 5, (i, got, sent)
        assert sum(after["subs"][f"S{i}"]["audio"].values()) > 0
    assert after["decode_errors"] == 0
    c = room.counters
    assert c.malformed_rtp == 0 and c.rtp_out > 10 * c.keyframes_in
    # media comes straight from aioice's datagram callback (hooks.tap_transport's direct path),
    # not through its queue and aiortc's receive task, but for the packets queued behind DTLS
    assert c.rtp_in_queued < 0.05 * c.rtp_in, (c.rtp_in_queued, c.rtp_in)
    assert list(no_transcoding) == []
    print({"published_frames": sent, "received": [frames(after, f"S{i}", mid) - frames(before, f"S{i}", mid)
                                                  for i in range(10)]})


async def test_stage_switch_between_resolutions_without_renegotiation(room, peers):
    await peers.publish(room, "A", width=320, height=240)
    await peers.publish(room, "B", width=160, height=120)
    shown: list[tuple[str, str, str | None]] = []
    room.on_slot_change = lambda pid, slot, who: shown.append((pid, slot, who))
    room.set_stage("A")
    subs = [await peers.subscribe(room, f"S{i}") for i in range(4)]
    offers = {p.id: p.sub_pc.localDescription.sdp for p in subs}
    mid = stage_mid(subs[0])
    names = [p.id for p in subs]

    def sees(st, size):
        return all(st["subs"][n]["video"].get(mid, {}).get("by_size", {}).get(size, 0) >= 5 for n in names)

    await peers.wait_for(lambda st: sees(st, "320x240"))
    await asyncio.sleep(0.5)
    switched_at = time.monotonic()
    room.set_stage("B")
    st = await peers.wait_for(lambda st: sees(st, "160x120"))
    delays = []
    for n in names:
        times = st["subs"][n]["video"][mid]["times"]
        old_after = [t for t, size in times if t > switched_at and size == "320x240"]
        first_new = min(t for t, size in times if size == "160x120")
        delays.append(round(first_new - switched_at, 3))
        # the old picture stops within a second's worth of frames (30 at 30 fps), the new one follows
        assert len(old_after) <= 30, (n, len(old_after))
        assert all(size == "160x120" for t, size in times if t > first_new)
    for p in subs:
        assert p.sub_pc.localDescription.sdp == offers[p.id]  # no new offer
        assert p.sub_pc.signalingState == "stable"
        assert (p.id, "stage", "B") in shown and p.slot_map()["stage"] == "B"
    assert st["decode_errors"] == 0
    print({"switch_delay_s": delays})


async def test_five_percent_loss_to_subscribers_is_repaired_by_nack(room, peers):
    await peers.publish(room, "A", width=320, height=240)
    room.set_stage("A")
    subs = [await peers.subscribe(room, f"L{i}", drop=0.05, seed=i) for i in range(2)]
    mid = stage_mid(subs[0])
    await peers.wait_for(lambda st: all(frames(st, p.id, mid) >= 5 for p in subs))
    before = await peers.stats()
    await asyncio.sleep(5.0)
    after = await peers.stats()
    sent = after["pubs"]["A"]["frames"] - before["pubs"]["A"]["frames"]
    for p in subs:
        got = frames(after, p.id, mid) - frames(before, p.id, mid)
        # a frame waiting for its repair at the window's edge counts later: allow 5 frames there
        assert got >= 0.95 * sent - 5, (p.id, got, sent)
        assert after["subs"][p.id]["dropped"] > 0
    assert room.counters.nack_repaired > 0
    print({"sent": sent, "nack_in": room.counters.nack_in, "repaired": room.counters.nack_repaired,
           "dropped": [after["subs"][p.id]["dropped"] for p in subs]})


async def test_late_joiner_gets_its_first_frame_from_the_cache(room, peers):
    await peers.publish(room, "A", width=320, height=240)
    room.set_stage("A")
    early = await peers.subscribe(room, "E")
    mid = stage_mid(early)
    await peers.wait_for(lambda st: frames(st, "E", mid) >= 30)
    replayed, plis = room.counters.replayed, room.counters.pli_out
    joined = time.monotonic()
    late = await peers.subscribe(room, "J")
    st = await peers.wait_for(lambda st: frames(st, "J", stage_mid(late)) >= 1)
    first = st["subs"]["J"]["video"][stage_mid(late)]["first"]
    # a fresh keyframe run was cached (keyframe replay), or the node asked upstream for one
    assert room.counters.replayed > replayed or room.counters.pli_out > plis
    assert st["decode_errors"] == 0
    print({"join_to_first_frame_s": round(first - joined, 3), "replayed": room.counters.replayed - replayed})


async def test_sender_reports_match_the_media_timestamps(room, peers):
    await peers.publish(room, "A", width=160, height=120, audio=True)
    room.set_stage("A")
    await peers.publish(room, "B", video=False, audio=True, freq=300)  # B listens to A's audio
    sub = await peers.subscribe(room, "B")
    video_ssrc = sub.slots["stage"].ssrc
    audio_ssrcs = {s.ssrc for name, s in sub.slots.items() if name.startswith("audio")}

    def enough(st):
        srs = st["subs"]["B"]["srs"]
        return sum(1 for r in srs if r["ssrc"] == video_ssrc) >= 3 and sum(1 for r in srs if r["ssrc"] in audio_ssrcs) >= 3

    st = await peers.wait_for(enough, within=25)
    checked = {"video": 0, "audio": 0}
    by_ssrc: dict[int, list] = {}
    worst = 0.0
    for r in st["subs"]["B"]["srs"]:
        if r["last_rtp"] is None or r["ssrc"] not in audio_ssrcs | {video_ssrc}:
            continue
        clock = 90000 if r["ssrc"] == video_ssrc else 48000
        expected = r["last_rtp"] + (r["at"] - r["last_at"]) * clock
        diff = (((r["rtp"] - int(expected) + 2**31) % 2**32) - 2**31) / clock
        worst = max(worst, abs(diff))
        # the SR's RTP time is the media's timeline (a wrong offset is off by hours; allow for
        # the peers process being scheduled late on a loaded machine)
        assert abs(diff) < 0.25, (r, diff)
        # its NTP time is the node's wall clock when it sent the SR
        assert -0.05 < r["at"] - ntp_to_unix(r["ntp"]) < 1.0, r
        by_ssrc.setdefault(r["ssrc"], []).append((ntp_to_unix(r["ntp"]), r["rtp"], clock))
        checked["video" if r["ssrc"] == video_ssrc else "audio"] += 1
    assert checked["video"] >= 2 and checked["audio"] >= 2
    for reports in by_ssrc.values():
        (t1, rtp1, clock), (t2, rtp2, _) = reports[0], reports[-1]
        if t2 - t1 > 1.0:  # RTP advances at the clock rate against NTP
            assert abs(((rtp2 - rtp1) % 2**32) / (t2 - t1) / clock - 1) < 0.05
    print({"sr_worst_offset_ms": round(worst * 1000, 1)})
    assert room.participants["A"].clock_offset is not None  # mapped through the publisher's own SRs


async def test_malformed_rtp_and_rtcp_from_peers_are_dropped_and_counted(room, peers):
    await peers.publish(room, "A", width=160, height=120)
    room.set_stage("A")
    sub = await peers.subscribe(room, "S")
    mid = stage_mid(sub)
    await peers.wait_for(lambda st: frames(st, "S", mid) >= 5)
    m_rtp, m_ssrc, m_rtcp = room.counters.malformed_rtp, room.counters.unknown_ssrc, room.counters.malformed_rtcp
    ra = await peers.call("malformed", name="A")
    rs = await peers.call("malformed", name="S")
    assert ra["sent"] == 5 and rs["sent"] == 5, (ra, rs)
    n = frames(await peers.stats(), "S", mid)
    st = await peers.wait_for(lambda st: frames(st, "S", mid) >= n + 10)
    assert room.counters.malformed_rtp >= m_rtp + 2  # oversize extension, truncated element
    assert room.counters.unknown_ssrc >= m_ssrc + 1 + 3  # A's unknown SSRC; S sends no media at all
    assert room.counters.malformed_rtcp >= m_rtcp + 2
    assert st["decode_errors"] == 0
    # forged SRTP (RTP-looking bytes without the session's key) at the node's publish port, from
    # another socket: dropped before the parser, and counted
    sdp = room.participants["A"].pub_pc.localDescription.sdp
    port = int(re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host", sdp).group(1))
    rejected = room.counters.srtp_rejected
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(3):
            forger.sendto(b"\x80\x60" + os.urandom(60), ("127.0.0.1", port))
        for _ in range(50):
            if room.counters.srtp_rejected >= rejected + 3:
                break
            await asyncio.sleep(0.05)
    finally:
        forger.close()
    assert room.counters.srtp_rejected == rejected + 3
    n = frames(await peers.stats(), "S", mid)
    await peers.wait_for(lambda st: frames(st, "S", mid) >= n + 10)  # and the media goes on


async def test_a_publisher_that_leaves_frees_its_slots(room, peers):
    await peers.publish(room, "A", width=160, height=120, audio=True)
    room.set_stage("A")
    sub = await peers.subscribe(room, "S")
    shown = []
    room.on_slot_change = lambda pid, slot, who: shown.append((pid, slot, who))
    await peers.wait_for(lambda st: frames(st, "S", stage_mid(sub)) >= 5)
    producers = list(room.participants["A"].producers)
    await room.remove_participant("A")
    await peers.call("close", name="A")
    assert sub.slot_map()["stage"] is None
    assert all(v is None for k, v in sub.slot_map().items())
    assert ("S", "stage", None) in shown
    assert all(not p.slots and not p.waiting for p in producers)
    # and the subscriber is still served when a new publisher takes the floor
    await peers.publish(room, "C", width=160, height=120)
    room.set_stage("C")
    n = frames(await peers.stats(), "S", stage_mid(sub))
    await peers.wait_for(lambda st: frames(st, "S", stage_mid(sub)) >= n + 5)


async def test_subscriber_sockets_are_connected_to_their_peer(room, peers):
    await peers.publish(room, "A", width=160, height=120)
    room.set_stage("A")
    sub = await peers.subscribe(room, "S")
    await peers.wait_for(lambda st: frames(st, "S", stage_mid(sub)) >= 5)
    assert sub.sub_sink is not None and sub.sub_sink.connected  # MediaConfig.connect_udp
    # and the node's ICE sockets read into small buffers, not asyncio's 256 KiB per datagram
    from confsvc.media import hooks

    for pc in (room.participants["A"].pub_pc, sub.sub_pc):
        sizes = {pr.transport.max_size for c in hooks._connections(pc) for pr in c._protocols}
        assert sizes == {hooks.RECV_SIZE}


async def test_the_site_that_speaks_becomes_dominant_and_is_heard(room, peers):
    dominant = []
    room.on_dominant_speaker = dominant.append
    await peers.publish(room, "quiet", video=False, audio=True, amplitude=0)
    await peers.publish(room, "talker", video=False, audio=True, amplitude=8000)
    listener = await peers.subscribe(room, "listener")
    for _ in range(100):
        if room.speakers.dominant == "talker":
            break
        await asyncio.sleep(0.1)
    assert dominant and dominant[-1] == "talker" and "quiet" not in dominant
    carried = {s.producer.owner.id for n, s in listener.slots.items() if n.startswith("audio") and s.producer}
    assert "talker" in carried
    st = await peers.wait_for(lambda st: sum(st["subs"]["listener"]["audio"].values()) >= 20)
    assert st["decode_errors"] == 0


async def test_the_node_announces_only_the_configured_addresses(room, peers):
    pub = await peers.publish(room, "A", width=160, height=120)
    sub = await peers.subscribe(room, "S")
    for sdp in (pub.pub_pc.localDescription.sdp, sub.sub_pc.localDescription.sdp):
        cands = [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]
        assert cands and set(cands) == {"127.0.0.1"}, cands


async def test_a_subscriber_that_stops_reading_does_not_slow_the_others(room, peers):
    await peers.publish(room, "A", width=320, height=240)
    room.set_stage("A")
    subs = [await peers.subscribe(room, f"S{i}") for i in range(3)]
    mid = stage_mid(subs[0])
    await peers.wait_for(lambda st: all(frames(st, p.id, mid) >= 10 for p in subs))
    await peers.call("stall", name="S0")
    await asyncio.sleep(0.5)
    before = await peers.stats()
    await asyncio.sleep(3.0)
    after = await peers.stats()
    sent = after["pubs"]["A"]["frames"] - before["pubs"]["A"]["frames"]
    assert frames(after, "S0", mid) - frames(before, "S0", mid) <= 2  # it really stopped
    for name in ("S1", "S2"):
        assert frames(after, name, mid) - frames(before, name, mid) >= sent * 29 / 30 - 5
    assert room.participants["S0"].slots["stage"].live  # still served, as far as the node knows
