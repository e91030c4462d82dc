"""Limiter: paces a produce loop at a target rate times the follower's scale."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Protocol

from .follower import Change

__all__ = ["ScaleSource", "Limiter"]


class ScaleSource(Protocol):
    """Tells a Limiter how much of its target rate to use. Follower is one."""

    @property
    def scale(self) -> float:
        """A factor in [0, 1] applied to the target rate."""
        ...

    def changed(self) -> Change:
        """The next change of scale."""
        ...


class Limiter:
    """Paces callers at ``per_second`` sends per second times the scale of ``source``.

    At scale 0 (level hard by default) it holds every caller until the scale
    rises; a change of scale takes effect at once, also for callers already
    waiting. ``burst`` sends may go back to back (0 picks 10 ms worth, at
    least 1). A None source means a constant scale of 1. It is a token
    bucket like golang.org/x/time/rate, which the Go Limiter uses, and is safe
    to share between threads; use ``wait`` from threads and ``wait_async``
    from coroutines.
    """

    def __init__(self, per_second: float, burst: int = 0, source: ScaleSource | None = None) -> None:
        if not per_second > 0 or math.isinf(per_second):
            raise ValueError(f"rate {per_second} must be a positive number")
        if burst < 0:
            raise ValueError(f"burst {burst} must be >= 0")
        self.target = float(per_second)
        self.burst = burst or max(1, int(per_second / 100))
        self._source = source
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._limit = self.target

    @property
    def rate(self) -> float:
        """The rate allowed now: the target times the scale."""
        return self.target * self._scale()

    def _scale(self) -> float:
        if self._source is None:
            return 1.0
        return min(max(self._source.scale, 0.0), 1.0)

    def _reserve(self, limit: float) -> float:
        """Takes one token at ``limit`` per second; returns how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            # Tokens accrue at the limit in force until now.
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self._limit)
            self._last = now
            self._limit = limit
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / limit

    def _cancel(self) -> None:
        """Gives back a token taken by a wait that did not happen."""
        with self._lock:
            self._tokens = min(float(self.burst), self._tokens + 1)

    def _next(self) -> tuple[Change | None, float]:
        """The next change of scale (taken first, so none is missed) and the scale now."""
        change = self._source.changed() if self._source is not None else None
        return change, self._scale()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the next send is allowed; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        while True:
            change, s = self._next()
            if s <= 0:
                assert change is not None  # without a source the scale is 1
                if not change.wait(remaining()):
                    return False
                continue
            delay = self._reserve(self.target * s)
            if delay == 0:
                return True
            left = remaining()
            d = delay if left is None else min(delay, left)
            if change is not None and change.wait(d):
                self._cancel()
                continue
            if change is None:
                time.sleep(d)
            if d < delay:
                self._cancel()
                return False
            return True

    async def wait_async(self) -> None:
        """Waits until the next send is allowed; bound it with asyncio.wait_for if needed."""
        while True:
            change, s = self._next()
            if s <= 0:
                assert change is not None
                await change
                continue
            delay = self._reserve(self.target * s)
            if delay == 0:
                return
            if change is None:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    self._cancel()
                    raise
                return
            waiter = asyncio.ensure_future(change)
            try:
                done, _ = await asyncio.wait({waiter}, timeout=delay)
            except asyncio.CancelledError:
                self._cancel()
                raise
            finally:
                waiter.cancel()
            if not done:
                return
            self._cancel()
