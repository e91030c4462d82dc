// Package feedback computes the level published to producers upstream (the
// upstream level) and carries it out of the process: to the Kafka feedback
// topic that producers follow (see the public package backpressure), and to
// an optional HTTP webhook.
//
// # The upstream level
//
// Inside the process the coordinator's queue level drives pausing: the
// queue is full whenever the consumer reads faster than the store writes,
// which is always the case while a backlog is replayed. That is not
// overload, and producers must not be stopped for it: Kafka already holds
// the data. The level published upstream answers another question: does
// the live arrival rate exceed what the store can take (the lag grows, or
// would without throttling), or is the store failing? Upstream, a pure
// state machine fed Samples with their time, decides it; its doc lists the
// rules (HARD lag_growing and store_failing, SOFT draining, near_capacity
// and lag_age, else OK keeping_up) and the constants. A level is held for
// at least MDS_FB_MIN_DWELL (default 5 s).
//
// Monitor.Run samples every 500 ms, in its caller's goroutine: the end
// offsets and read positions of the assigned partitions (Lags, the
// consumer; the end offsets are also listed each time through the
// EndLister, since a paused partition is not fetched), the writes seen by
// the Meter, and the queue (Queue, the coordinator). The arrival rate is the growth of the end offsets, the
// write rate the records committed, both smoothed (EWMA, 2 s); the lag in
// records is Kafka past the read position plus the queue, the lag in time
// the age of the newest record written of the partition furthest behind
// (Kafka timestamps). The Meter is the Writer between the coordinator's
// workers and the store: it passes every write through and records its
// outcome (a fence or a cancelled write is no failure). Each change of
// level goes to the Monitor's subscribers (Notify, which must not block),
// the sinks; Monitor.Current is the state the sinks re-publish. Events keep
// the queue's fields (queue_size, capacity, utilization) and carry the
// upstream level, its reason and the measurements (lag_records,
// lag_seconds, arrival_rate, write_rate, sustainable_rate).
//
// # Sinks
//
// Both sinks (KafkaPublisher, Webhook) are subscribers of the Monitor and
// are run with Run(ctx) error. Each sends through one delivery loop, in the
// goroutine running Run: Notify only replaces the event waiting in the
// sink's one-event mailbox (the only mailbox between the level and the
// wire) and returns at once; Run sends the current state
// (Source.Current) with reason "heartbeat" at once and every
// MDS_FB_HEARTBEAT_INTERVAL (default 5 s), and each event as soon as the
// previous send is done. A sink that falls behind skips to the latest
// event. Because one goroutine sends everything, a heartbeat never lands
// after a newer transition: the last thing a sink sends is the current
// level, so a consumer that missed an event learns the level within one
// interval. Every event carries the interval as "heartbeat_interval"
// (seconds), and followers keep counting a coordinator for at least three
// intervals, so raising the interval does not make a HARD coordinator stop
// counting between heartbeats.
//
// KafkaPublisher produces each event, JSON as in
// docs/feedback-event.schema.json, to the topic MDS_FEEDBACK_TOPIC (default
// market.feedback) with key = coordinator id and headers
// "content-type: application/json" and "schema: mds.feedback.v1". Run
// creates the topic if it is missing before its first heartbeat: one
// partition, cleanup.policy=compact, min.cleanable.dirty.ratio=0.1,
// segment.ms from MDS_FB_TOPIC_SEGMENT (default 10 min, so a starting
// follower reads minutes of heartbeats), replication factor and
// min.insync.replicas from MDS_FB_TOPIC_REPLICATION_FACTOR and
// MDS_FB_TOPIC_MIN_INSYNC_REPLICAS (default: the broker's). An existing
// topic that is not compacted is a warning at start naming the
// kafka-configs.sh command that fixes it. Publishing never
// blocks: records are produced asynchronously with TryProduce and each is
// given one heartbeat interval to be delivered. Failures are counted, logged
// once per episode (and once when publishing recovers), and made good by
// the next publication. Stop ends Run, publishes a tombstone (key =
// coordinator id, null value) after the last event, and flushes: followers
// forget a stopped coordinator at once instead of after their stale period,
// and compaction eventually drops the key of a coordinator that is gone
// (a pod that never comes back leaves no key behind). A process that dies
// without Stop leaves its last event, which stops counting after the stale
// period. The *kgo.Client is built and closed by the caller, after Stop, so
// TLS and SASL options are the caller's.
//
// Webhook POSTs the same JSON to MDS_FB_HTTP_ENDPOINT when
// MDS_FB_ENABLE_HTTP_BROADCAST is set: up to 1 + MDS_FB_HTTP_MAX_RETRIES
// attempts of at most MDS_FB_HTTP_TIMEOUT each, waiting between them the
// service's one retry policy (internal/retry): from MDS_FB_HTTP_BACKOFF,
// doubled each time up to MaxBackoff, jittered within ±50 %. 2xx is success; 3xx (redirects are not followed) and 4xx
// other than 408 and 429 are not retried. It may send
// "Authorization: Bearer <MDS_FB_HTTP_TOKEN>" and
// "X-MDS-Signature: sha256=<hex HMAC-SHA256 of the body>" keyed with
// MDS_FB_HTTP_HMAC_SECRET; both secrets may come from files (the _FILE
// variables) and are never logged nor quoted in errors, and neither is the
// endpoint's query or password. A newer event ends the backoff of an older
// one, which is given up. The attempts block Run only; a failed delivery is
// logged once per episode of failures and made good by the next heartbeat,
// so a receiver that was down when the OK after a HARD was sent learns it
// within one interval of coming back.
//
// Goroutines: Monitor.Run, KafkaPublisher.Run and Webhook.Run run in their
// caller's goroutine until ctx is done (or, for the publisher, Stop is
// called); franz-go calls the produce promises on its own. Notify never
// blocks.
//
// Metrics (on the injected registerer; the Monitor and both sinks may share
// it):
//
//	mds_feedback_published_total{sink="kafka|webhook",outcome="ok|error"}
//	mds_feedback_webhook_attempts_total{outcome="success|retry|failure"}
//	mds_feedback_upstream_level (0 ok, 1 soft, 2 hard)
//	mds_feedback_upstream_changes_total{level}
//	mds_feedback_arrival_rate, mds_feedback_write_rate,
//	mds_feedback_sustainable_rate (records per second)
//	mds_feedback_lag_seconds
//
// The queue level is exported by the coordinator (mds_coord_level), and its
// transitions by mds_feedback_events_total.
package feedback
