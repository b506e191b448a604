"""Settings of the media plane, kept apart from the whole-node Settings so tests and benches can
build a Room without environment variables."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from confsvc.config import Settings


@dataclass(frozen=True)
class MediaConfig:
    # the only addresses the node offers as ICE host candidates (DESIGN §7)
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    # aiortc RTCIceServer objects handed to the node's peer connections (STUN/TURN), if any
    ice_servers: tuple[Any, ...] = field(default_factory=tuple)
    audio_slots: int = 3
    # keyframe requests upstream: at most one per producer in this many seconds
    pli_interval: float = 0.5
    # a waiting slot re-asks for a keyframe after this long without one
    pli_retry: float = 1.0
    # fast start: replay cached packets since the last keyframe if that keyframe is this recent
    replay_max_age: float = 1.5
    # ... and on an upgrade (the allocator's "up"), only this recent (else the slot waits for one)
    up_replay_age: float = 0.2
    # packet cache: recent packets kept for NACK (power of two) and the bound of the keyframe run
    nack_cache: int = 1024
    keyframe_cache: int = 800
    # connect() each subscriber's UDP socket to its nominated peer address (saves a route lookup
    # per packet; see hooks.Sink)
    connect_udp: bool = True
    # room ticker period: sender reports, receiver reports, speaker decisions, keyframe retries
    tick: float = 0.1
    sr_interval: float = 1.0
    rr_interval: float = 1.0
    # speaker detection (see speakers.SpeakerDetector)
    speech_level: int = 60          # RFC 6464 level (-dBov) at or below which a packet counts as voiced
    speaker_window: float = 0.8
    speaker_min_activity: float = 0.55
    speaker_hold: float = 0.5
    # bandwidth adaptation (issue 4; see allocator.py): how often the ticker measures the layers and
    # runs each subscriber's estimator and allocator, the estimate a new subscriber starts from,
    # what "low data" caps a site's downlink at, and the allocator's hysteresis
    adapt: bool = True
    alloc_interval: float = 0.25
    initial_bps: int = 2_000_000
    low_data_bps: int = 300_000
    up_hold: float = 2.0
    stable_hold: float = 3.0
    probe_window: float = 2.5
    probe_backoff: float = 3.0
    probe_backoff_max: float = 4.0
    # record the time spent on each ingress packet, sends included (bench only; two clock reads per
    # ingress packet)
    measure_fanout: bool = False
    fanout_samples: int = 20000

    def __post_init__(self) -> None:
        if not self.ice_addresses:
            raise ValueError("MediaConfig.ice_addresses: at least one address is needed")
        for addr in self.ice_addresses:
            ipaddress.ip_address(addr)  # raises ValueError naming the bad value
        if self.nack_cache & (self.nack_cache - 1) or self.nack_cache < 64:
            raise ValueError("MediaConfig.nack_cache must be a power of two >= 64")
        if not 0 <= self.audio_slots <= 8:
            raise ValueError("MediaConfig.audio_slots must be within 0..8")
        if not 0.05 <= self.alloc_interval <= 5:
            raise ValueError("MediaConfig.alloc_interval must be within 0.05..5 s")
        if self.initial_bps <= 0 or self.low_data_bps <= 0:
            raise ValueError("MediaConfig.initial_bps and low_data_bps must be positive")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> MediaConfig:
        servers: list[Any] = []
        if settings.stun_urls:
            from aiortc import RTCIceServer

            servers.append(RTCIceServer(urls=list(settings.stun_urls)))
        values: dict[str, Any] = {"ice_addresses": tuple(settings.ice_addresses), "ice_servers": tuple(servers)}
        values.update(overrides)
        return cls(**values)
