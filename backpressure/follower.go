package backpressure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults shared by the publisher in the store and the followers in
// producers.
const (
	// DefaultTopic is the feedback topic name (MDS_FEEDBACK_TOPIC).
	DefaultTopic = "market.feedback"
	// DefaultHeartbeat is how often a coordinator re-publishes its level
	// (MDS_FB_HEARTBEAT_INTERVAL).
	DefaultHeartbeat = 5 * time.Second
	// DefaultStale is how long a coordinator keeps counting after its last
	// event: three heartbeats.
	DefaultStale = 3 * DefaultHeartbeat
)

// Default rate scales per level, from the original pipeline.
const (
	DefaultScaleOK   = 1.0
	DefaultScaleSoft = 0.5
	DefaultScaleHard = 0.0
)

// Option configures a Follower.
type Option func(*Follower)

// WithBrokers sets the seed brokers. It may be left out when WithClientOpts
// carries kgo.SeedBrokers.
func WithBrokers(brokers ...string) Option {
	return func(f *Follower) { f.clientOpts = append(f.clientOpts, kgo.SeedBrokers(brokers...)) }
}

// WithTopic sets the feedback topic (default DefaultTopic).
func WithTopic(topic string) Option {
	return func(f *Follower) { f.topic = topic }
}

// WithClientOpts adds franz-go client options, for example TLS
// (kgo.DialTLSConfig) and SASL (kgo.SASL). The follower adds its own consume
// options after these.
func WithClientOpts(opts ...kgo.Opt) Option {
	return func(f *Follower) { f.clientOpts = append(f.clientOpts, opts...) }
}

// WithStale sets how long a coordinator keeps counting after its last event
// (default DefaultStale). A coordinator whose events carry its heartbeat
// interval keeps counting for at least three of those intervals, whatever
// this setting. Keep it well above the clock skew between hosts.
func WithStale(d time.Duration) Option {
	return func(f *Follower) { f.stale = d }
}

// WithScales sets the rate scale of each level (default 1.0, 0.5, 0.0). They
// must satisfy 0 ≤ hard ≤ soft ≤ ok ≤ 1.
func WithScales(ok, soft, hard float64) Option {
	return func(f *Follower) { f.scales = [3]float64{ok, soft, hard} }
}

// OnChange sets a function called with the new level each time the level
// changes. It is called from the goroutine running Run and must not block.
func OnChange(fn func(Level)) Option {
	return func(f *Follower) { f.onChange = fn }
}

// Constants of the proportional mode.
const (
	// proportionalTarget is the share of the sustainable rate the
	// proportional mode aims the total arrival rate at.
	proportionalTarget = 0.9
	// minProportionalScale keeps the proportional scale above zero, from
	// which a multiplicative step could not rise again.
	minProportionalScale = 0.01
)

// WithProportionalSoft makes Scale at Soft follow what the store sustains
// instead of the fixed soft scale of WithScales. It uses the optional
// sustainable_rate and arrival_rate of the events (a publisher that does
// not send them leaves the scale as it is). On entering Soft from OK, the
// scale starts at the OK scale; from Hard, at the soft scale. Then each new
// event of a Soft coordinator multiplies it by 0.9 × sustainable_rate /
// arrival_rate (by at least 0.5 and at most 2 per event; the smallest
// factor among the Soft coordinators), and it stays within [0.01, the OK
// scale]. Producers that all follow the same coordinators this way steer
// their total rate toward 90 % of what the store sustains, instead of
// halving it. Levels, OK, Hard and the simple mode are unchanged; Changed
// is also signalled when the proportional scale changes.
func WithProportionalSoft() Option {
	return func(f *Follower) { f.proportional = true }
}

// OnError sets a function called with fetch errors, including those the
// client retries by itself (such as a topic that does not exist yet), and
// with records that are not feedback events (they are skipped). It is called
// from the goroutine running Run and must not block. Whether it is set or
// not, Err reports the problem that keeps the follower from reading.
func OnError(fn func(error)) Option {
	return func(f *Follower) { f.onError = fn }
}

