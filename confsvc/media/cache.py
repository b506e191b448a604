"""PacketCache: one per producer, shared by every slot that carries it (payloads are the same
for all subscribers; only headers differ, and those are rebuilt per slot).

It keeps the last ``size`` packets by sequence number (to answer NACKs) and the run of packets
since the last keyframe began (to start a new or switched slot at once: keyframe replay).
Packets are duck-typed: they need ``seq``, ``keyframe`` and ``arrival``.
"""

from __future__ import annotations

from typing import Any


class PacketCache:
    __slots__ = ("_ring", "_mask", "_run", "_run_max", "_run_ok", "key_seq", "key_arrival")

    def __init__(self, size: int = 1024, keyframe_max: int = 800) -> None:
        if size & (size - 1):
            raise ValueError("PacketCache size must be a power of two")
        self._ring: list[Any] = [None] * size
        self._mask = size - 1
        self._run: list[Any] = []
        self._run_max = keyframe_max
        self._run_ok = False
        self.key_seq = -1
        self.key_arrival = float("-inf")

    def add(self, pkt: Any) -> None:
        self._ring[pkt.seq & self._mask] = pkt
        if pkt.keyframe:
            self._run = [pkt]
            self._run_ok = True
            self.key_seq = pkt.seq
            self.key_arrival = pkt.arrival
        elif self._run_ok:
            # only packets after the keyframe's first one belong to its run
            if ((pkt.seq - self.key_seq) & 0xFFFF) >= 0x8000:
                return
            if len(self._run) >= self._run_max:
                self._run = []
                self._run_ok = False
            else:
                self._run.append(pkt)

    def get(self, seq: int) -> Any:
        pkt = self._ring[seq & self._mask]
        if pkt is not None and pkt.seq == seq:
            return pkt
        return None

    def keyframe_run(self, now: float, max_age: float) -> list[Any] | None:
        """Packets since the last keyframe in sequence order, or None when there is no usable run
        (none yet, too old, or overflowed)."""
        if not self._run_ok or now - self.key_arrival > max_age:
            return None
        key = self.key_seq
        seen: dict[int, Any] = {}
        for p in self._run:
            seen[(p.seq - key) & 0xFFFF] = p
        return [seen[k] for k in sorted(seen)]

    def clear(self) -> None:
        self._ring = [None] * (self._mask + 1)
        self._run = []
        self._run_ok = False
