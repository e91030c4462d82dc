"""End to end: a running processor is driven to hard and back, and the
Python follower sees each level within one heartbeat of its publication.

The load comes from examples/produce_ticks.py, which must obey the level.
Against the embedded broker (`processor dev`, its throwaway PostgreSQL), or
against MDS_TEST_KAFKA_BROKERS with MDS_TEST_DATABASE_URL (`processor run`).
The store is stalled by locking table ticks from another connection (psql).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import REPO, _external_config, free_port, processor_binary, stop, wait_until
from mds_backpressure import Follower, Level

HEARTBEAT = 1.0  # MDS_FB_HEARTBEAT_INTERVAL of the processor under test


def test_processor_to_hard_and_back(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    ticks, feedback, coord = f"e2e.ticks.{run}", f"e2e.feedback.{run}", f"e2e-{run}"
    settings = {
        "MDS_KAFKA_TOPICS": ticks,
        "MDS_KAFKA_GROUP": f"e2e-{run}",
        "MDS_FEEDBACK_TOPIC": feedback,
        "MDS_COORDINATOR_ID": coord,
        "MDS_COORDINATOR_CAPACITY": "2000",
        "MDS_COORDINATOR_BATCH_SIZE": "200",
        "MDS_FB_HEARTBEAT_INTERVAL": f"{HEARTBEAT}s",
        "MDS_HTTP_ADDR": "127.0.0.1:0",
    }
    external = _external_config()
    log = tmp_path / "processor.log"
    if external is None:
        port = free_port()
        brokers = f"127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MDS_")} | settings
        cmd = [str(processor_binary()), "dev", "--rate", "0", "--partitions", "2", "--kafka-port", str(port)]
        kafka: dict[str, Any] = {"bootstrap.servers": brokers}
    else:
        db = os.environ.get("MDS_TEST_DATABASE_URL")
        if not db:
            pytest.fail("MDS_TEST_KAFKA_BROKERS needs MDS_TEST_DATABASE_URL (go run ./internal/tools/withpg -- ...)")
        kafka = external
        brokers = external["bootstrap.servers"]
        # Kafka TLS/SASL settings for the processor come from the environment (MDS_KAFKA_*).
        env = dict(os.environ) | settings | {"MDS_KAFKA_BROKERS": brokers, "MDS_DATABASE_URL": db}
        cmd = [str(processor_binary()), "run"]
        # processor run consumes the topic but does not create it.
        admin = AdminClient(dict(external))
        admin.create_topics([NewTopic(ticks, 2, -1)])[ticks].result(30)
    seen: list[tuple[float, Level, float]] = []  # when, level, ts of the event behind it

    def on_change(level: Level) -> None:
        st = follower.coordinators().get(coord)
        seen.append((time.time(), level, st.event.ts if st else float("nan")))

    follower = Follower(kafka, topic=feedback, on_change=on_change)
    procs: list[subprocess.Popen[Any]] = []
    lock: subprocess.Popen[str] | None = None
    try:
        with open(log, "wb") as out:
            procs.append(subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT))
        follower.start()
        # The processor publishes a heartbeat every second once it runs.
        wait_until(lambda: coord in follower.coordinators() or procs[0].poll() is not None, 120, "the processor's first event")
        assert procs[0].poll() is None, log.read_text()[-3000:]
        if external is None:
            m = re.search(r"PostgreSQL at ([^\s,]+)", log.read_text())  # "dev: PostgreSQL at URL, with(out) TimescaleDB"
            assert m, "no PostgreSQL URL in the processor's output"
            db = m.group(1)
        producer_out = tmp_path / "producer.log"
        with open(producer_out, "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-u", str(REPO / "clients/python/examples/produce_ticks.py"), "--brokers", brokers,
                     "--topic", ticks, "--feedback-topic", feedback, "--rate", "3000",
                     *(f"-X{k}={v}" for k, v in kafka.items() if k != "bootstrap.servers")],
                    stdout=out, stderr=subprocess.STDOUT,
                )
            )
        wait_until(lambda: " sent " in producer_out.read_text() and _sent(producer_out) > 0, 60, "ticks to flow")
        # Stall the store: writes wait on the lock, the queue fills, the level rises to hard.
        lock = subprocess.Popen(["psql", db, "-X", "-q", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, text=True)
        assert lock.stdin is not None
        lock.stdin.write("BEGIN; LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE;\n")
        lock.stdin.flush()
        wait_until(lambda: follower.level == Level.HARD, 60, "level hard")
        # The example producer obeys: it reports hard and a rate of 0.
        wait_until(lambda: "level hard rate 0/s" in producer_out.read_text(), 30, "the producer to hold")
        lock.stdin.write("ROLLBACK;\n")
        lock.stdin.close()
        lock.wait(30)
        wait_until(lambda: follower.level == Level.OK, 60, "level ok")
        wait_until(lambda: "level ok rate 3000/s" in producer_out.read_text().split("level hard")[-1], 30, "the producer to resume")
    finally:
        follower.close()
        if lock is not None and lock.poll() is None:
            lock.kill()
            lock.wait()
        for p in reversed(procs):
            stop(p)
    levels = [level for _, level, _ in seen]
    assert Level.HARD in levels and levels[-1] == Level.OK, seen
    for when, level, ts in seen:
        print(f"{level}: seen {when - ts:.3f}s after the event was raised")
        # Seen within one heartbeat of the event that raised it.
        assert when - ts <= HEARTBEAT, f"{level} seen {when - ts:.3f}s after it was published"


def _sent(path: Path) -> int:
    m = re.findall(r" sent (\d+)", path.read_text())
    return int(m[-1]) if m else 0
