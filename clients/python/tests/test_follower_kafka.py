"""The Follower against a broker: history, live updates, tombstones, errors."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Iterator

import pytest

from conftest import Kafka, embedded_broker, free_port, stop, wait_until
from helpers import event
from confluent_kafka import KafkaError, Producer

from mds_backpressure import DecodeError, Follower, FollowerError, Level
from mds_backpressure.follower import classify


@pytest.fixture
def errors() -> list[Exception]:
    return []


def follow(kafka: Kafka, topic: str, errors: list[Exception], **kw: object) -> Follower:
    return Follower(kafka.config, topic=topic, on_error=errors.append, **kw).start()  # type: ignore[arg-type]


@pytest.fixture
def closing() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for f in started:
        f.close()


def wait_level(f: Follower, want: Level, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        change = f.changed()  # before reading the level: no change is missed
        if f.level == want:
            return
        left = deadline - time.monotonic()
        if left <= 0 or not change.wait(left) and f.level != want:
            raise AssertionError(f"level {f.level}, want {want}; error {f.error}")


def test_late_starter_learns_compacted_state(kafka: Kafka, errors: list[Exception], closing: list[Follower]) -> None:
    topic = kafka.topic()
    kafka.send(topic, "a", event("a", "soft"))
    kafka.send(topic, "b", event("b", "hard", heartbeat_interval=5.0))
    kafka.send(topic, "gone", event("gone", "hard"))
    kafka.send(topic, "gone", None)
    kafka.send(topic, "old", event("old", "hard", ts=time.time() - 3600))
    f = follow(kafka, topic, errors)
    closing.append(f)
    wait_level(f, Level.HARD)
    coords = f.coordinators()
    assert {k: v.event.level for k, v in coords.items()} == {"a": Level.SOFT, "b": Level.HARD}
    assert coords["b"].event.heartbeat_interval == 5.0
    assert f.scale == 0.0
    assert f.error is None


def test_live_levels_tombstones_and_bad_records(kafka: Kafka, errors: list[Exception], closing: list[Follower]) -> None:
    topic = kafka.topic()
    seen: list[Level] = []
    f = follow(kafka, topic, errors, on_change=seen.append)
    closing.append(f)
    wait_until(lambda: f.error is None and f.level == Level.OK, what="a healthy follower")
    kafka.send(topic, "a", event("a", "soft"))
    wait_level(f, Level.SOFT)
    assert f.scale == 0.5
    kafka.send(topic, "b", event("b", "hard", write_rate=10.5, mode="x"))  # unknown fields are fine
    wait_level(f, Level.HARD)
    assert f.coordinators()["b"].event.write_rate == 10.5
    assert f.coordinators()["b"].event.extra == {"mode": "x"}
    kafka.send(topic, "b", b'{"level":')  # skipped and reported
    kafka.send(topic, "b", None)  # b stops cleanly
    wait_level(f, Level.SOFT)
    kafka.send(topic, "a", event("a", "ok"))
    wait_level(f, Level.OK)
    assert seen == [Level.SOFT, Level.HARD, Level.SOFT, Level.OK]
    assert any(isinstance(e, DecodeError) for e in errors), errors
    assert f.coordinators().keys() == {"a"}


def test_stale_coordinator_stops_counting(kafka: Kafka, errors: list[Exception], closing: list[Follower]) -> None:
    topic = kafka.topic()
    f = follow(kafka, topic, errors, stale=0.5)
    closing.append(f)
    kafka.send(topic, "a", event("a", "hard"))
    wait_level(f, Level.HARD)
    # No record follows: the follower wakes up by itself when a goes stale.
    wait_level(f, Level.OK, timeout=10)
    assert f.coordinators() == {}


def test_missing_topic_is_reported_until_it_exists(kafka: Kafka, errors: list[Exception], closing: list[Follower]) -> None:
    topic = kafka.topic(create=False)
    f = follow(kafka, topic, errors)
    closing.append(f)
    wait_until(lambda: f.error is not None, what="an error")
    err = f.error
    assert isinstance(err, FollowerError) and err.kind == "missing_topic", err
    kafka.create(topic)
    kafka.send(topic, "a", event("a", "hard"))
    wait_level(f, Level.HARD)
    wait_until(lambda: f.error is None, what="the error to clear")


def test_unreachable_brokers_are_reported(errors: list[Exception], closing: list[Follower]) -> None:
    port = free_port()  # nothing listens there
    f = Follower({"bootstrap.servers": f"127.0.0.1:{port}"}, on_error=errors.append).start()
    closing.append(f)
    wait_until(lambda: f.error is not None, what="an error")
    err = f.error
    assert err is not None and err.kind == "connection", err
    assert f.level == Level.OK


def test_await_changes(kafka: Kafka, errors: list[Exception], closing: list[Follower]) -> None:
    topic = kafka.topic()
    f = follow(kafka, topic, errors)
    closing.append(f)

    async def main() -> list[Level]:
        levels = []
        for cid, level in (("a", "hard"), ("a", "ok")):
            change = f.changed()
            await asyncio.to_thread(kafka.send, topic, cid, event(cid, level))
            await asyncio.wait_for(change, 20)
            levels.append(f.level)
        return levels

    assert asyncio.run(main()) == [Level.HARD, Level.OK]


def test_close_stops_the_thread(kafka: Kafka) -> None:
    f = Follower(kafka.config, topic=kafka.topic()).start()
    wait_until(lambda: f.error is None)
    start = time.monotonic()
    f.close()
    assert not any(t.name == "mds-backpressure-follower" and t.is_alive() for t in threading.enumerate())
    assert time.monotonic() - start < 10


def sasl(broker: str, user: str, password: str) -> dict[str, str]:
    return {
        "bootstrap.servers": broker,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": user,
        "sasl.password": password,
    }


def test_sasl_and_acls(sasl_broker: str, errors: list[Exception], closing: list[Follower]) -> None:
    admin = sasl(sasl_broker, "admin", "admin-secret")
    p = Producer(admin)
    p.produce("sasl.feedback", key=b"a", value=json.dumps(event("a", "hard")).encode())
    assert p.flush(30) == 0
    # Credentials pass through the confluent-kafka config.
    f = Follower(admin, topic="sasl.feedback", on_error=errors.append).start()
    closing.append(f)
    wait_level(f, Level.HARD)
    assert f.error is None
    # A user the ACLs do not allow to read.
    denied = Follower(sasl(sasl_broker, "nobody", "nobody-secret"), topic="sasl.feedback").start()
    closing.append(denied)
    wait_until(lambda: denied.error is not None, what="an error")
    err = denied.error
    assert err is not None and err.kind == "auth" and err.code == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    assert denied.level == Level.OK


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        # A real broker answers a wrong password with SASL_AUTHENTICATION_FAILED,
        # which librdkafka reports as _AUTHENTICATION (kfake drops the connection
        # instead, which reads as a connection error).
        (KafkaError._AUTHENTICATION, "auth"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, "auth"),
        (KafkaError._SSL, "auth"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, "auth"),
        (KafkaError._TRANSPORT, "connection"),
        (KafkaError._ALL_BROKERS_DOWN, "connection"),
        (KafkaError._RESOLVE, "connection"),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, "missing_topic"),
        (KafkaError._UNKNOWN_TOPIC, "missing_topic"),
        (KafkaError.INVALID_REQUEST, "other"),
    ],
)
def test_classify(code: int, kind: str) -> None:
    err = classify(KafkaError(code))
    assert (err.kind, err.code) == (kind, code)


def test_broker_outage_is_reported_and_clears(errors: list[Exception], closing: list[Follower]) -> None:
    port = free_port()
    proc = embedded_broker(port)
    try:
        kafka = Kafka({"bootstrap.servers": f"127.0.0.1:{port}"})
        topic = kafka.topic()
        f = follow(kafka, topic, errors)
        closing.append(f)
        wait_until(lambda: f.error is None, what="a healthy follower")
        stop(proc)
        wait_until(lambda: f.error is not None, what="the outage to show")
        err = f.error
        assert err is not None and err.kind == "connection", err
        proc = embedded_broker(port)  # an empty broker: the topic is gone with the old one
        wait_until(lambda: f.error is not None and f.error.kind == "missing_topic", what="the missing topic to show")
        kafka.create(topic)
        kafka.send(topic, "a", event("a", "soft"))
        wait_level(f, Level.SOFT)
        wait_until(lambda: f.error is None, what="the error to clear")
    finally:
        stop(proc)
