"""The chair's grid thumbnails follow who is connected, whoever joined first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from confsvc.media import MediaConfig
from confsvc.signaling.hub import Hub, Identity


class _Log:
    async def append(self, briefing_id: str, event: Any) -> str:
        return "0-0"

    def submit(self, briefing_id: str, event: Any) -> None:
        return None


async def _info(codes):
    return [(c, c, "province" if c == "YB" else "commune", None if c == "YB" else "YB-D") for c in codes]


async def _send(text: str) -> None:
    return None


async def test_a_site_joining_after_the_chair_is_put_in_the_chairs_grid():
    now = datetime.now(UTC)
    occ = SimpleNamespace(id="b-1", title="t", chair="YB", invited_sites=("YB", "YB-A", "YB-B"), state="open",
                          lobby_opens_at=now - timedelta(minutes=5), starts_at=now, ends_at=now + timedelta(hours=1))
    hub = Hub(log=_Log(), site_info=_info, media_config=MediaConfig(), quality_period=3600)
    try:
        await hub.join(occ, Identity("YB", "chair"), _send)
        room = hub.rooms["b-1"]
        assert room.media.grids.get("YB") == []
        await hub.join(occ, Identity("YB-A", "site"), _send)
        await hub.join(occ, Identity("YB-B", "site"), _send)
        assert room.media.grids["YB"] == ["YB-A", "YB-B"]
    finally:
        await hub.close()
