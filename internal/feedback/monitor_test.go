package feedback

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeLags is the consumer's view: end offset and position per partition.
type fakeLags map[tick.TopicPartition][2]int64

func (f fakeLags) EachLag(fn func(tp tick.TopicPartition, end, position int64)) {
	for tp, v := range f {
		fn(tp, v[0], v[1])
	}
}

// fakeWriter fails with err, or succeeds when err is nil.
type fakeWriter struct{ err error }

func (w *fakeWriter) Write(context.Context, *tick.Batch) error { return w.err }

// collector is a subscriber keeping what it is told.
type collector struct {
	mu     sync.Mutex
	events []backpressure.Event
}

func (c *collector) Notify(_ context.Context, e backpressure.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
	return nil
}

var (
	tp0 = tick.TopicPartition{Topic: "ticks", Partition: 0}
	tp1 = tick.TopicPartition{Topic: "ticks", Partition: 1}
)

func batch(tp tick.TopicPartition, from, n int64, ts time.Time) *tick.Batch {
	ch := &tick.Chunk{TopicPartition: tp, From: from, Next: from + n}
	for i := range n {
		ch.Records = append(ch.Records, tick.Record{Offset: from + i, Timestamp: ts})
	}
	return &tick.Batch{Chunks: []*tick.Chunk{ch}}
}

func newTestMonitor(t *testing.T, lags fakeLags, w Writer, q Queue) (*Monitor, *Meter, *fakeClock, *prometheus.Registry) {
	t.Helper()
	clk := &fakeClock{t: time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)}
	meter := newMeter(w, clk.now)
	cfg := DefaultConfig()
	cfg.MinDwell = 0
	reg := prometheus.NewRegistry()
	m, err := NewMonitor(cfg, q, lags, nil, meter, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	m.now = clk.now
	return m, meter, clk, reg
}

// The sample is what the consumer, the writes and the queue say: arrivals
// are the growth of end offsets, the lag counts Kafka past the position
// plus the queue, its age comes from the newest record written of a
// partition that has more.
func TestMonitorSamples(t *testing.T) {
	lags := fakeLags{tp0: {1000, 400}, tp1: {500, 500}}
	q := &state{e: backpressure.Event{CoordinatorID: "mds-1", QueueSize: 100, Capacity: 1000, Level: backpressure.Hard, Source: "store"}}
	m, meter, clk, reg := newTestMonitor(t, lags, &fakeWriter{}, q)
	ctx := context.Background()
	m.sample(ctx)

	written := clk.now().Add(-30 * time.Second) // the records were produced 30 s ago
	for _, b := range []*tick.Batch{batch(tp0, 300, 100, written), batch(tp1, 400, 100, written)} {
		if err := meter.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	lags[tp0] = [2]int64{1600, 400} // 600 more arrived
	lags[tp1] = [2]int64{500, 500}  // caught up: its age does not count
	clk.add(time.Second)
	m.sample(ctx)

	e := m.Current()
	if e.LagRecords != 1200+100 {
		t.Errorf("lag_records %d, want 1200 in Kafka + 100 queued", e.LagRecords)
	}
	if e.LagSeconds != 31 {
		t.Errorf("lag_seconds %v, want 31 (the newest record written of partition 0 is 31 s old)", e.LagSeconds)
	}
	// The first interval with rates sets them.
	if e.ArrivalRate != 600 || e.WriteRate != 200 {
		t.Errorf("arrival %v/s, write %v/s, want 600 and 200", e.ArrivalRate, e.WriteRate)
	}
	// The queue fields keep their meaning (the queue is HARD); the level
	// is the upstream one: OK, since writes have not been measured for
	// long enough to call the lag growing.
	if e.QueueSize != 100 || e.Capacity != 1000 || e.CoordinatorID != "mds-1" ||
		e.Level != backpressure.OK || e.Reason != backpressure.ReasonKeepingUp {
		t.Errorf("event %+v, want the queue's fields and the upstream level ok", e)
	}
	if got := testutil.ToFloat64(m.m.arrival); got != 600 {
		t.Errorf("mds_feedback_arrival_rate %v, want 600", got)
	}
	if n, err := testutil.GatherAndCount(reg, "mds_feedback_upstream_level", "mds_feedback_write_rate", "mds_feedback_sustainable_rate", "mds_feedback_lag_seconds"); err != nil || n != 4 {
		t.Errorf("gathered %d upstream gauges (%v), want 4", n, err)
	}
}

// Failing writes raise HARD; the subscribers are told the change once,
// with the queue's fields, and the recovery.
func TestMonitorTellsChanges(t *testing.T) {
	w := &fakeWriter{err: errors.New("connection refused")}
	q := &state{e: backpressure.Event{CoordinatorID: "mds-1", QueueSize: 10, Capacity: 1000, Level: backpressure.OK, Source: "store"}}
	m, meter, clk, _ := newTestMonitor(t, fakeLags{tp0: {10, 10}}, w, q)
	var c collector
	m.Subscribe(&c)
	ctx := context.Background()
	m.sample(ctx)
	if err := meter.Write(ctx, batch(tp0, 0, 10, clk.now())); err == nil {
		t.Fatal("the meter hid the store's error")
	}
	for range 4 { // 2 s of samples: one failAfter
		clk.add(sampleInterval)
		m.sample(ctx)
	}
	w.err = nil
	if err := meter.Write(ctx, batch(tp0, 0, 10, clk.now())); err != nil {
		t.Fatal(err)
	}
	clk.add(sampleInterval)
	m.sample(ctx)

	if len(c.events) != 2 {
		t.Fatalf("told %d events, want 2 (hard, ok): %+v", len(c.events), c.events)
	}
	hard, ok := c.events[0], c.events[1]
	if hard.Level != backpressure.Hard || hard.Reason != backpressure.ReasonStoreFailing || hard.QueueSize != 10 || hard.CoordinatorID != "mds-1" {
		t.Errorf("first event %+v, want hard store_failing with the queue's fields", hard)
	}
	if ok.Level != backpressure.OK || ok.Reason != backpressure.ReasonKeepingUp {
		t.Errorf("second event %+v, want ok keeping_up", ok)
	}
	if got := testutil.ToFloat64(m.m.changes.WithLabelValues("hard")); got != 1 {
		t.Errorf("mds_feedback_upstream_changes_total{level=hard} %v, want 1", got)
	}

}

// A fenced write and one cut short by its context are not failures of
// the store; other errors are, until a write succeeds.
func TestMeterClassifiesOutcomes(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	w := &fakeWriter{}
	meter := newMeter(w, clk.now)
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		fail bool
	}{
		{ctx, &tick.FencedError{Partitions: []tick.TopicPartition{tp0}}, false},
		{canceled, context.Canceled, false},
		{ctx, errors.New("deadlock detected"), true},
		{ctx, nil, false},
	} {
		w.err = tc.err
		_ = meter.Write(tc.ctx, batch(tp0, 0, 5, clk.now()))
		clk.add(time.Second)
		written, failingFor, oldest := meter.take(clk.now())
		if (failingFor > 0) != tc.fail {
			t.Errorf("after %v: failing for %v, want failing %v", tc.err, failingFor, tc.fail)
		}
		if want := map[bool]int64{true: 5, false: 0}[tc.err == nil]; written != want {
			t.Errorf("after %v: %d written, want %d", tc.err, written, want)
		}
		if oldest != 0 {
			t.Errorf("a write in progress %v after it ended", oldest)
		}
	}
}

