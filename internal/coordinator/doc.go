// Package coordinator is the bounded queue between the Kafka consumer and
// the store, the workers that write it, and the queue's backpressure
// level, which the rest of the process reads with Current: the consumer
// to pause partitions, package feedback to compute the level published
// to producers.
//
// # Queue
//
// The queue counts ticks (tick.Chunk.Size: records plus dead letters) and
// bytes (tick.Chunk.Bytes: the records with their raw keys and values),
// bounded by Capacity and CapacityBytes. It holds one lane per assigned
// partition (Assign opens lanes, Revoke closes them). Submit blocks while
// the queue is full, until there is room or its ctx is done; TrySubmit
// returns ErrQueueFull instead. A chunk is admitted when it fits in the
// free space, in ticks and in bytes, or when nothing is queued, so a chunk
// larger than the free space (even than the capacity) waits for the
// workers but never forever. Nothing is ever dropped to make room. Submit
// returns ErrRevoked for a partition without an open lane and ErrClosed once
// Drain has started; it refuses a chunk that does not start where the
// partition's previous chunk ended.
//
// The level is a function of the queue's fullness with hysteresis: OK at
// or below the low watermark, SOFT between, HARD at or above the high one;
// once HARD it stays HARD until the queue drains to the low watermark and
// then is OK (no SOFT on the way down). The fullness is the queued ticks,
// or the queued bytes scaled to ticks (bytes / CapacityBytes × Capacity)
// when that is more: the watermarks apply to whichever is fuller. An
// event's queue_size and capacity are in ticks; its utilization is the
// fuller of the two ratios. While writing is stalled (below) the level is
// HARD with reason store_stalled, whatever the queue holds. Current
// returns the state at any time (the event of the level in force, with
// the queue as it is now); PartitionDepths the queued ticks per
// partition, for the SOFT pause policy. Each transition sets
// mds_coord_level, counts one in mds_feedback_events_total and, if New was
// given OnLevel, calls its function with the transition's
// backpressure.Event, under the queue's lock: in order, from the goroutine
// that changed the level, and it must not block. Nothing is sent
// anywhere: the feedback to producers (package feedback) and partition
// pausing read Current, and EnableFeedback does not concern the queue.
//
// # Workers and guarantees
//
// Run starts Workers goroutines and returns when its ctx is done and they
// have stopped. A worker takes a batch when the ready lanes hold BatchSize
// ticks, when the oldest queued chunk has waited FlushInterval, when the
// level is HARD or producers are blocked on a full queue, or during Drain.
// It takes whole chunks from the lanes with the oldest chunks first, so a
// batch may mix partitions, each partition's chunks contiguous and in
// offset order. A lane with chunks in a batch gives no more until that
// batch is released: at most one batch per partition is in flight, so the
// batches of a partition commit in offset order, while different partitions
// are written in parallel. A batch holds at most BatchSize ticks and the
// same share of CapacityBytes (a single larger chunk goes alone). Ticks
// taken by a worker leave the queue size; the memory held is at most
// CapacityBytes plus Workers batches (and one chunk larger than the free
// space, admitted into an empty queue).
//
// A failed write is classified: *tick.FencedError drops the fenced
// partitions (from the batch and the queue; their lanes close until the
// next Assign) and retries the rest at once. Any other failed attempt is
// followed by the next wait of the retry policy (internal/retry:
// InitialBackoff growing by Multiplier up to MaxBackoff, jittered if
// Retry.Jitter) and another attempt, for as long as it takes: recovery
// follows the database, and a batch commits within one wait (at most
// MaxBackoff, 1.5 × with jitter) of the database answering again. There
// is no circuit breaker. The sink bounds each attempt (the store with
// MDS_DB_WRITE_TIMEOUT). Errors with Temporary() true (connection lost,
// timeouts, conflicts) leave the level to the queue, which fills while
// the batch waits. Any other error, or a panic in the sink (recovered),
// means the batch cannot be written as it is (the store returns such
// errors when a table or privilege is missing or every row of a batch is
// refused): writing stalls. The level becomes HARD, Stalled and
// mds_worker_stall_cause{cause} name the cause (the error's SQLSTATE,
// "panic" or "error"; mds_worker_stalled counts the stalled batches), no other batch is taken, and the stalled batch is retried on
// the same schedule; when it commits (the cause was fixed) the stall ends,
// the level follows the queue again and writing resumes. Nothing is
// dropped. A failure is logged at debug level until MaxAttempts attempts of
// the batch have failed (a stall at once), then as a warning at most every
// 30 s per worker. A worker never drops a batch and never exits before
// Run's ctx is done; then a batch still unwritten is abandoned, and the
// consumer re-reads it from the stored offsets. After each commit the
// ranges go to the Acker (SetAcker). After a fence, an Acker that is also a
// Fencer is told at once which partitions were closed (those of the batch
// the error names whose lanes were still open), so the consumer can re-read
// the fenced records without waiting for the partition's next Submit to
// fail with ErrRevoked.
//
// Revoke drops the partitions' queued ticks, removes them from any batch
// before its next attempt, and (if asked) waits for an attempt that
// includes them to end. Drain stops intake, writes everything queued and
// waits, bounded by its ctx and DrainTimeout. A graceful stop is: stop the
// consumer, Drain, then cancel Run's ctx. The coordinator starts no
// goroutine outside Run.
//
// # Metrics
//
// mds_coord_items_submitted_total (ticks), mds_coord_queue_depth,
// mds_coord_queue_capacity, mds_coord_queue_bytes,
// mds_coord_queue_capacity_bytes, mds_coord_level (0 ok, 1 soft, 2 hard),
// mds_coord_workers_alive, mds_coord_circuit_state (the original's breaker
// state, kept for its meaning: 1 "open" while some batch has failed
// MDS_CB_FAILURE_THRESHOLD consecutive attempts, 0 "closed" otherwise; it
// never blocks a write), mds_worker_stalled (stalled batches),
// mds_worker_stall_cause{cause} (the same by cause; no series while none), mds_coord_dropped_ticks_total (revoked or fenced, to be re-read),
// mds_worker_batches_written_total, mds_worker_rows_written_total,
// mds_worker_write_errors_total{class} (temporary, permanent, fenced,
// panic; one per failed attempt; the store counts the causes of its own in
// mds_store_write_errors_total{cause}), mds_worker_retries_total (attempts
// repeating a failed one), mds_worker_write_latency_seconds (committed
// writes), mds_ingest_latency_seconds (Kafka record timestamp to commit,
// one observation per committed chunk, for its oldest record: a chunk is
// one partition's records of one fetch, so the histogram weighs chunks,
// not records, and reads a little high) and
// mds_feedback_events_total{coordinator_id,level} (queue level
// transitions, by the level entered; the name is the original's).
//
// # Cost
//
// Measured with go test -bench on a shared 2-CPU Xeon VM, 4 producers and
// 4 workers, default capacity and batch size, a sink that does nothing:
// about 400 ns per chunk of queue overhead, that is 40 ns/tick with chunks
// of 10 ticks, 4-10 ns/tick with chunks of 100 and 1.5 ns/tick with chunks
// of 500 (the consumer submits one chunk per partition per fetch). The
// level costs nothing per tick while it is steady; a transition wakes no
// goroutine (two metric updates and OnLevel, if set). A small queue built
// to change level every 66 ticks (capacity 200, batches of 100,
// BenchmarkLevelTransitions) costs about 55 ns/tick with chunks of 10,
// against 37 ns/tick for the default queue (BenchmarkSubmitToSink), its
// small batches included.
package coordinator