// Follower follows the feedback topic and tracks the current backpressure
// level of the pipeline: the worst level among the coordinators heard from
// within the stale period. With no coordinator heard from, the level is OK.
//
// It is a plain consumer (not a group member) that reads the topic from the
// start, so the compacted topic tells it each coordinator's last state as soon
// as it starts. Level, Scale and Changed are safe for concurrent use.
type Follower struct {
	topic        string
	stale        time.Duration
	scales       [3]float64
	proportional bool
	onChange     func(Level)
	onError      func(error)
	clientOpts   []kgo.Opt
	client       *kgo.Client

	mu       sync.Mutex
	coords   map[string]heard
	level    Level
	soft     float64 // Scale at Soft in the proportional mode
	changed  chan struct{}
	connErr  error // last failed connection, until one succeeds
	fetchErr error // last fetch error, until records are read
}

// heard is the last event of one coordinator and when it stops counting.
type heard struct {
	event   Event
	expires time.Time
	fresh   bool // not yet seen by evaluate
}

// maxHeartbeat caps the heartbeat interval an event may announce, so that a
// wild value cannot keep a coordinator counting for ever.
const maxHeartbeat = time.Hour

// connHook records the outcome of the client's connection attempts.
type connHook struct{ f *Follower }

var _ kgo.HookBrokerConnect = connHook{}

func (h connHook) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		err = fmt.Errorf("connecting to broker %s:%d: %w", meta.Host, meta.Port, err)
	}
	h.f.mu.Lock()
	h.f.connErr = err
	h.f.mu.Unlock()
}

// NewFollower returns a follower; it starts following when Run is called.
func NewFollower(opts ...Option) (*Follower, error) {
	f := &Follower{
		topic:   DefaultTopic,
		stale:   DefaultStale,
		scales:  [3]float64{DefaultScaleOK, DefaultScaleSoft, DefaultScaleHard},
		coords:  make(map[string]heard),
		changed: make(chan struct{}),
	}
	for _, o := range opts {
		o(f)
	}
	if f.topic == "" {
		return nil, errors.New("backpressure: empty topic")
	}
	if f.stale <= 0 {
		return nil, fmt.Errorf("backpressure: stale period %v must be > 0", f.stale)
	}
	if s := f.scales; !(0 <= s[Hard] && s[Hard] <= s[Soft] && s[Soft] <= s[OK] && s[OK] <= 1) {
		return nil, fmt.Errorf("backpressure: scales ok=%v soft=%v hard=%v must satisfy 0 ≤ hard ≤ soft ≤ ok ≤ 1", s[OK], s[Soft], s[Hard])
	}
	copts := append(f.clientOpts,
		kgo.ConsumeTopics(f.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepRetryableFetchErrors(), // a missing topic shows in Err
		kgo.WithHooks(connHook{f}),
	)
	cl, err := kgo.NewClient(copts...)
	if err != nil {
		return nil, fmt.Errorf("backpressure: creating kafka client: %w", err)
	}
	f.client = cl
	return f, nil
}

// Run follows the topic until ctx is done or Close is called, and then
// returns nil. It must be called once.
func (f *Follower) Run(ctx context.Context) error {
	for {
		next := f.evaluate(time.Now())
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if !next.IsZero() {
			// Wake up when the first coordinator goes stale, so the
			// level falls without waiting for a record.
			pollCtx, cancel = context.WithDeadline(ctx, next)
		}
		fetches := f.client.PollFetches(pollCtx)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		var fetchErr error
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) {
				return // our own wake-up
			}
			fetchErr = fmt.Errorf("fetching %s/%d: %w", topic, partition, err)
			f.reportError(fetchErr)
		})
		now := time.Now()
		read := false
		fetches.EachRecord(func(r *kgo.Record) { read = true; f.apply(r, now) })
		if fetchErr != nil || read {
			f.mu.Lock()
			f.fetchErr = fetchErr
			f.mu.Unlock()
		}
	}
}

