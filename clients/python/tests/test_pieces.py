"""Units: levels, event decoding details, the limiter, webhook verification."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from mds_backpressure import Change, Event, Follower, Level, Limiter, parse_level, verify_webhook


def test_parse_level() -> None:
    assert parse_level("ok") is Level.OK
    assert parse_level("sOFT") is Level.SOFT
    assert parse_level("HARD") is Level.HARD
    for bad in ("", "stop", "hard ", "\u017foft", "HARD\u0130"):
        with pytest.raises(ValueError):
            parse_level(bad)
    assert str(Level.SOFT) == "soft" and max(Level.OK, Level.HARD) is Level.HARD


def test_event_time_truncates_like_go() -> None:
    assert Event(ts=1760540000.123).time_ns() == 1760540000_122999906  # Go: Event{TS: 1760540000.123}.Time().UnixNano()
    assert Event(ts=1.5).time_ns() == 1_500_000_000


def test_follower_validates() -> None:
    cfg = {"bootstrap.servers": "127.0.0.1:1"}
    with pytest.raises(ValueError):
        Follower(cfg, topic="")
    with pytest.raises(ValueError):
        Follower(cfg, stale=0)
    with pytest.raises(ValueError):
        Follower(cfg, scales=(1.0, 0.2, 0.5))
    with pytest.raises(ValueError):
        Follower(cfg, scales=(1.5, 0.5, 0.0))


class Scale:
    """A scale source the test sets by hand."""

    def __init__(self, v: float) -> None:
        self._v = v
        self._lock = threading.Lock()
        self._change = Change()

    @property
    def scale(self) -> float:
        with self._lock:
            return self._v

    def changed(self) -> Change:
        with self._lock:
            return self._change

    def set(self, v: float) -> None:
        with self._lock:
            self._v = v
            done, self._change = self._change, Change()
        done._set()


def sends(lim: Limiter, seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    while lim.wait(max(0.0, end - time.monotonic())):
        n += 1
    return n


def test_limiter_rate_follows_scale() -> None:
    src = Scale(1.0)
    lim = Limiter(200, source=src)
    assert lim.burst == 2 and lim.rate == 200
    full = sends(lim, 1.0)
    src.set(0.5)
    assert lim.rate == 100
    half = sends(lim, 1.0)
    # Never faster than the rate (plus the burst); a loaded machine may send
    # fewer at both scales, so the halving is checked as a ratio.
    assert 0 < full <= 200 * 1.2 + 2, full
    assert 0.3 <= half / full <= 0.7, (full, half)


def test_limiter_holds_at_zero_until_the_scale_rises() -> None:
    src = Scale(0.0)
    lim = Limiter(1000, source=src)
    assert lim.rate == 0
    assert not lim.wait(0.2)
    done = threading.Event()
    t = threading.Thread(target=lambda: (lim.wait(30), done.set()))
    t.start()
    src.set(1.0)
    assert done.wait(10), "a held waiter did not see the scale rise"
    t.join()


def test_limiter_waiter_sees_scale_rise_mid_wait() -> None:
    src = Scale(0.001)
    lim = Limiter(1, burst=1, source=src)  # one send per 1000 s
    assert lim.wait(1)  # the burst
    done = threading.Event()
    t = threading.Thread(target=lambda: (lim.wait(60), done.set()))
    t.start()
    time.sleep(0.05)
    src.set(1.0)  # now one per second: the waiter re-plans
    assert done.wait(10)
    t.join()


def test_proportional_scale_moves_wake_the_limiter_but_not_on_change() -> None:
    seen: list[Level] = []
    f = Follower({"bootstrap.servers": "127.0.0.1:1"}, proportional_soft=True, on_change=seen.append)

    def soft(arrival: int, sustainable: int) -> None:
        now = time.time_ns()
        e = {"coordinator_id": "a", "level": "soft", "ts": now / 1e9, "arrival_rate": arrival, "sustainable_rate": sustainable}
        f._apply(b"a", json.dumps(e).encode(), now)
        f._evaluate(now)

    for _ in range(8):
        soft(100_000, 1_000)  # halved at most, down to the floor
    assert f.level is Level.SOFT and f.scale == 0.01
    lim = Limiter(1, burst=1, source=f)  # one send per 100 s
    assert lim.wait(1)  # the burst
    done = threading.Event()
    t = threading.Thread(target=lambda: (lim.wait(60), done.set()))
    t.start()
    for _ in range(7):
        soft(10_000, 100_000)  # doubled at most, up to the ok scale
    assert f.scale == 1.0
    assert done.wait(10), "a waiter did not see the proportional scale rise"
    t.join()
    assert seen == [Level.SOFT], "on_change is for level changes only"


def test_limiter_async() -> None:
    src = Scale(0.0)
    lim = Limiter(100, source=src)

    async def main() -> int:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(lim.wait_async(), 0.2)
        asyncio.get_running_loop().call_later(0.05, src.set, 1.0)

        async def fifty() -> int:
            for n in range(50):
                await lim.wait_async()
            return n + 1

        return await asyncio.wait_for(fifty(), 20)

    assert asyncio.run(main()) == 50


def test_limiter_without_source_and_validation() -> None:
    assert Limiter(5).rate == 5
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Limiter(bad)
    with pytest.raises(ValueError):
        Limiter(10, burst=-1)


BODY = b'{"level":"hard"}'
SIG = "sha256=4bd2b5931f45101d337db1504df54ee1e8fbef21321593179dcee2c33aaa2b67"  # openssl dgst -sha256 -hmac secret-key


def test_verify_webhook() -> None:
    headers = {"Authorization": "Bearer tok", "X-MDS-Signature": SIG}
    assert verify_webhook(BODY, headers, token="tok", hmac_secret="secret-key")
    assert verify_webhook(BODY, {"x-mds-signature": SIG}, hmac_secret=b"secret-key")  # any case
    assert verify_webhook(BODY, {"authorization": "Bearer tok"}, token="tok")
    assert not verify_webhook(BODY, headers, token="other", hmac_secret="secret-key")
    assert not verify_webhook(BODY, headers, token="tok", hmac_secret="other")
    assert not verify_webhook(BODY + b" ", headers, hmac_secret="secret-key")
    assert not verify_webhook(BODY, {"Authorization": "Bearer tok"}, token="tok", hmac_secret="secret-key")
    assert not verify_webhook(BODY, {}, token="tok")
    assert not verify_webhook(BODY, {"Authorization": "tok"}, token="tok")
    with pytest.raises(ValueError):
        verify_webhook(BODY, headers)


def test_change_wakes_threads_and_coroutines_and_forgets_cancelled_waits() -> None:
    change = Change()

    async def main() -> None:
        for _ in range(100):  # waits that time out must not pile up
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(change, 0.001)
        assert change._futures == []
        waiter = asyncio.ensure_future(change)
        await asyncio.sleep(0)
        threading.Thread(target=change._set).start()
        await asyncio.wait_for(waiter, 10)

    asyncio.run(main())
    assert change.is_set() and change.wait(0)
