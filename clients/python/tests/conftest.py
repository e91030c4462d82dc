"""Fixtures: a Kafka broker (the processor's embedded one, or MDS_TEST_KAFKA_BROKERS)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parents[3]


def processor_binary() -> Path:
    """bin/processor (make test-python builds it), or MDS_TEST_PROCESSOR."""
    return _binary(Path(os.environ.get("MDS_TEST_PROCESSOR", REPO / "bin" / "processor")))


def _binary(path: Path) -> Path:
    if not path.exists():
        msg = f"{path} is missing: run `make test-python`, or `make build` first"
        if os.environ.get("MDS_TEST_REQUIRE_BROKER"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def stop(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Stops a process we started: SIGINT (it cleans up), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Kafka:
    """A broker to test against: its client config and a few helpers."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        quiet = {**config, "logger": logging.getLogger("tests.kafka")}  # not librdkafka's stderr
        self.admin = AdminClient(quiet)
        self.producer = Producer(quiet)

    def topic(self, create: bool = True) -> str:
        name = f"test.feedback.{uuid.uuid4().hex[:12]}"
        if create:
            self.create(name)
        return name

    def create(self, name: str, partitions: int = 1) -> None:
        fs = self.admin.create_topics([NewTopic(name, partitions, 1, config={"cleanup.policy": "compact"})])
        fs[name].result(30)

    def send(self, topic: str, key: str, value: bytes | dict[str, Any] | None) -> None:
        v = json.dumps(value).encode() if isinstance(value, dict) else value
        self.producer.produce(topic, key=key.encode(), value=v)
        assert self.producer.flush(30) == 0, "produce timed out"


def _external_config() -> dict[str, Any] | None:
    brokers = os.environ.get("MDS_TEST_KAFKA_BROKERS") or os.environ.get("MDS_IT_KAFKA_BROKERS")
    if not brokers:
        return None
    # Extra client settings (TLS, SASL) as a JSON object.
    extra = json.loads(os.environ.get("MDS_TEST_KAFKA_CONFIG", "{}"))
    return {"bootstrap.servers": brokers, **extra}


@pytest.fixture(scope="session")
def kafka() -> Iterator[Kafka]:
    """MDS_TEST_KAFKA_BROKERS or MDS_IT_KAFKA_BROKERS (with MDS_TEST_KAFKA_CONFIG, a JSON object of
    client settings) if set, else `processor dev --kafka-only` on a free port."""
    cfg = _external_config()
    if cfg is not None:
        yield Kafka(cfg)
        return
    port = free_port()
    proc = embedded_broker(port)
    try:
        yield Kafka({"bootstrap.servers": f"127.0.0.1:{port}"})
    finally:
        stop(proc)


def embedded_broker(port: int) -> subprocess.Popen[bytes]:
    """Starts `processor dev --kafka-only` on 127.0.0.1:port; stop it with stop()."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MDS_")}
    env["MDS_HTTP_ADDR"] = "127.0.0.1:0"
    proc = subprocess.Popen(
        [str(processor_binary()), "dev", "--kafka-only", "--rate", "0", "--partitions", "1", "--kafka-port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _accepts(port) or proc.poll() is not None, 30, "the embedded broker")
    except BaseException:
        stop(proc)
        raise
    assert proc.poll() is None, f"processor dev --kafka-only exited with {proc.returncode}"
    return proc


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def sasl_broker() -> Iterator[str]:
    """A kfake broker that requires SASL/PLAIN and enforces ACLs
    (tests/saslbroker: users admin/admin-secret and nobody/nobody-secret),
    with topic "sasl.feedback"; yields its address."""
    port = free_port()
    proc = subprocess.Popen(
        [str(_binary(REPO / "bin" / "mds-test-saslbroker")), "-port", str(port), "-topic", "sasl.feedback"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _accepts(port) or proc.poll() is not None, 30, "the SASL broker")
        assert proc.poll() is None, f"saslbroker exited with {proc.returncode}"
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)
