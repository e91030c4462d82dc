from __future__ import annotations

import time
from typing import Any


def event(cid: str, level: str, ts: float | None = None, **extra: Any) -> dict[str, Any]:
    """A feedback event as the store publishes it."""
    size = {"ok": 10, "soft": 60, "hard": 90}[level]
    return {
        "coordinator_id": cid,
        "queue_size": size,
        "capacity": 100,
        "utilization": size / 100,
        "level": level,
        "reason": "test",
        "source": "store",
        "ts": time.time() if ts is None else ts,
        **extra,
    }
