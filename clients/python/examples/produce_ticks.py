"""Produce synthetic market ticks, slowing down as market-data-store asks.

Like cmd/tickgen: a Follower reads the feedback topic and a Limiter paces
the loop at --rate ticks per second times the level's scale (ok 1.0,
soft 0.5, hard 0: held until the level falls). One status line a second.

    python examples/produce_ticks.py --brokers localhost:9092 --rate 2000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timezone

from confluent_kafka import Producer

from mds_backpressure import Follower, Limiter


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", default="localhost:9092")
    p.add_argument("--topic", default="market.ticks")
    p.add_argument("--feedback-topic", default="market.feedback")
    p.add_argument("--rate", type=float, default=1000.0, help="ticks per second at level ok")
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    p.add_argument("-X", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a confluent-kafka setting, e.g. -X security.protocol=SASL_SSL (repeatable)")
    args = p.parse_args(argv)

    kafka = {"bootstrap.servers": args.brokers}
    for kv in args.settings:  # TLS and SASL: security.protocol, ssl.*, sasl.*
        key, _, value = kv.partition("=")
        kafka[key] = value
    producer = Producer({**kafka, "linger.ms": 5})
    symbols = [f"SYM{i:03d}" for i in range(args.symbols)]
    prices = {s: 100.0 for s in symbols}
    sent, seq = 0, 0
    end = time.monotonic() + args.duration if args.duration > 0 else float("inf")
    next_report = time.monotonic() + 1
    try:
        with Follower(kafka, topic=args.feedback_topic) as follower:
            limiter = Limiter(args.rate, source=follower)
            while time.monotonic() < end:
                if time.monotonic() >= next_report:
                    next_report += 1
                    err = follower.error
                    print(f"level {follower.level} rate {limiter.rate:.0f}/s sent {sent}" + (f" feedback_error={err}" if err else ""), flush=True)
                if not limiter.wait(timeout=0.5):
                    continue  # held (level hard): report and wait again
                sym = random.choice(symbols)
                prices[sym] = round(prices[sym] * (1 + random.gauss(0, 0.0005)), 4)
                seq += 1
                tick = {
                    "ts": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                    "symbol": sym,
                    "venue": "XPY",
                    "price": prices[sym],
                    "size": random.randint(1, 500),
                    "seq": seq,
                }
                try:
                    producer.produce(args.topic, key=sym, value=json.dumps(tick))
                except BufferError:
                    producer.poll(0.1)  # the local queue is full: let it drain
                    continue
                producer.poll(0)
                sent += 1
    except KeyboardInterrupt:
        pass
    producer.flush(10)
    print(f"sent {sent}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
