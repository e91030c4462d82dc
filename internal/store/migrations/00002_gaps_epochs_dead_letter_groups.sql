-- Offsets remember where they were read (leader epoch, topic id), skipped
-- ranges are recorded, and dead letters belong to a consumer group.

-- +goose Up
-- The leader epoch of the last record written (-1: unknown), so that the
-- consumer seeks with it and franz-go detects a truncated log (KIP-320);
-- the Kafka topic id, so that a recreated topic is recognised as a new log.
ALTER TABLE mds_offsets ADD COLUMN IF NOT EXISTS leader_epoch integer NOT NULL DEFAULT -1;
ALTER TABLE mds_offsets ADD COLUMN IF NOT EXISTS topic_id uuid;

-- Ranges of a partition the consumer moved past without writing their
-- records because they are gone from Kafka, recorded in the transaction
-- that moves the stored offset past them (see tick.Gap).
CREATE TABLE IF NOT EXISTS mds_offset_gaps (
    id             bigserial   PRIMARY KEY,
    consumer_group text        NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    from_offset    bigint      NOT NULL,
    to_offset      bigint      NOT NULL,
    lost_records   bigint      NOT NULL,
    reason         text        NOT NULL,
    detail         text        NOT NULL DEFAULT '',
    detected_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS mds_offset_gaps_partition_idx ON mds_offset_gaps (consumer_group, topic, partition, id);

-- Dead letters are unique per consumer group: two groups reading one topic
-- each keep their own. Rows from before this migration belong to group ''.
ALTER TABLE mds_dead_letters ADD COLUMN IF NOT EXISTS consumer_group text NOT NULL DEFAULT '';
ALTER TABLE mds_dead_letters DROP CONSTRAINT IF EXISTS mds_dead_letters_topic_partition_offset_key;
CREATE UNIQUE INDEX IF NOT EXISTS mds_dead_letters_group_record_key
    ON mds_dead_letters (consumer_group, topic, partition, "offset");
