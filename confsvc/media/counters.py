"""Room-wide counters, plain integer attributes so the per-packet path pays one add."""

from __future__ import annotations


class Counters:
    __slots__ = (
        "rtp_in", "rtp_in_bytes", "rtp_in_queued", "rtp_out", "rtp_out_bytes", "rtcp_in", "rtcp_out",
        "malformed_rtp", "malformed_rtcp", "srtp_rejected", "unknown_ssrc", "unknown_pt", "padding_in",
        "rtx_in", "late_in", "send_errors", "nack_in", "nack_repaired", "nack_missed",
        "nack_out", "pli_in", "pli_out", "pli_throttled", "keyframes_in", "replayed",
        "switches", "dropped_wrong_epoch",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
