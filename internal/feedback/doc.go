// Package feedback carries backpressure events out of the process: to the
// Kafka feedback topic that upstream producers follow (see the public
// package backpressure), and to an optional HTTP webhook. Both sinks are
// subscribers of the coordinator's feedback bus (they have its
// Notify(ctx, backpressure.Event) error method), and both are run with
// Run(ctx) error.
//
// Both sinks send through one delivery loop each, in the goroutine running
// Run: Notify only replaces the event waiting in the sink's one-event
// mailbox and returns at once; Run sends the coordinator's current state
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
// creates the topic if it is missing (one partition, cleanup.policy=compact,
// broker default replication) before its first heartbeat. Publishing never
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
// attempts of at most MDS_FB_HTTP_TIMEOUT each, waiting an exponential
// backoff with jitter from MDS_FB_HTTP_BACKOFF between them (capped at
// MaxBackoff). 2xx is success; 3xx (redirects are not followed) and 4xx
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
// Goroutines: KafkaPublisher.Run and Webhook.Run run in their caller's
// goroutine until ctx is done (or, for the publisher, Stop is called);
// franz-go calls the produce promises on its own. Notify never blocks.
//
// Metrics (on the injected registerer; both sinks may share it):
//
//	mds_feedback_published_total{sink="kafka|webhook",outcome="ok|error"}
//	mds_feedback_webhook_attempts_total{outcome="success|retry|failure"}
//
// The level itself is exported by the coordinator (mds_coord_level) and the
// events it raises by mds_feedback_events_total.
package feedback
