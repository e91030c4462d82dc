"""The feedback event and its decoding, as backpressure/event.go defines them."""

from __future__ import annotations

import enum
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

__all__ = ["Level", "Event", "DecodeError", "parse_level", "decode_event"]


class Level(enum.IntEnum):
    """Backpressure level of one coordinator, ordered from no pressure to stop."""

    OK = 0  # queue at or below the low watermark: full speed
    SOFT = 1  # between the watermarks: slow down
    HARD = 2  # at or above the high watermark: stop

    def __str__(self) -> str:
        return self.name.lower()


def _fold_ascii(s: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


def parse_level(s: str) -> Level:
    """Parse "ok", "soft" or "hard" with ASCII letters in any case ("Hard").

    Other spellings, Unicode look-alikes included, raise ValueError.
    """
    folded = _fold_ascii(s)
    for level in Level:
        if folded == str(level):
            return level
    raise ValueError(f"unknown level {s!r} (want ok, soft or hard)")


class DecodeError(ValueError):
    """A feedback record that is not a feedback event (the follower skips it)."""


@dataclass(frozen=True)
class Event:
    """One feedback event: the queue state of one coordinator.

    It is the value of the feedback topic (keyed by coordinator_id) and the
    body of the webhook; docs/feedback-event.schema.json specifies it.
    Properties this version does not know are kept in ``extra``.
    """

    coordinator_id: str = ""
    queue_size: int = 0
    capacity: int = 0
    utilization: float = 0.0
    level: Level = Level.OK
    reason: str = ""
    source: str = ""
    ts: float = 0.0  # Unix seconds with a fraction
    # The publisher's heartbeat interval in seconds, optional (0: not given).
    heartbeat_interval: float = 0.0
    # Optional measurements behind the level (0: zero or not measured); rates
    # are records per second over the coordinator's partitions.
    lag_records: int = 0  # records not yet written
    lag_seconds: float = 0.0  # age of the oldest record not yet written
    arrival_rate: float = 0.0  # what producers write now
    write_rate: float = 0.0  # what the store commits now
    sustainable_rate: float = 0.0  # what the store was measured to sustain
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def time_ns(self) -> int:
        """ts as Unix nanoseconds, truncated as Go's Event.Time does."""
        sec = int(self.ts)
        return sec * 1_000_000_000 + int((self.ts - sec) * 1e9)


class _Number(str):
    """A JSON number kept as its literal, so each field can parse it as Go does."""


class _Object(list[tuple[str, Any]]):
    """A JSON object kept as its key/value pairs in order, duplicates included."""


def _reject_constant(name: str) -> Any:
    raise DecodeError(f"invalid JSON number {name}")


def _as_int(v: Any) -> int:
    if isinstance(v, _Number):
        # Go's int: an integer literal that fits in 64 bits.
        if not any(c in v for c in ".eE"):
            n = int(v)
            if -(1 << 63) <= n < (1 << 63):
                return n
    raise TypeError("not a 64-bit integer")


def _as_float(v: Any) -> float:
    if isinstance(v, _Number):
        f = float(v)
        if not math.isinf(f):  # Go refuses numbers out of float64 range
            return f
    raise TypeError("not a float64")


def _as_str(v: Any) -> str:
    if isinstance(v, str) and not isinstance(v, _Number):
        return v
    raise TypeError("not a string")


def _as_level(v: Any) -> Level:
    return parse_level(_as_str(v))


_FIELDS: dict[str, Callable[[Any], Any]] = {
    "coordinator_id": _as_str,
    "queue_size": _as_int,
    "capacity": _as_int,
    "utilization": _as_float,
    "level": _as_level,
    "reason": _as_str,
    "source": _as_str,
    "ts": _as_float,
    "heartbeat_interval": _as_float,
    "lag_records": _as_int,
    "lag_seconds": _as_float,
    "arrival_rate": _as_float,
    "write_rate": _as_float,
    "sustainable_rate": _as_float,
}

# Go's encoding/json matches object keys to fields ignoring case under
# Unicode simple folding; the only non-ASCII letters that fold to ASCII ones
# are the long s and the Kelvin sign.
_GO_FOLD = str.maketrans({"\u017f": "s", "\u212a": "k"})


def _field_name(key: str) -> str | None:
    if key in _FIELDS:
        return key
    folded = _fold_ascii(key.translate(_GO_FOLD))
    return folded if folded in _FIELDS else None


def _plain(v: Any) -> Any:
    """Turns kept number literals back into int or float for ``extra``."""
    if isinstance(v, _Number):
        return float(v) if any(c in v for c in ".eE") else int(v)
    if isinstance(v, _Object):
        return {k: _plain(x) for k, x in v}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def decode_event(value: bytes | str) -> Event:
    """Decode a feedback record value exactly as the Go follower does.

    Go's ``json.Unmarshal`` into ``backpressure.Event`` is the reference:
    unknown properties are ignored (and kept in ``extra``), keys match
    fields case-insensitively, a later duplicate key wins, ``null`` leaves a
    field at its zero value, a whole-value ``null`` is an all-zero event,
    and a value of the wrong JSON type, an integer field given a fraction or
    exponent, a number out of range, or an unknown level raise DecodeError.
    """
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        doc = json.loads(
            text,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_reject_constant,
            object_pairs_hook=_Object,
        )
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise DecodeError(f"invalid JSON: {exc}") from None
    if doc is None:
        return Event()
    if not isinstance(doc, _Object):
        raise DecodeError("feedback event is not a JSON object")
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, v in doc:
        name = _field_name(key)
        if name is None:
            extra[key] = _plain(v)
            continue
        if v is None:
            continue  # Go leaves the field as it was
        try:
            fields[name] = _FIELDS[name](v)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"field {name}: {exc}") from None
    return Event(**fields, extra=extra)

