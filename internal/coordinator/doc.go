// Package coordinator is the bounded queue between the Kafka consumer and
// the store, the workers that write it, and the FeedbackBus that tells the
// rest of the process (partition pausing, the feedback topic, webhooks)
// how full the queue is.
//
// # Queue
//
// The queue counts ticks (tick.Chunk.Size: records plus dead letters). It
// holds one lane per assigned partition (Assign opens lanes, Revoke closes
// them). Submit blocks while the queue is full, until there is room or its
// ctx is done; TrySubmit returns ErrQueueFull instead. A chunk is admitted
// when it fits in the free space or when nothing is queued, so a chunk
// larger than the free space (even than the capacity) waits for the
// workers but never forever. Nothing is ever dropped to make room. Submit
// returns ErrRevoked for a partition without an open lane and ErrClosed once
// Drain has started; it refuses a chunk that does not start where the
// partition's previous chunk ended.
//
// The level is a pure function of the queued ticks with hysteresis: OK at
// or below the low watermark, SOFT between, HARD at or above the high one;
// once HARD it stays HARD until the queue drains to the low watermark and
// then is OK (no SOFT on the way down). Each transition is one
// backpressure.Event, published on the Bus (unless EnableFeedback is
// false) under the queue's lock, so subscribers see transitions in order.
// Current returns the state at any time, for heartbeats; PartitionDepths
// the queued ticks per partition, for the SOFT pause policy.
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
// are written in parallel. Ticks taken by a worker leave the queue size;
// the memory held is at most Capacity plus Workers batches.
//
// A failed write is classified: *tick.FencedError drops the fenced
// partitions (from the batch and the queue; their lanes close until the
// next Assign) and retries the rest at once; errors with Temporary() true
// are retried with exponential backoff (jittered if Retry.Jitter) up to
// MaxAttempts; any other error, a panic in the sink (recovered) or an
// exhausted round is one failure of the circuit breaker. After a failure
// the batch is kept: it waits MaxBackoff while the breaker is closed, else
// until the breaker lets one probe through (half-open), whose success
// closes it. A worker never drops a batch and never exits before Run's ctx
// is done; then a batch still unwritten is abandoned, and the consumer
// re-reads it from the stored offsets. After each commit the ranges go to
// the Acker (SetAcker). After a fence, an Acker that is also a Fencer is
// told at once which partitions were closed (those of the batch the error
// names whose lanes were still open), so the consumer can re-read the
// fenced records without waiting for the partition's next Submit to fail
// with ErrRevoked.
//
// Revoke drops the partitions' queued ticks, removes them from any batch
// before its next attempt, and (if asked) waits for an attempt that
// includes them to end. Drain stops intake, writes everything queued and
// waits, bounded by its ctx and DrainTimeout. A graceful stop is: stop the
// consumer, Drain, then cancel Run's ctx, then Close the Bus.
//
// # Bus
//
// The Bus owns one delivery goroutine per subscriber, stopped by the
// unsubscribe function or by Close, which wait for them. Publish never
// blocks: each subscriber has a one-event mailbox, so a subscriber that
// falls behind receives the latest event and skips the ones in between.
// Events reach a subscriber in publication order; errors and panics of a
// subscriber are logged and affect neither the queue nor the others. A new
// subscriber first receives the last event published.
//
// # Metrics
//
// mds_coord_items_submitted_total (ticks), mds_coord_queue_depth,
// mds_coord_queue_capacity, mds_coord_level (0 ok, 1 soft, 2 hard),
// mds_coord_workers_alive, mds_coord_circuit_state (0 closed, 1 open,
// 2 half-open), mds_coord_dropped_ticks_total (revoked or fenced, to be
// re-read), mds_worker_batches_written_total,
// mds_worker_rows_written_total, mds_worker_write_errors_total{class}
// (temporary, permanent, fenced, panic; one per failed attempt),
// mds_worker_retries_total (attempts repeating a failed one),
// mds_worker_write_latency_seconds (committed writes),
// mds_ingest_latency_seconds (Kafka record timestamp to commit, per
// record) and mds_feedback_events_total{coordinator_id,level}.
//
// # Cost
//
// Measured with go test -bench on a shared 2-CPU Xeon VM, 4 producers and
// 4 workers, default capacity and batch size, a sink that does nothing:
// about 400 ns per chunk of queue overhead, that is 40 ns/tick with chunks
// of 10 ticks, 4-10 ns/tick with chunks of 100 and 1.5 ns/tick with chunks
// of 500 (the consumer submits one chunk per partition per fetch). Feedback
// costs nothing per tick while the level is steady; each transition costs
// about 2-3 µs (waking the subscribers' goroutines), measured on a queue
// built to change level every 70 ticks.
package coordinator
