"""Follower: the current backpressure level, read from the feedback topic."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Generator, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ._event import DecodeError, Event, Level, decode_event

__all__ = [
    "DEFAULT_TOPIC",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_STALE",
    "DEFAULT_SCALES",
    "MAX_HEARTBEAT",
    "CoordinatorState",
    "FollowerError",
    "Change",
    "Follower",
]

DEFAULT_TOPIC = "market.feedback"
DEFAULT_HEARTBEAT = 5.0  # seconds between re-publications of a coordinator's level
DEFAULT_STALE = 3 * DEFAULT_HEARTBEAT  # seconds a coordinator counts after its last event
DEFAULT_SCALES = (1.0, 0.5, 0.0)  # rate scale at ok, soft, hard
# The longest heartbeat interval an event may announce, so that a wild value
# cannot keep a coordinator counting for ever (seconds).
MAX_HEARTBEAT = 3600.0

# The proportional mode aims the producers' total rate at this share of the
# sustainable rate, and keeps its scale above this floor, from which a
# multiplicative step could not rise again.
_PROPORTIONAL_TARGET = 0.9
_MIN_PROPORTIONAL_SCALE = 0.01

_NS = 1_000_000_000
_log = logging.getLogger("mds_backpressure")
_log.addHandler(logging.NullHandler())  # the application decides what is printed


@dataclass(frozen=True)
class CoordinatorState:
    """The last event of one coordinator and when it stops counting."""

    event: Event
    expires_ns: int  # Unix nanoseconds


class FollowerError(Exception):
    """Why the follower cannot read the topic.

    kind is "connection" (brokers unreachable, timeouts), "auth" (TLS or SASL
    failure, or an ACL that denies the read), "missing_topic" or "other";
    code is the confluent_kafka.KafkaError code, if any.
    """

    def __init__(self, kind: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.code = code


_CONNECTION = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._RESOLVE,
    KafkaError._TIMED_OUT,
    KafkaError.NETWORK_EXCEPTION,
    KafkaError.BROKER_NOT_AVAILABLE,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
}
_AUTH = {
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.ILLEGAL_SASL_STATE,
    KafkaError.UNSUPPORTED_SASL_MECHANISM,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
# librdkafka looks up the coordinator of the follower's group although it
# never joins it nor commits: a denied group does not keep it from reading.
_NOT_READING = {KafkaError.GROUP_AUTHORIZATION_FAILED}
_MISSING = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}


def classify(err: KafkaError) -> FollowerError:
    """Classifies a Kafka error by its code (never by its text)."""
    code = err.code()
    if code in _AUTH:
        kind = "auth"
    elif code in _MISSING:
        kind = "missing_topic"
    elif code in _CONNECTION:
        kind = "connection"
    else:
        kind = "other"
    return FollowerError(kind, err.str(), code)


class Change:
    """The next level change (or, in the proportional mode, change of scale)
    after it was taken from Follower.changed().

    Wait for it with ``wait(timeout)`` from a thread or ``await change`` from
    a coroutine; both return at once if the change already happened.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._futures: list[asyncio.Future[None]] = []

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the change or the timeout; True if it happened."""
        return self._event.wait(timeout)

    def is_set(self) -> bool:
        return self._event.is_set()

    def __await__(self) -> Generator[Any, None, None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._event.is_set():
                fut.set_result(None)
            else:
                self._futures.append(fut)
                fut.add_done_callback(self._discard)  # a cancelled wait leaves nothing behind
        return fut.__await__()

    def _discard(self, fut: asyncio.Future[None]) -> None:
        with self._lock:
            if fut in self._futures:
                self._futures.remove(fut)

    def _set(self) -> None:
        with self._lock:
            self._event.set()
            futures, self._futures = self._futures, []
        for fut in futures:
            fut.get_loop().call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # the awaiting task may have been cancelled
        fut.set_result(None)


class Follower:
    """Follows the feedback topic and tracks the pipeline's backpressure level.

    The level is the worst among the coordinators heard from within their
    stale period: ``stale`` seconds after an event, or three of the
    heartbeat intervals the event announces if that is longer (capped at
    MAX_HEARTBEAT). A tombstone (a record without a value) drops its
    coordinator at once. With no coordinator heard from, the level is OK.
    Event times (ts) are compared with the local clock, never counting from
    the future: hosts' clocks must agree to well within the stale period.

    It is a plain consumer (no group membership, no commits) that reads the
    topic from the beginning, then live, on a thread of its own started by
    ``start()`` and stopped by ``close()``. ``config`` is a confluent-kafka
    configuration: ``bootstrap.servers`` and, for TLS and SASL, the usual
    ``security.protocol``, ``ssl.*`` and ``sasl.*`` settings. With ACLs, the
    principal needs Describe and Read on the topic only. ``level``,
    ``scale``, ``coordinators``, ``error`` and ``changed`` are safe to call
    from any thread; ``on_change`` and ``on_error`` are called on the
    follower's thread and must not block. librdkafka's own log lines go to
    the logger "mds_backpressure.kafka" unless ``config`` sets ``logger``.

    ``scale`` is the rate scale of the level (``scales``). With
    ``proportional_soft=True`` (Go's WithProportionalSoft), the scale at
    SOFT follows what the store sustains instead, from the events' optional
    ``sustainable_rate`` and ``arrival_rate`` (a publisher that does not
    send them leaves the scale as it is). On entering SOFT from OK it starts
    at the OK scale; from HARD, at the soft scale. Then each new event of a
    SOFT coordinator multiplies it by 0.9 x sustainable_rate / arrival_rate
    (by at least 0.5 and at most 2 per event; the smallest factor among the
    SOFT coordinators), and it stays within [0.01, the OK scale]. Producers
    that all follow the same coordinators this way steer their total rate
    toward 90 % of what the store sustains instead of halving it. Levels and
    the other scales are unchanged; ``changed`` also fires when the
    proportional scale changes (``on_change`` only on level changes).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        topic: str = DEFAULT_TOPIC,
        stale: float = DEFAULT_STALE,
        scales: tuple[float, float, float] = DEFAULT_SCALES,
        proportional_soft: bool = False,
        on_change: Callable[[Level], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,  # the wall clock, in Unix nanoseconds
    ) -> None:
        if not topic:
            raise ValueError("empty topic")
        if not stale > 0:
            raise ValueError(f"stale period {stale} must be > 0")
        ok, soft, hard = scales
        if not 0 <= hard <= soft <= ok <= 1:
            raise ValueError(f"scales ok={ok} soft={soft} hard={hard} must satisfy 0 <= hard <= soft <= ok <= 1")
        self.topic = topic
        self._stale_ns = int(stale * _NS)
        self._scales = (float(ok), float(soft), float(hard))
        self._proportional = proportional_soft
        self._on_change = on_change
        self._on_error = on_error
        self._clock_ns = clock_ns
        self._config = dict(config)
        self._config.setdefault("group.id", f"mds-backpressure-follower-{uuid.uuid4()}")  # never joined
        self._config.setdefault("logger", _log.getChild("kafka"))
        self._config.update({"enable.auto.commit": False, "enable.partition.eof": True})
        self._user_error_cb = self._config.get("error_cb")
        self._config["error_cb"] = self._kafka_error

        self._lock = threading.Lock()
        self._coords: dict[str, CoordinatorState] = {}
        self._fresh: set[str] = set()  # coordinators with an event not yet seen by _evaluate
        self._level = Level.OK
        self._soft = 0.0  # the scale at SOFT in the proportional mode
        self._change = Change()
        self._conn_err: FollowerError | None = None  # until a metadata request succeeds
        self._fetch_err: FollowerError | None = None  # until records are read again
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- state, safe from any thread ---

    @property
    def level(self) -> Level:
        with self._lock:
            return self._level

    @property
    def scale(self) -> float:
        """The rate scale of the current level (at SOFT in the proportional mode, the proportional scale)."""
        with self._lock:
            if self._proportional and self._level == Level.SOFT:
                return self._soft
            return self._scales[self._level]

    def coordinators(self) -> dict[str, CoordinatorState]:
        """The coordinators that count now, by id (record key)."""
        with self._lock:
            return dict(self._coords)

    @property
    def error(self) -> FollowerError | None:
        """What keeps the follower from reading the topic, or None.

        A failed connection (unreachable brokers, TLS, SASL) until the
        brokers answer again, then a failed fetch (missing topic, denied ACL)
        until records are read again. While it is set the level may be out of
        date: with no coordinator heard from, it falls to OK.
        """
        with self._lock:
            return self._conn_err or self._fetch_err

    def changed(self) -> Change:
        """The next level change (or, in the proportional mode, change of
        scale): take it before reading the level, so none is missed."""
        with self._lock:
            return self._change

    # --- lifecycle ---

    def start(self) -> Follower:
        """Starts following on a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("follower already started")
        consumer = Consumer(self._config)
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="mds-backpressure-follower", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Stops the thread and closes the Kafka client."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Follower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the follower's thread ---

    _POLL = 0.2  # longest block in the client, so close() is prompt (seconds)
    _METADATA_EVERY = 10.0  # partition discovery while healthy (seconds)
    _METADATA_RETRY = 1.0  # and while the brokers fail (seconds)

    def _run(self, consumer: Consumer) -> None:
        assigned: set[int] = set()
        last_meta = float("-inf")
        try:
            while not self._stop.is_set():
                next_ns = self._evaluate(self._clock_ns())
                every = self._METADATA_RETRY if self.error is not None else self._METADATA_EVERY
                if time.monotonic() - last_meta >= every:
                    self._discover(consumer, assigned)
                    last_meta = time.monotonic()
                timeout = self._POLL
                if next_ns is not None:  # wake up when the first coordinator goes stale
                    timeout = max(0.0, min(timeout, (next_ns - self._clock_ns()) / _NS))
                # Wait for the first record only, then take what is already there.
                first = consumer.poll(timeout)
                msgs = [] if first is None else [first, *consumer.consume(499, 0)]
                now = self._clock_ns()
                read = False
                fetch_err: FollowerError | None = None
                for m in msgs:
                    err = m.error()
                    if err is None:
                        read = True
                        self._apply(m.key(), m.value(), now, where=f"{m.topic()}/{m.partition()}@{m.offset()}")
                    elif err.code() == KafkaError._PARTITION_EOF:
                        read = True  # caught up: the fetch works
                    else:
                        fe = classify(err)
                        self._report(fe)
                        if fe.code not in _NOT_READING:
                            fetch_err = fe
                if fetch_err is not None or read:
                    with self._lock:
                        self._fetch_err = fetch_err
        finally:
            consumer.close()

    def _discover(self, consumer: Consumer, assigned: set[int]) -> None:
        """Assigns the topic's partitions not yet assigned, from the beginning.

        A metadata answer also proves the brokers are reachable and accept
        our credentials, and tells whether the topic exists."""
        try:
            md = consumer.list_topics(self.topic, timeout=self._METADATA_RETRY)
        except KafkaException as exc:
            err = classify(exc.args[0])
            with self._lock:
                if self._conn_err is None or err.kind != "connection":
                    self._conn_err = err  # error_cb's cause, if any, is more precise
            self._report(err)
            return
        with self._lock:
            self._conn_err = None
        t = md.topics.get(self.topic)
        if t is None or t.error is not None:
            err = classify(t.error) if t is not None and t.error is not None else FollowerError("missing_topic", f"topic {self.topic} not found")
            with self._lock:
                self._fetch_err = err
            self._report(err)
            return
        new = sorted(set(t.partitions) - assigned)
        if new:
            consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new])
            assigned.update(new)
        with self._lock:
            if self._fetch_err is not None and self._fetch_err.kind == "missing_topic":
                self._fetch_err = None

    def _kafka_error(self, err: KafkaError) -> None:
        # Called from consume() on the follower's thread.
        fe = classify(err)
        if fe.kind in ("connection", "auth") and fe.code not in _NOT_READING:
            with self._lock:
                self._conn_err = fe
        self._report(fe)
        if self._user_error_cb is not None:
            self._user_error_cb(err)

    def _report(self, err: Exception) -> None:
        if self._on_error is not None:
            self._on_error(err)

    # --- the contract shared with backpressure/follower.go ---

    def _apply(self, key: bytes | None, value: bytes | None, now_ns: int, where: str = "") -> None:
        """Records one feedback record. A record without a value (a tombstone) forgets its coordinator."""
        cid = key.decode("utf-8", "surrogateescape") if key else ""
        if value is None:
            with self._lock:
                self._coords.pop(cid, None)
                self._fresh.discard(cid)
            return
        try:
            e = decode_event(value)
        except DecodeError as exc:
            self._report(DecodeError(f"decoding feedback record {where}: {exc}"))
            return
        if not cid:
            cid = e.coordinator_id
        # An event counts from when it was raised, but never from the future:
        # records read back from the compacted history are as old as they say.
        at = now_ns
        if e.ts > 0 and e.time_ns() < now_ns:
            at = e.time_ns()
        # A coordinator counts for the stale period, or three of its heartbeat
        # intervals if that is longer.
        stale = self._stale_ns
        if e.heartbeat_interval > 0:
            stale = max(stale, 3 * int(min(e.heartbeat_interval, MAX_HEARTBEAT) * 1e9))
        with self._lock:
            self._coords[cid] = CoordinatorState(e, at + stale)
            self._fresh.add(cid)

    def _evaluate(self, now_ns: int) -> int | None:
        """Forgets coordinators past their stale period, recomputes the level
        (and, in the proportional mode, the scale at SOFT), signals a change,
        and returns when the next coordinator goes stale."""
        worst = Level.OK
        nxt: int | None = None
        factor = 0.0  # proportional mode: smallest 0.9 x sustainable / arrival of a new SOFT event
        with self._lock:
            for cid, st in list(self._coords.items()):
                if now_ns >= st.expires_ns:
                    del self._coords[cid]
                    continue
                worst = max(worst, st.event.level)
                if nxt is None or st.expires_ns < nxt:
                    nxt = st.expires_ns
                e = st.event
                if cid in self._fresh and e.level == Level.SOFT and e.sustainable_rate > 0 and e.arrival_rate > 0:
                    r = _PROPORTIONAL_TARGET * e.sustainable_rate / e.arrival_rate
                    if factor == 0 or r < factor:
                        factor = r
            self._fresh.clear()
            changed = worst != self._level
            signal = changed
            if self._proportional and worst == Level.SOFT:
                soft = self._soft
                if self._level == Level.OK:  # producers were at the OK scale: the rates measured it
                    soft = self._scales[Level.OK]
                elif self._level == Level.HARD:  # producers were stopped: the rates say nothing yet
                    soft, factor = self._scales[Level.SOFT], 0.0
                if factor > 0:
                    soft *= min(max(factor, 0.5), 2.0)
                soft = min(max(soft, _MIN_PROPORTIONAL_SCALE), self._scales[Level.OK])
                signal = signal or soft != self._soft
                self._soft = soft
            self._level = worst
            if signal:
                done, self._change = self._change, Change()
        if signal:
            done._set()
        if changed and self._on_change is not None:
            self._on_change(worst)
        return nxt
