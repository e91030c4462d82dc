// Package store owns the database: the pgx connection pool, the schema and
// its migrations, and every SQL statement of the service.
//
// # Writing: exactly once
//
// Write stores one *tick.Batch in ONE transaction, in this order:
//
//  0. BEGIN, with SET LOCAL statement_timeout and lock_timeout at 4/5 of
//     MDS_DB_WRITE_TIMEOUT, in the same round trip (pgx sends a query
//     without arguments as one simple-protocol message). The whole
//     transaction is also bounded by MDS_DB_WRITE_TIMEOUT on the client
//     (ctx). So a lock on ticks (DDL, a TimescaleDB job) or a silent
//     connection ends the attempt with a temporary error instead of holding
//     it forever, and the server stops waiting too (a backend waiting for a
//     lock does not notice its client has gone). SET LOCAL ends with the
//     transaction: migrations and reads on the pool keep the defaults.
//  1. The offset compare-and-set of every partition range of the batch
//     (Batch.Ranges), pipelined in one round trip. A range with From = -1
//     expects no stored row and inserts one; any other From must equal the
//     stored next_offset, which moves to Next. A statement that affects 0
//     rows means another member owns the partition: the transaction rolls
//     back and Write returns a *tick.FencedError naming every fenced
//     partition of the batch. The statements lock the offset rows, so a
//     zombie and the new owner of a partition serialize, and the later one
//     sees 0 rows.
//  2. COPY of the tick rows into ticks in PostgreSQL's binary format,
//     encoded by this package straight from the batch's records into the
//     buffer pgconn sends (PgConn.CopyFrom on the transaction's
//     connection): no statement describe round trip, no per-value type
//     lookup, no allocation per row, no goroutine of ours. Timestamps are
//     floored to the microsecond, as pgx does; an optional field whose bit
//     is clear in Tick.Has is NULL (so a venue is NULL only when absent).
//     The encoding assumes the column types of the migrations: a ticks
//     table altered to other types fails the write with a permanent error
//     (never dead letters).
//  3. The dead letters of the batch's chunks into mds_dead_letters, keyed by
//     the consumer group: unique per (group, topic, partition, offset). A
//     dead letter the group already holds for its record (a topic recreated
//     under the same name reuses offsets) is skipped, counted in
//     mds_dead_letters_conflicts_total and logged.
//  4. The gaps the chunks move past (tick.Gap: records gone from Kafka)
//     into mds_offset_gaps, so a gap is recorded exactly when the stored
//     offset moves past it; on commit each is counted and logged at error
//     level.
//
// The offset row also keeps the leader epoch of the range's last record and
// the Kafka topic id, which the consumer seeks and checks with.
//
// The COPY of a batch runs without a savepoint: a batch that commits costs
// four round trips (BEGIN, offsets, COPY, COMMIT) and no subtransaction.
// When the COPY (or the COMMIT, for a deferred constraint) fails with a
// refusal (isRefusal: a SQLSTATE that is not temporary, not a layout error)
// that may depend on a row (not class 42, 3F, 3D, 25, 28 or 0A, which no
// row causes and which fail the write at once), Write rolls back and redoes
// the batch in a second transaction, bounded the same way, that sets
// deferred constraints IMMEDIATE, locks ticks in ROW EXCLUSIVE mode for the
// whole transaction (so DDL cannot change the table halfway) and bisects the
// rows under savepoints: each half is tried on its own, down to single rows.
// It writes the good rows and stores each row refused alone as a dead
// letter with reason tick.ReasonRejected, its raw Kafka key and value and
// "SQLSTATE: message" as the error. So bad input never blocks a partition,
// and every record of the batch's ranges is stored once, as a row or as a
// dead letter, together with the offsets that cover it. When every row of a
// batch of two or more is refused alone and none for its data (class 22 or
// 23: a unique key refusing a replay is the rows' fault), the cause is not
// in the rows (a trigger refusing everything): Write writes nothing and
// returns a permanent error wrapping the first row's *pgconn.PgError, whose
// SQLState names the cause. A single-row batch cannot tell the two apart:
// its refused row is a dead letter.
//
// Any other failure rolls back and returns an error with a Temporary() bool
// method (IsTemporary tells the same): connection loss, timeouts (the
// client deadline, 57014, 55P03), 40001, 40P01, class 53, 57P01-57P03 and
// the like are temporary and worth a retry of the same batch; the rest are
// not. Write never retries by itself and never drops a batch: the caller
// decides. Write blocks for as long as its statements do, including on the
// offset row lock of a concurrent writer of the same partition, and at most
// MDS_DB_WRITE_TIMEOUT per transaction.
//
// LoadOffsets returns the stored next offsets with their leader epochs and
// topic ids, for the consumer to seek to on assignment. ListGaps serves
// processor gaps.
//
// # Schema and migrations
//
// Migrate first takes a PostgreSQL advisory lock on a connection of its
// own (beside the pool), then applies the goose migrations embedded from
// migrations/ (table goose_db_version keeps the version), then reconciles
// the TimescaleDB settings, and releases the lock by closing that
// connection. Nothing reads or creates goose_db_version before the lock is
// held, so instances starting together migrate one at a time and the
// server logs no error; a re-run changes nothing. PlanMigrations lists
// what Migrate would do without changing anything (and without the lock).
//
//	ticks(ts timestamptz NOT NULL, symbol text NOT NULL, venue text,
//	      price double precision NOT NULL, size, bid, ask, bid_size,
//	      ask_size double precision, seq bigint)
//	      indexes (symbol, ts DESC) and (ts DESC)
//	mds_offsets(consumer_group, topic, partition, next_offset,
//	      leader_epoch, topic_id uuid, updated_at)
//	      primary key (consumer_group, topic, partition)
//	mds_dead_letters(id bigserial, consumer_group, topic, partition,
//	      "offset", key bytea, value bytea, reason, error, created_at,
//	      replayed_at)
//	      unique (consumer_group, topic, partition, "offset")
//	mds_offset_gaps(id bigserial, consumer_group, topic, partition,
//	      from_offset, to_offset, lost_records, reason, detail, detected_at)
//
// With the timescaledb extension (created when the server offers and
// preloads it and MDS_TS_CREATE_EXTENSION allows), ticks becomes a
// hypertable on ts (MDS_TS_CHUNK_INTERVAL), compressed by symbol ordered by
// ts DESC with a policy after MDS_TS_COMPRESS_AFTER, optionally dropped
// after MDS_TS_RETENTION, and summarized in the continuous aggregate
// bars_1m(bucket, symbol, open, high, low, close, volume, trades) with a
// refresh policy (the last hour, every minute) and real-time aggregation.
// These steps depend on settings, so they are not goose versions: every
// Migrate reads the catalog (timescaledb_information: hypertables,
// dimensions, jobs, continuous_aggregates) and runs only the statements
// that change what differs, so on an up-to-date database it runs none and
// PlanMigrations lists none. A policy whose setting changed is altered in
// place with alter_job (same job id and statistics) and a warning naming
// the job; MDS_TS_COMPRESS_AFTER=0 removes the compression policy with a
// warning naming it; an unset MDS_TS_RETENTION leaves an existing retention
// policy (a DBA's) in place, logging that it does. Without the extension,
// or with its library installed but not preloaded (shared_preload_libraries;
// creating it then would end the session with FATAL "must be preloaded"),
// the tables stay plain, Migrate and PlanMigrations say why and how to fix
// it, and Status carries the same warning, including why CREATE EXTENSION
// failed when it did.
//
// # bars_1m over all of history
//
// The refresh policy covers the last hour only, and real-time aggregation
// only what is newer than the last refresh: ticks adopted from before,
// backfill and ticks late by more than an hour would never reach bars_1m.
// Store.Bars returns the BarsRefresher, whose Run (started by the service,
// one goroutine, ended by its ctx) refreshes all of ticks once at start,
// one chunk interval per statement, then every MDS_TS_REFRESH_INTERVAL the
// buckets committed writes touched: after each commit Write records the
// batch's time range (about 4 ns per row), and the ranges are merged and
// bounded to 64 in memory. Buckets newer than one minute stay with
// real-time aggregation. Measured on 600,000 ticks over 20,000 minutes: the
// full refresh takes 2.4-5.4 s the first time and 7-13 ms at later starts,
// a round with a tick two hours late about 1 ms. A round holds an advisory
// lock (pg_try_advisory_lock), so the instances of a deployment take turns;
// a round that finds it taken, or meets TimescaleDB's policy refreshing
// (55P03; a statement counted with result "busy"), keeps its ranges for
// the next round and logs no warning. Run also
// counts the chunks of ticks created since it started, from the catalog.
//
// ListDeadLetters, DeadLetters and MarkReplayed serve processor dlq list
// and replay.
//
// # Metrics
//
//	mds_dead_letters_total{reason}            dead letters committed (decode, invalid, too_large, rejected)
//	mds_dead_letters_conflicts_total          dead letters skipped: the group already holds one for the record
//	mds_consumer_offset_gaps_total{topic,reason}   gaps recorded (log_start, truncated, topic_recreated)
//	mds_consumer_lost_records_total{topic,reason}  records those gaps lost
//	mds_store_transactions_total{result}      write transactions: committed, fenced, rolled_back
//	mds_store_write_errors_total{cause}       rolled back writes: timeout, connection, conflict, server, permanent
//	mds_store_bisections_total                batches refused and redone with bisection
//	mds_store_copy_rows_total                 tick rows committed
//	mds_store_pool_acquired_conns             connections in use
//	mds_store_pool_max_conns                  pool size limit
//	mds_store_bars_refreshes_total{result}    refresh statements on bars_1m: ok, error, busy
//	mds_store_bars_refresh_duration_seconds   duration of one of them
//	mds_store_chunks_created_total            chunks of ticks created since start (by any writer)
//
// The package starts no goroutines of its own beyond pgxpool's health
// check, which Close stops, and BarsRefresher.Run, run by its caller. The DSN holds a password and is never logged
// nor put into an error.
package store