// Close stops Run (if running) and closes the Kafka client.
func (f *Follower) Close() { f.client.Close() }

// Level returns the current level.
func (f *Follower) Level() Level {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.level
}

// Scale returns the rate scale of the current level (at Soft in the
// proportional mode, the proportional scale).
func (f *Follower) Scale() float64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.proportional && f.level == Soft {
		return f.soft
	}
	return f.scales[f.level]
}

// Err returns what keeps the follower from reading the topic, or nil: the
// last failed connection to a broker (unreachable, TLS, SASL) until a
// connection succeeds, and the last fetch error (a topic that does not
// exist, a denied ACL) until records are read again. While Err is not nil
// the level may be out of date: with no coordinator heard from, it is OK.
func (f *Follower) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Join(f.connErr, f.fetchErr)
}

// Changed returns a channel that is closed at the next level change (or,
// in the proportional mode, the next change of Scale).
func (f *Follower) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// apply records one feedback record. A record without a value (a tombstone)
// forgets its coordinator.
func (f *Follower) apply(r *kgo.Record, now time.Time) {
	if r.Value == nil {
		f.mu.Lock()
		delete(f.coords, string(r.Key))
		f.mu.Unlock()
		return
	}
	var e Event
	if err := json.Unmarshal(r.Value, &e); err != nil {
		f.reportError(fmt.Errorf("decoding feedback record at %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err))
		return
	}
	id := string(r.Key)
	if id == "" {
		id = e.CoordinatorID
	}
	// An event counts from when it was raised, but never from the future:
	// records read back from the compacted history are as old as they say.
	at := now
	if e.TS > 0 && e.Time().Before(now) {
		at = e.Time()
	}
	// A coordinator counts for the stale period, or three of its heartbeat
	// intervals if that is longer.
	stale := f.stale
	if hb := e.HeartbeatInterval; hb > 0 { // also false for NaN
		stale = max(stale, 3*time.Duration(min(hb, maxHeartbeat.Seconds())*float64(time.Second)))
	}
	f.mu.Lock()
	f.coords[id] = heard{event: e, expires: at.Add(stale), fresh: true}
	f.mu.Unlock()
}

// evaluate forgets coordinators not heard from within their stale period,
// recomputes the level, signals a change, and returns when the next
// coordinator goes stale (zero if none is tracked).
func (f *Follower) evaluate(now time.Time) (next time.Time) {
	f.mu.Lock()
	worst := OK
	factor := 0.0 // proportional mode: smallest 0.9 × sustainable / arrival of a fresh SOFT event
	for id, h := range f.coords {
		if !now.Before(h.expires) {
			delete(f.coords, id)
			continue
		}
		worst = max(worst, h.event.Level)
		if next.IsZero() || h.expires.Before(next) {
			next = h.expires
		}
		if h.fresh {
			h.fresh = false
			f.coords[id] = h
			if e := h.event; e.Level == Soft && e.SustainableRate > 0 && e.ArrivalRate > 0 {
				r := proportionalTarget * e.SustainableRate / e.ArrivalRate
				if factor == 0 || r < factor {
					factor = r
				}
			}
		}
	}
	changed := worst != f.level
	signal := changed
	if f.proportional && worst == Soft {
		soft := f.soft
		switch {
		case f.level == OK: // producers were at the OK scale: the rates measured it
			soft = f.scales[OK]
		case f.level == Hard: // producers were stopped: the rates say nothing yet
			soft, factor = f.scales[Soft], 0
		}
		if factor > 0 {
			soft *= min(max(factor, 0.5), 2)
		}
		soft = min(max(soft, minProportionalScale), f.scales[OK])
		signal = signal || soft != f.soft
		f.soft = soft
	}
	if changed {
		f.level = worst
	}
	if signal {
		close(f.changed)
		f.changed = make(chan struct{})
	}
	f.mu.Unlock()
	if changed && f.onChange != nil {
		f.onChange(worst)
	}
	return next
}

func (f *Follower) reportError(err error) {
	if f.onError != nil {
		f.onError(err)
	}
}
