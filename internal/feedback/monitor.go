package feedback

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// sampleInterval is how often the Monitor samples the upstream state.
const sampleInterval = 500 * time.Millisecond

// Queue is the coordinator's queue as the Monitor reads it: its state, for
// the queue fields of events and the capacity. *coordinator.Coordinator is
// one.
type Queue interface {
	Current() backpressure.Event
}

// Lags gives the end offset and the read position of every assigned
// partition. *consume.Consumer is one.
type Lags interface {
	EachLag(fn func(tp tick.TopicPartition, end, position int64))
}

// Subscriber is told each change of the upstream level. Notify must not
// block: it is called from the Monitor's goroutine. The sinks are
// subscribers.
type Subscriber interface {
	Notify(ctx context.Context, e backpressure.Event) error
}

// Monitor computes the upstream level, the level published to producers:
// every sampleInterval it samples the partitions' end offsets and read
// positions (Lags), what the Meter saw of the writes, and the queue, feeds
// an Upstream estimator, and tells its subscribers each change of level.
// Current gives the latest state, for heartbeats. Run it with Run.
type Monitor struct {
	q     Queue
	lags  Lags
	meter *Meter
	est   *Upstream
	now   func() time.Time
	log   *zap.Logger
	m     *metrics

	// Run's goroutine only.
	ends, prev map[tick.TopicPartition]int64
	commits    map[tick.TopicPartition]committed

	mu   sync.Mutex
	last Estimate
	subs []Subscriber
}

// NewMonitor returns a Monitor of the coordinator q, the consumer lags and
// the writes metered by meter, with cfg's dwell and lag age limit.
func NewMonitor(cfg Config, q Queue, lags Lags, meter *Meter, log *zap.Logger, reg prometheus.Registerer) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering feedback metrics: %w", err)
	}
	est := NewUpstream(cfg.MinDwell, cfg.LagAgeSoft)
	return &Monitor{
		q: q, lags: lags, meter: meter, est: est, now: time.Now,
		log:     log.Named("feedback_upstream"),
		m:       m,
		ends:    make(map[tick.TopicPartition]int64),
		prev:    make(map[tick.TopicPartition]int64),
		commits: make(map[tick.TopicPartition]committed),
		last:    est.Current(),
	}, nil
}

// Subscribe adds s to the subscribers told each change of level.
func (m *Monitor) Subscribe(s Subscriber) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, s)
}

// Current returns the upstream level, the reason it was entered and the
// measurements behind it, with the queue's present state.
func (m *Monitor) Current() backpressure.Event {
	m.mu.Lock()
	est := m.last
	m.mu.Unlock()
	return upstreamEvent(m.q.Current(), est, m.now())
}

// upstreamEvent is the queue state q with the upstream estimate est.
func upstreamEvent(q backpressure.Event, est Estimate, now time.Time) backpressure.Event {
	q.Level, q.Reason, q.TS = est.Level, est.Reason, backpressure.UnixSeconds(now)
	q.LagRecords, q.LagSeconds = est.LagRecords, est.LagSeconds
	q.ArrivalRate, q.WriteRate, q.SustainableRate = est.ArrivalRate, est.WriteRate, est.SustainableRate
	return q
}

// Run samples every sampleInterval until ctx is done, and returns nil.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(sampleInterval)
	defer t.Stop()
	for {
		m.sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// sample takes one sample, and tells the subscribers if the level changed.
func (m *Monitor) sample(ctx context.Context) {
	now := m.now()
	s := Sample{At: now}
	m.prev, m.ends = m.ends, m.prev
	clear(m.ends)
	m.lags.EachLag(func(tp tick.TopicPartition, end, position int64) {
		m.ends[tp] = end
		if prev, ok := m.prev[tp]; ok && end > prev {
			s.Arrived += end - prev
		}
		if position >= 0 && end > position {
			s.LagRecords += end - position
		}
	})
	m.meter.committedOf(m.commits, m.ends)
	for tp, c := range m.commits {
		if m.ends[tp] > c.next && !c.ts.IsZero() {
			s.LagAge = max(s.LagAge, now.Sub(c.ts))
		}
	}
	s.Written, s.FailingFor, s.OldestWrite = m.meter.take(now)
	q := m.q.Current()
	s.LagRecords += int64(q.QueueSize)
	s.Backlog = int64(q.Capacity)

	est, changed := m.est.Observe(s)
	m.mu.Lock()
	m.last = est
	subs := m.subs
	m.mu.Unlock()
	m.m.observe(est)
	if !changed {
		return
	}
	m.log.Info("upstream level changed",
		zap.Stringer("level", est.Level), zap.String("reason", est.Reason),
		zap.Float64("arrival_rate", est.ArrivalRate), zap.Float64("write_rate", est.WriteRate),
		zap.Float64("sustainable_rate", est.SustainableRate),
		zap.Int64("lag_records", est.LagRecords), zap.Float64("lag_seconds", est.LagSeconds),
		zap.Int("queue_size", q.QueueSize))
	m.m.changes.WithLabelValues(est.Level.String()).Inc()
	e := upstreamEvent(q, est, now)
	for _, sub := range subs {
		_ = sub.Notify(ctx, e) // the sinks count and log their own failures
	}
}