// A write that hangs is seen in progress.
func TestMeterSeesHangingWrite(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	release := make(chan struct{})
	meter := newMeter(hangingWriter(release), clk.now)
	done := make(chan struct{})
	go func() { defer close(done); _ = meter.Write(context.Background(), batch(tp0, 0, 1, clk.now())) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		clk.add(time.Second)
		if _, _, oldest := meter.take(clk.now()); oldest > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hanging write was never seen in progress")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-done
}

type hangingWriter chan struct{}

func (h hangingWriter) Write(context.Context, *tick.Batch) error { <-h; return nil }

// fakeEnds lists the end offsets it holds, or fails with err.
type fakeEnds struct {
	ends map[tick.TopicPartition]int64
	err  error
}

func (f *fakeEnds) ListEndOffsets(_ context.Context, topics ...string) (kadm.ListedOffsets, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := kadm.ListedOffsets{}
	for tp, end := range f.ends {
		if slices.Contains(topics, tp.Topic) {
			if out[tp.Topic] == nil {
				out[tp.Topic] = map[int32]kadm.ListedOffset{}
			}
			out[tp.Topic][tp.Partition] = kadm.ListedOffset{Topic: tp.Topic, Partition: tp.Partition, Offset: end}
		}
	}
	return out, nil
}

// A paused partition is not fetched, so the consumer's end offset goes
// stale: the listed end offsets count its arrivals; a failed listing
// falls back to the consumer's.
func TestMonitorListsEndOffsets(t *testing.T) {
	lags := fakeLags{tp0: {100, 100}}
	ends := &fakeEnds{ends: map[tick.TopicPartition]int64{tp0: 100, {Topic: "other", Partition: 0}: 5000}}
	q := &state{e: backpressure.Event{CoordinatorID: "mds-1", Capacity: 1000}}
	clk := &fakeClock{t: time.Unix(1000, 0)}
	cfg := DefaultConfig()
	m, err := NewMonitor(cfg, q, lags, ends, newMeter(&fakeWriter{}, clk.now), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	m.now = clk.now
	ctx := context.Background()
	var arrived int64
	sample := func() Sample {
		clk.add(time.Second)
		s, _ := m.collect(ctx)
		arrived += s.Arrived
		return s
	}
	sample()
	ends.ends[tp0] = 400 // the consumer still says 100
	if s := sample(); s.Arrived != 300 || s.LagRecords != 300 {
		t.Errorf("arrived %d, lag %d: want 300 and 300 from the listed end offset", s.Arrived, s.LagRecords)
	}
	ends.err = errors.New("broker unreachable")
	sample() // the consumer's 100 does not take the end back
	lags[tp0] = [2]int64{500, 100}
	if s := sample(); s.LagRecords != 400 {
		t.Errorf("lag %d after failed listings, want 400 from the consumer's end offset", s.LagRecords)
	}
	ends.err, ends.ends[tp0] = nil, 600
	sample()
	if arrived != 500 {
		t.Errorf("%d records counted as arrived, want 500 (100 → 600): each once, however the end offsets were learnt", arrived)
	}
}
