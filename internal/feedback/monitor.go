package feedback

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
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

// EndLister lists the end offsets (high watermarks) of topics' partitions.
// *kadm.Client is one.
type EndLister interface {
	ListEndOffsets(ctx context.Context, topics ...string) (kadm.ListedOffsets, error)
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
	ends0 EndLister // nil: the consumer's end offsets only
	meter *Meter
	est   *Upstream
	now   func() time.Time
	log   *zap.Logger
	m     *metrics

	// Run's goroutine only.
	ends, prev map[tick.TopicPartition]int64
	pos        map[tick.TopicPartition]int64
	commits    map[tick.TopicPartition]committed
	topics     []string
	listFails  int // listings failed in a row

	mu   sync.Mutex
	last Estimate
	subs []Subscriber
}

// NewMonitor returns a Monitor of the coordinator q, the consumer lags and
// the writes metered by meter, with cfg's dwell and lag age limit. If ends
// is not nil, the end offsets of the assigned partitions are also listed
// at every sample: the consumer learns them from its fetches, and a paused
// partition is not fetched, so without the listing the arrivals of paused
// partitions would show only at the consumer's own periodic listing.
func NewMonitor(cfg Config, q Queue, lags Lags, ends EndLister, meter *Meter, log *zap.Logger, reg prometheus.Registerer) (*Monitor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering feedback metrics: %w", err)
	}
	est := NewUpstream(cfg.MinDwell, cfg.LagAgeSoft)
	return &Monitor{
		q: q, lags: lags, ends0: ends, meter: meter, est: est, now: time.Now,
		log:     log.Named("feedback_upstream"),
		m:       m,
		ends:    make(map[tick.TopicPartition]int64),
		prev:    make(map[tick.TopicPartition]int64),
		pos:     make(map[tick.TopicPartition]int64),
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

// listEnds raises the end offsets of the assigned partitions to those
// listed now. A failed listing leaves the consumer's; failures are logged
// at the first and then every 100th in a row.
func (m *Monitor) listEnds(ctx context.Context) {
	if m.ends0 == nil || len(m.topics) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, sampleInterval)
	defer cancel()
	listed, err := m.ends0.ListEndOffsets(lctx, m.topics...)
	if err == nil {
		err = listed.Error()
	}
	listed.Each(func(o kadm.ListedOffset) {
		tp := tick.TopicPartition{Topic: o.Topic, Partition: o.Partition}
		if end, ok := m.ends[tp]; ok && o.Err == nil {
			m.ends[tp] = max(end, o.Offset)
		}
	})
	switch {
	case err == nil:
		m.listFails = 0
	case ctx.Err() == nil: // not stopping
		if m.listFails%100 == 0 {
			m.log.Warn("listing end offsets for the upstream level; using the consumer's", zap.Error(err), zap.Int("failed_in_a_row", m.listFails+1))
		}
		m.listFails++
	}
}

// sample takes one sample, and tells the subscribers if the level changed.
func (m *Monitor) sample(ctx context.Context) {
	s, q := m.collect(ctx)
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
	e := upstreamEvent(q, est, s.At)
	for _, sub := range subs {
		_ = sub.Notify(ctx, e) // the sinks count and log their own failures
	}
}

// collect takes one Sample, and returns it with the queue's state.
func (m *Monitor) collect(ctx context.Context) (Sample, backpressure.Event) {
	m.prev, m.ends = m.ends, m.prev
	clear(m.ends)
	clear(m.pos)
	m.topics = m.topics[:0]
	m.lags.EachLag(func(tp tick.TopicPartition, end, position int64) {
		m.ends[tp], m.pos[tp] = end, position
		if !slices.Contains(m.topics, tp.Topic) {
			m.topics = append(m.topics, tp.Topic)
		}
	})
	m.listEnds(ctx)
	now := m.now()
	s := Sample{At: now}
	for tp, end := range m.ends {
		if prev, ok := m.prev[tp]; ok {
			// An end offset never goes back: one listed before and not
			// now (a failed listing) is still known.
			end = max(end, prev)
			m.ends[tp] = end
			s.Arrived += end - prev
		}
		if position := m.pos[tp]; position >= 0 && end > position {
			s.LagRecords += end - position
		}
	}
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
	return s, q
}
