"""Follow market-data-store's backpressure feedback from Python producers.

A Follower reads the compacted feedback topic (default "market.feedback")
and keeps the current level: the worst level among the coordinators heard
from recently. A Limiter paces a produce loop at a target rate times the
level's scale (ok 1.0, soft 0.5, hard 0.0; with Follower(...,
proportional_soft=True), the scale at soft follows what the store
sustains). verify_webhook checks the token and signature of the feedback
webhook. The contract is the Go package
github.com/market-data-store/mds/backpressure; both implementations run the
test vectors in docs/feedback-vectors/.

    from mds_backpressure import Follower, Limiter

    with Follower({"bootstrap.servers": "localhost:9092"}) as follower:
        limiter = Limiter(5000, source=follower)  # 5000 records/s at ok
        while True:
            limiter.wait()
            producer.produce(...)
"""

from ._event import DecodeError, Event, Level, decode_event, parse_level
from .follower import (
    DEFAULT_HEARTBEAT,
    DEFAULT_SCALES,
    DEFAULT_STALE,
    DEFAULT_TOPIC,
    MAX_HEARTBEAT,
    Change,
    CoordinatorState,
    Follower,
    FollowerError,
)
from .limiter import Limiter, ScaleSource
from .webhook import SIGNATURE_HEADER, verify_webhook

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_SCALES",
    "DEFAULT_STALE",
    "DEFAULT_TOPIC",
    "MAX_HEARTBEAT",
    "SIGNATURE_HEADER",
    "Change",
    "CoordinatorState",
    "DecodeError",
    "Event",
    "Follower",
    "FollowerError",
    "Level",
    "Limiter",
    "ScaleSource",
    "decode_event",
    "parse_level",
    "verify_webhook",
]
