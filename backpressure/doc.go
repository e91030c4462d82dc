// Package backpressure lets a producer upstream of market-data-store slow
// down before the store falls behind.
//
// Each store process (a coordinator) publishes its state as an Event on the
// feedback topic (default "market.feedback"): on every level change and
// again every heartbeat interval (default 5 s). The topic is compacted and
// keyed by coordinator id, so it always holds each coordinator's last state.
// The event JSON is specified by docs/feedback-event.schema.json:
//
//	{"coordinator_id":"mds-1","queue_size":8123,"capacity":10000,"utilization":0.8123,
//	 "level":"hard","reason":"lag_growing","source":"store","ts":1760540000.123,
//	 "heartbeat_interval":5,"lag_records":180000,"lag_seconds":2.1,
//	 "arrival_rate":121000,"write_rate":99500,"sustainable_rate":99800}
//
// The level says whether producers must slow down: HARD when the live
// arrival rate exceeds what the store writes (the lag grows) or the store
// is failing, SOFT when arrivals are close to what the store sustains or
// the lag of an overload is being drained, OK otherwise, including while
// the store replays a backlog faster than producers add to it (its queue
// is then full, which the queue fields show, but that is the store's own
// business). The optional fields carry the measurements behind it.
//
// A Follower reads that topic with franz-go as a plain consumer from the
// start, and keeps the current level: the worst level among the coordinators
// heard from within the stale period (default 15 s, three heartbeats; longer
// for a coordinator whose events announce a heartbeat_interval above a
// third of it). A coordinator silent for longer, for example one that
// crashed, stops counting; one that stops cleanly publishes a tombstone and
// stops counting at once; with none heard from, the level is OK. Scale maps
// the level to a rate factor (OK 1.0, Soft 0.5, Hard 0.0 by default). Event
// times are compared with the local clock, so hosts' clocks must agree to
// well within the stale period. Follower.Err tells why the follower cannot
// read the topic (unreachable brokers, TLS or SASL failure, missing topic,
// denied ACL): a producer should report it, since the level then falls to
// OK once the coordinators heard from go stale.
//
// A Limiter paces a produce loop at a target rate times the follower's scale;
// at Hard it holds the loop until the level falls. In the simple mode (the
// default) the scale is fixed per level. With WithProportionalSoft the
// scale at Soft follows the events' sustainable_rate and arrival_rate, so
// that producers together aim at 90 % of what the store sustains rather
// than half their target.
//
// Goroutines: the package starts none of its own beyond the franz-go client.
// Follower.Run follows the topic in the caller's goroutine until its context
// is done or Close is called; Limiter.Wait blocks its caller only.
//
// Usage:
//
//	f, err := backpressure.NewFollower(
//		backpressure.WithBrokers("localhost:9092"),
//		backpressure.WithClientOpts(tlsAndSASLOpts...), // optional
//	)
//	if err != nil { ... }
//	defer f.Close()
//	go f.Run(ctx) // stop it by canceling ctx and waiting, or with Close
//
//	lim, err := backpressure.NewLimiter(5000, 0, f) // 5000 records/s at OK
//	if err != nil { ... }
//	for {
//		if err := lim.Wait(ctx); err != nil {
//			return err // ctx done
//		}
//		producer.Produce(ctx, nextRecord(), nil)
//	}
package backpressure
