// Package feedback carries backpressure events out of the process: to the
// Kafka feedback topic that upstream producers follow (see the public
// package backpressure), and to an optional HTTP webhook. Both sinks are
// subscribers of the coordinator's feedback bus (they have its
// Notify(ctx, backpressure.Event) error method).
//
// KafkaPublisher produces each event, JSON as in
// docs/feedback-event.schema.json, to the topic MDS_FEEDBACK_TOPIC (default
// market.feedback) with key = coordinator id and headers
// "content-type: application/json" and "schema: mds.feedback.v1". Run
// creates the topic if it is missing (one partition, cleanup.policy=compact,
// broker default replication), then re-publishes the coordinator's current
// state with reason "heartbeat" at once and every MDS_FB_HEARTBEAT_INTERVAL
// (default 5 s), so that a producer that starts late or missed an event
// learns the level within one interval. Publishing never blocks: records are
// produced asynchronously with TryProduce and each is given one heartbeat
// interval to be delivered. Failures are counted, logged once per episode
// (and once when publishing recovers), and made good by the next
// publication. A heartbeat racing a transition may briefly re-publish the
// level just left; the topic holds the right level again within one
// interval. The *kgo.Client is built and closed by the caller, so TLS and
// SASL options are the caller's; Stop flushes it before shutdown.
//
// Webhook POSTs the same JSON to MDS_FB_HTTP_ENDPOINT when
// MDS_FB_ENABLE_HTTP_BROADCAST is set: up to 1 + MDS_FB_HTTP_MAX_RETRIES
// attempts of at most MDS_FB_HTTP_TIMEOUT each, waiting an exponential
// backoff with jitter from MDS_FB_HTTP_BACKOFF between them (capped at
// MaxBackoff). 2xx is success; other 4xx and 3xx are not retried. It may send
// "Authorization: Bearer <MDS_FB_HTTP_TOKEN>" and
// "X-MDS-Signature: sha256=<hex HMAC-SHA256 of the body>" keyed with
// MDS_FB_HTTP_HMAC_SECRET; both secrets may come from files (the _FILE
// variables) and are never logged nor quoted in errors, and neither is the
// endpoint's query or password. Notify blocks its caller for the attempts
// and backoffs (bounded by the settings and by ctx), which the bus runs on a
// goroutine of the webhook's own; it returns the final error for the bus to
// log.
//
// Goroutines: KafkaPublisher.Run runs in its caller's goroutine; franz-go
// calls the produce promises on its own. The webhook starts none.
//
// Metrics (on the injected registerer; both sinks may share it):
//
//	mds_feedback_published_total{sink="kafka|webhook",outcome="ok|error"}
//	mds_feedback_webhook_attempts_total{outcome="success|retry|failure"}
//
// The level itself is exported by the coordinator (mds_coord_level) and the
// events it raises by mds_feedback_events_total.
package feedback
