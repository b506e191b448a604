"""The media plane: a packet-level selective forwarding unit on aiortc (DESIGN §4).

The node never decodes or encodes: aiortc does ICE, DTLS, SRTP and SDP; confsvc takes each incoming
RTP packet before aiortc's jitter buffer (straight from aioice's datagram callback), rewrites its
header per outgoing slot and sends it straight to the subscriber's socket. The common case of that
fan-out (rewrite, SRTP protect, send, for every slot) is one call into ``_fanout.c``; the rest is
Python (``forwarder.Producer.forward``). Everything that reaches into aiortc internals is in
:mod:`confsvc.media.hooks` (checked by ``hooks.check()``).

Python API (stable; used by ``bench/`` and, later, by ``confsvc.signaling``)::

    from confsvc.media import Room, MediaConfig

    room = Room(MediaConfig(ice_addresses=("127.0.0.1",)))     # or MediaConfig.from_settings(settings)
    room.on_slot_change = lambda participant_id, slot_name, shows_participant_id: ...
    room.on_dominant_speaker = lambda participant_id_or_None: ...
    room.on_audio_speakers = lambda [participant_id, ...]: ...        # who the 3 audio slots carry

    p = room.add_participant("province", grid_slots=0)  # grid_slots > 0 for the chair's page
    answer_sdp = await p.publish(offer_sdp)             # publish PC: the client offers, node answers
    answer_sdp = await p.publish(offer_sdp, layers=[    # a camera as several tracks (layers of one
        {"mid": "1", "rid": "h", "width": 1280, "height": 720, "max_kbps": 1500, "temporal": 3},
        {"mid": "2", "rid": "m", "width": 640, "height": 360, "max_kbps": 500},  # source): the
        {"mid": "3", "rid": "l", "width": 320, "height": 180, "max_kbps": 150}]) # signaling `layers`
    offer_sdp = await p.subscribe_offer()               # subscribe PC: the node offers stage video,
    await p.subscribe_answer(answer_sdp)                #   3 audio slots, grid_slots grid videos

    room.set_stage("district-3")      # the floor: a participant id (its video) or None
    room.set_grid("province", ["commune-1", "commune-2"])   # the chair's grid page
    room.set_muted("commune-7", True) # a muted site never gets an audio slot
    p.slot_map()                       # {"stage": "district-3", "audio0": "province", ..., "grid0": ...}
    p.mids()                           # {"stage": "0", "audio0": "1", ...}: which m-line is which slot

    room.counters                      # Counters: forwarded packets/bytes, malformed, nacks, plis...
    room.stats()                       # dict: room counters, per participant, per producer, per slot
    p.stats()                          # its producers (packets, resolution, PLIs) and slots (what each
                                       #   shows, packets, NACKs, RR loss/jitter/RTT); p.remb: its REMB
    p.producers                        # its incoming tracks; video ones carry .layer, .width, .height
    p.video_layers                     # its video producers, layer 0 (highest) first

Bandwidth adaptation (issue 4; :mod:`confsvc.media.allocator`): every MediaConfig.alloc_interval
(250 ms) the room's ticker measures each layer's bitrate and frame rate, runs each subscriber's
Estimator (REMB, receiver-report loss, RTT) and Allocator, and applies the choices to its video
slots (layer, temporal cap, pause; spatial switches at the target's keyframe). Nothing per packet::

    room.set_low_data("commune-7", True)   # the site's "low data" choice: at most low_data_bps
    room.pin_layer("commune-7", "low")     # the chair's pin of what it receives on its stage slot:
                                           #   "high" | "mid" | "low" | "off" | None (automatic)
    room.on_layer_change = lambda participant_id, slot_name, slot_stats: ...   # for the chair's wall
    p.stats()["slots"]["stage"]        # + layer ("high"/"mid"/"low"/"off"), layer_index, width,
                                       #   height, fps, max_tid, paused, bitrate_bps, reason
    p.stats()["estimate"]              # estimate_bps, remb_bps, loss, rtt_ms, sent_bps, audio_bps,
                                       #   congestion_events, probing, probes, failed_probes
    p.stats()["low_data"], p.stats()["pin"]
    room.metrics()                     # [(name, labels, value)]: Prometheus-friendly gauges/counters
    room.add_participant(pid, ice_addresses=("10.0.0.1",))   # its own host candidates (tests)
    room.fanout_samples                # with MediaConfig(measure_fanout=True): seconds spent on each
                                       #   ingress packet (parse to its last send)

    await room.remove_participant("commune-7")   # frees its producers and slots
    await room.close()                            # no task, transport or timer left behind

Test and bench peers on aiortc must be held to the same addresses as the node (DESIGN §7)::

    from confsvc.media.hooks import restrict_ice
    pc = RTCPeerConnection(); ...; restrict_ice(pc, ["127.0.0.1"]); await pc.setLocalDescription(...)

Errors from bad input (SDP we cannot use, unknown participant, a call in the wrong state) are
``confsvc.media.MediaError`` (a ValueError) with a message naming the problem.

Slots, producers and the per-packet path are in :mod:`confsvc.media.forwarder`; the pure pieces
(RTP/VP8 parsing, packet cache, speaker detection, keyframe throttle) need no sockets.
"""

from __future__ import annotations

from confsvc.media.config import MediaConfig
from confsvc.media.counters import Counters
from confsvc.media.room import MediaError, Participant, Room

__all__ = ["Counters", "MediaConfig", "MediaError", "Participant", "Room"]
