"""Runs docs/feedback-vectors against the Python follower (the Go one runs them too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from mds_backpressure import Follower, Limiter, decode_event
from mds_backpressure._event import DecodeError

DOCS = Path(__file__).resolve().parents[3] / "docs"
VECTORS = sorted((DOCS / "feedback-vectors").glob("*.json"))
SCHEMA = json.loads((DOCS / "feedback-event.schema.json").read_text())


def test_vectors_exist() -> None:
    assert len(VECTORS) >= 5, f"vectors missing from {DOCS / 'feedback-vectors'}"


def _value(record: dict[str, Any]) -> bytes | None:
    if record.get("tombstone"):
        return None
    if "raw" in record:
        return str(record["raw"]).encode()
    return json.dumps(record["event"]).encode()


def _schema_valid(value: bytes) -> bool:
    try:
        doc = json.loads(value.decode("utf-8", "strict"), parse_constant=_no_constant)
    except ValueError:
        return False  # not JSON at all
    return jsonschema.Draft202012Validator(SCHEMA).is_valid(doc)


def _no_constant(name: str) -> Any:
    raise ValueError(name)


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
def test_vector(path: Path) -> None:
    v = json.loads(path.read_text())
    conf = v["follower"]
    f = Follower(
        {"bootstrap.servers": "127.0.0.1:1"},
        stale=conf["stale"],
        scales=tuple(conf["scales"]),
        proportional_soft=conf.get("proportional_soft", False),
    )
    lim = Limiter(conf["target_rate"], source=f)
    expects = 0
    changed = f.changed()
    for i, step in enumerate(v["steps"]):
        now = v["epoch"] * 1_000_000_000 + step["at_ms"] * 1_000_000
        where = f"step {i} at {step['at_ms']} ms ({step.get('note', '')})"
        if "record" in step:
            record = step["record"]
            value = _value(record)
            if value is not None:
                try:
                    decode_event(value)
                    decodes = True
                except DecodeError:
                    decodes = False
                assert decodes == step.get("decodes", True), where
                assert _schema_valid(value) == step.get("schema_valid", True), f"{where}: schema verdict"
            f._apply(record["key"].encode(), value, now)
        else:
            expects += 1
            want = step["expect"]
            f._evaluate(now)
            assert str(f.level) == want["level"], where
            assert lim.rate == want["rate"], where
            if "changed" in want:
                assert changed.is_set() == want["changed"], f"{where}: changed"
            changed = f.changed()
            got = {cid: str(st.event.level) for cid, st in f.coordinators().items()}
            assert got == want["coordinators"], where
    assert expects > 0, "vector checks nothing"


def test_schema_examples_are_valid_events() -> None:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    validator.check_schema(SCHEMA)
    for example in SCHEMA["examples"]:
        validator.validate(example)
        decode_event(json.dumps(example))
