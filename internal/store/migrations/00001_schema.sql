-- Schema of market-data-store. Every statement tolerates objects that
-- already exist, so the migration also adopts a database created by hand.
-- Downgrades are not supported: there is no Down section.

-- +goose Up
CREATE TABLE IF NOT EXISTS ticks (
    ts       timestamptz      NOT NULL,
    symbol   text             NOT NULL,
    venue    text,
    price    double precision NOT NULL,
    size     double precision,
    bid      double precision,
    ask      double precision,
    bid_size double precision,
    ask_size double precision,
    seq      bigint
);
CREATE INDEX IF NOT EXISTS ticks_symbol_ts_idx ON ticks (symbol, ts DESC);
CREATE INDEX IF NOT EXISTS ticks_ts_idx ON ticks (ts DESC);

-- The next Kafka offset to consume, per consumer group and partition. It is
-- advanced in the same transaction as the rows, with a compare-and-set.
CREATE TABLE IF NOT EXISTS mds_offsets (
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

-- Records that could not be stored as ticks, exactly once per record.
CREATE TABLE IF NOT EXISTS mds_dead_letters (
    id          bigserial   PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea,
    value       bytea,
    reason      text        NOT NULL,
    error       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz,
    UNIQUE (topic, partition, "offset")
);
