// Package tickgen produces synthetic market ticks to Kafka at a target rate,
// slowing down as the store's feedback topic asks. It is the engine of
// cmd/tickgen and of the dev mode, and is used in-process by tests.
//
// Ticks are canonical tick JSON (tick.AppendJSON) with every field set, key =
// symbol (SYM0001, SYM0002, ...), and a seq that increases by one per tick
// from 1, so a run's ticks are unique and countable downstream. Prices follow
// a random walk per symbol from Config.Seed.
//
// The generator follows the feedback topic with a backpressure.Follower and
// paces itself with a backpressure.Limiter: with ObeyFeedback the rate is
// Rate × scale (ok 1.0, soft 0.5, hard 0: it waits); without, the level is
// only reported. While the follower cannot read the feedback topic
// (unreachable brokers, TLS or SASL failure, missing topic), Progress
// carries the reason in FeedbackErr and its line ends with feedback_error=.
// Produce is asynchronous; a full producer buffer (the broker cannot keep up)
// also slows the loop down.
//
// Goroutines: Run owns the follower's goroutine and the reporting goroutine,
// and stops and waits for both before it returns. Kafka options (brokers,
// TLS, SASL) come from the caller as []kgo.Opt.
package tickgen
