// Package consume is the Kafka side of the pipeline: one franz-go
// consumer-group member that fetches tick records, decodes them, and hands
// them to the coordinator as tick.Chunks, with offsets managed by the
// database rather than by Kafka.
//
// # Contract
//
// The Consumer uses two small interfaces that it declares: Queue (the
// coordinator: Submit, Assign, Revoke, Drain, PartitionDepths, Current) and
// OffsetStore (LoadOffsets from mds_offsets). It implements the
// coordinator's Acker with Ack and its Fencer with Fenced.
//
// Every chunk covers the offsets [From, Next) of one partition. From is the
// next offset the member expects the database to hold for the partition:
// the stored offset for the first chunk after an assignment or a move
// (-1 when the partition has no row), and the previous chunk's Next after that. Chunks
// of a partition are submitted in offset order. Records carry their Kafka
// key, value (copied out of franz-go's fetch buffers), timestamp and offset;
// records that do not decode or validate are in the chunk's Dead, labelled
// with a tick.Reason*, so that a bad record never stops its partition and is
// stored exactly once with the good ones.
//
// # Offsets and exactly once
//
// Auto-commit is off. On assignment, franz-go's AdjustFetchOffsetsFn reads
// the stored offsets (next offset, leader epoch of the last record written,
// Kafka topic id) and the topics' ids, and seeks every partition that has a
// row to it, with the stored epoch, so that franz-go checks with the broker
// (OffsetForLeaderEpoch, KIP-320) that the log was not truncated below it.
// Partitions without a row start where franz-go would: the Kafka committed
// offset, else MDS_KAFKA_START_OFFSET (kgo.ConsumeStartOffset: it applies
// only to a partition never seen). If the database cannot be read, the read
// is retried with backoff (counted in mds_consumer_offset_load_errors_total)
// for as long as the group session lasts: the member keeps heartbeating and
// fetches nothing for those partitions, so an outage delays them and never
// skips data. The database's compare-and-set on From, not this package,
// fences a zombie member.
//
// After each database commit the coordinator calls Ack; the next offsets
// are then committed to Kafka in the background (one commit at a time,
// newer acks coalescing), for lag tooling only. Failed commits are counted
// and retried with the next one.
//
// # Nothing is skipped without a trace
//
// Each assigned partition has one owner of its facts (partState): From,
// the offset the database holds; its position in Kafka; the gaps its next
// chunk must record. The two differ only after a jump the member records.
// The rule:
//
//   - Records before the position (fetched again, or from before a move)
//     are trimmed, never the whole batch dropped; counted in
//     mds_consumer_skipped_offsets_total{reason="before_position"}.
//   - Offsets after the position that Kafka does not deliver while they
//     are in the log (transaction markers, aborted records under
//     read_committed, compacted keys) are normal: counted as
//     not_delivered, never recorded as lost.
//   - Offsets below the partition's log start (retention or DeleteRecords
//     passed the position) are lost: a tick.Gap with reason log_start.
//     The fetch reports the log start, and franz-go never resets a
//     position by itself (kgo.NoResetOffset): an OffsetOutOfRange marks the
//     partition for a move, and the poll loop lists the log's start and end
//     offsets and decides (placeOutOfRange). MDS_KAFKA_ON_LOST_DATA=earliest
//     (the default) records the gap and resumes at the log start; fail makes
//     Run return an error naming the partition and the range.
//   - A position past the log end (the log lost records under it) is a gap
//     with reason truncated. With a stored leader epoch franz-go locates
//     where the log diverged and resumes there (ErrDataLoss); without one
//     the member re-reads from the log start rather than skip anything
//     (rows below the old end may then be stored twice: the gap says which
//     offsets).
//   - A topic whose id differs from the one stored (deleted and created
//     again) is a new log: the stored offset is void, the partition starts
//     as one never seen, and a gap with reason topic_recreated says why.
//
// A gap travels with the partition's next chunk and is written to
// mds_offset_gaps in the same transaction that moves the stored offset past
// it (the store counts it in mds_consumer_offset_gaps_total and
// mds_consumer_lost_records_total and logs it at error level), so a gap is
// recorded exactly when the data after it is.
//
// # Moves after a fence
//
// A partition can be fenced while the group still gives it to this member:
// the member took it over and seeked to the stored offset S, then the
// previous owner (a zombie, stalled past its session) woke up and committed
// its in-flight batch S → S1 first. Those records are legitimately stored;
// this member's chunk From=S is refused, and the coordinator drops the
// partition's queued work, closes it, and tells the member at once through
// Fenced (the Consumer is a coordinator.Fencer), which only notes the
// partition with its assignment generation. The member notices the fence at
// its next poll round, or earlier if the partition's next Submit fails with
// coordinator.ErrRevoked. It moves the partition instead of failing: it
// drops any chunk built for it, revokes it from the queue (waiting for its
// in-flight write), and after a poll (while no rebalance can run; one
// attempt lasts at most 2 s) reads the stored offset, moves the client's
// fetch position there with SetOffsets (which discards fetches buffered
// before), makes it the From of the next chunk and assigns the partition to
// the queue again. Without a row the partition starts where a new
// assignment would (the Kafka committed offset, else
// MDS_KAFKA_START_OFFSET) with From -1. Until a move succeeds the
// partition is paused and fed nothing; a failed read is retried with
// backoff (counted in mds_consumer_offset_load_errors_total); each move
// after a fence is counted in mds_consumer_resyncs_total and logged as a
// warning. A member that is itself the zombie is moved too, and fenced
// again, until the group takes the partition away. Any other refusal by
// the queue of a partition still assigned fails Run.
//
// # Rebalances
//
// The client uses BlockRebalanceOnPoll: a rebalance runs only between a
// hand-off and the next poll, or while a Submit is blocked on a full queue
// (Submit is tried in 100 ms slices, rebalances are allowed between them,
// so a full queue never holds the group hostage). A chunk whose partition
// was revoked (or revoked and assigned again) while it waited is dropped,
// and so are the records of the same poll not yet handed on for any
// partition whose assignment changed since the poll (the generation check):
// the partition's next owner, or its new assignment, reads them again from
// the stored offset.
//
//   - Assigned: Queue.Assign, then the seek above.
//   - Revoked: stop feeding the partitions, Queue.Revoke with wait (its
//     queued ticks are dropped, the in-flight write is awaited for at most
//     MDS_KAFKA_REVOKE_TIMEOUT), resume any pause on them, and commit their
//     acknowledged offsets to Kafka (again at most MDS_KAFKA_REVOKE_TIMEOUT).
//   - Lost: the same without waiting and without committing.
//
// # Group protocols
//
// MDS_KAFKA_GROUP_PROTOCOL=classic (the default) joins with JoinGroup and
// SyncGroup; a member assigns (cooperative-sticky) and the member's
// session timeout, heartbeat interval and rebalance timeout apply.
// consumer (KIP-848, via kgo.ServerSideBalancer) lets the broker assign
// ("uniform") and decide the session timeout and heartbeat interval; the
// rebalance timeout still bounds a revoke. The callbacks, the seek in
// AdjustFetchOffsetsFn and the offset fencing work the same on both (the
// integration chaos test runs both on Apache Kafka 4.4). Static membership
// does not: Kafka 4.4 keeps a restarted instance out until its old
// session expires, so Validate refuses MDS_KAFKA_INSTANCE_ID with
// consumer.
//
// # Backpressure
//
// PausePlan turns the queue's level into fetch control: HARD pauses every
// assigned partition, SOFT the partitions holding more than their fair share
// of the queued ticks, OK none. The plan is applied (PauseFetchPartitions /
// ResumeFetchPartitions against the client's paused set) before every poll,
// between Submit slices and in every rebalance callback; anything paused and
// not in the plan is resumed, including partitions no longer assigned,
// because franz-go keeps pauses across assignments (franz-go #507, #1272).
// Polls last at most 200 ms, and 10 ms while any partition is paused, so
// that a paused partition resumes within about 10 ms of the level falling
// (pausing makes franz-go drop the partition's buffered records, which are
// fetched again). Fetches last at most MDS_KAFKA_FETCH_MAX_WAIT, and the
// member keeps polling (and stays in the group) while everything is paused.
//
// # Bounded memory
//
// One poll returns at most a fifth of the queue's capacity, so a chunk always
// fits in the queue's headroom. franz-go buffers at most one fetch per
// broker, of at most MDS_KAFKA_FETCH_MAX_BYTES (512 KiB by default).
//
// # Goroutines
//
// Run owns every goroutine it starts and waits for them before it returns:
// the poll loop (Run's own goroutine, the only user of the decoder), a
// committer for Ack, a lag refresher that lists end offsets every 5 s (each
// listing bounded by that period), a watcher for Stop, and the franz-go
// client's. The
// group callbacks run on franz-go's goroutines. Ack, Ready, Problem and
// Stop are safe from any goroutine.
//
// # Health
//
// A member that cannot consume says why instead of idling without
// partitions: Problem returns the last fetch or group error that needs an
// operator (a denied group or topic ACL, failed authentication, a missing
// topic), seen within the last 30 s; CheckTopics asks the brokers whether
// the consumed topics exist and may be read (franz-go waits for a missing
// topic in silence). The application shows both on /readyz.
//
// # Shutdown
//
// Stop(ctx), in this order: stop polling and the lag refresher (a chunk
// still waiting for room is abandoned; it is not in the database and will
// be read again), Queue.Drain to write everything queued, then the
// committer finishes the Kafka commit in flight, if any, makes one final
// commit of the acknowledged offsets and exits (both bounded by ctx, never
// cancelled by the stop itself, so a clean stop logs no warning), then
// CloseAllowingRebalance, which leaves the group (revoking what is left)
// unless MDS_KAFKA_INSTANCE_ID makes the member static. If Run's context
// ends without Stop, the same happens without the drain, bounded by
// MDS_KAFKA_REVOKE_TIMEOUT.
//
// # Metrics
//
//   - mds_consumer_records_total: records fetched and handed on.
//   - mds_consumer_decode_errors_total{reason}: dead-lettered records, by
//     reason (decode, invalid, too_large).
//   - mds_consumer_paused_partitions: partitions paused by backpressure or
//     waiting for a move.
//   - mds_consumer_assigned_partitions: partitions assigned to this member.
//   - mds_consumer_rebalances_total{event}: assigned, revoked, lost.
//   - mds_consumer_lag_records: end offset (high watermark) minus the next
//     offset to hand to the queue, summed over assigned partitions. End
//     offsets come from each fetch and from listing them every 5 s, so the
//     lag of a paused partition keeps growing while backpressure holds it.
//     A partition whose position is unknown (no stored row, nothing handed
//     on yet) counts as 0.
//   - mds_consumer_lag_refresh_errors_total: failed listings of end offsets
//     (the first of a run of failures is logged).
//   - mds_consumer_commit_errors_total: failed Kafka commits.
//   - mds_consumer_offset_load_errors_total: failed reads of stored offsets
//     (on assignment or a move).
//   - mds_consumer_resyncs_total: fenced partitions moved back to their
//     stored offset.
//   - mds_consumer_skipped_offsets_total{reason}: offsets not handed on:
//     before_position (trimmed), not_delivered (normal gaps).
//
// franz-go's own log goes through zap (plugin/kzap) and its client metrics
// are exported as mds_kgo_* (plugin/kprom); both are wired by package app.
package consume
