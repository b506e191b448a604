"""Keyframe requests upstream (PLI), throttled per producer.

Subscribers and switching slots may ask many times a second; the publisher should see at most one
request per ``interval``. A request that arrives inside the interval is not lost: it is sent when
the interval ends (``due``), once.
"""

from __future__ import annotations


class KeyframeThrottle:
    __slots__ = ("interval", "last_sent", "pending", "sent", "throttled")

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.last_sent = float("-inf")
        self.pending = False
        self.sent = 0
        self.throttled = 0

    def request(self, now: float) -> bool:
        """Return True when a PLI should go out now."""
        if now - self.last_sent >= self.interval:
            self.last_sent = now
            self.pending = False
            self.sent += 1
            return True
        self.pending = True
        self.throttled += 1
        return False

    def due(self, now: float) -> bool:
        """For the ticker: True when a deferred request should go out now."""
        if self.pending and now - self.last_sent >= self.interval:
            self.last_sent = now
            self.pending = False
            self.sent += 1
            return True
        return False

    def keyframe_arrived(self) -> None:
        self.pending = False
