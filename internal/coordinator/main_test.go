package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	p0 = tick.TopicPartition{Topic: "t", Partition: 0}
	p1 = tick.TopicPartition{Topic: "t", Partition: 1}
	p2 = tick.TopicPartition{Topic: "t", Partition: 2}
)

// testConfig is a small, fast configuration.
func testConfig() Config {
	cfg := DefaultConfig()
	cfg.ID = "test"
	cfg.Capacity = 100
	cfg.BatchSize = 20
	cfg.Workers = 1
	cfg.FlushInterval = 5 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
	cfg.Retry.InitialBackoff = time.Millisecond
	cfg.Retry.MaxBackoff = 4 * time.Millisecond
	return cfg
}

// chunk returns a chunk of tp holding n records at offsets [from, from+n).
func chunk(tp tick.TopicPartition, from int64, n int) *tick.Chunk {
	ch := &tick.Chunk{TopicPartition: tp, From: from, Next: from + int64(n)}
	for i := range n {
		off := from + int64(i)
		ch.Records = append(ch.Records, tick.Record{
			Offset:    off,
			Timestamp: time.Now(),
			Tick:      tick.Tick{TS: time.Now(), Symbol: "AAPL", Price: 1, Seq: off, Has: tick.HasSeq},
		})
	}
	return ch
}

// temporary is a retryable error.
type temporary struct{}

func (temporary) Error() string   { return "connection reset" }
func (temporary) Temporary() bool { return true }

var errPermanent = errors.New("syntax error")

type written struct {
	tp       tick.TopicPartition
	from, to int64
}

// memSink records committed batches. fail, if set, is called before each
// write with the 1-based call number and decides the outcome.
type memSink struct {
	mu       sync.Mutex
	calls    int
	batches  [][]written
	offsets  map[tick.TopicPartition][]int64 // committed, in commit order
	inflight map[tick.TopicPartition]bool
	overlap  error
	fail     func(call int, b *tick.Batch) error
	delay    func() time.Duration
}

func newMemSink() *memSink {
	return &memSink{offsets: map[tick.TopicPartition][]int64{}, inflight: map[tick.TopicPartition]bool{}}
}

func (s *memSink) Write(ctx context.Context, b *tick.Batch) error {
	s.mu.Lock()
	s.calls++
	call := s.calls
	for _, tp := range partitions(b) {
		if s.inflight[tp] && s.overlap == nil {
			s.overlap = fmt.Errorf("two batches of %s in flight at once", tp)
		}
		s.inflight[tp] = true
	}
	fail, delay := s.fail, s.delay
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		for _, tp := range partitions(b) {
			s.inflight[tp] = false
		}
		s.mu.Unlock()
	}()
	if delay != nil {
		time.Sleep(delay())
	}
	if fail != nil {
		if err := fail(call, b); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var w []written
	for _, ch := range b.Chunks {
		w = append(w, written{ch.TopicPartition, ch.From, ch.Next})
		for _, r := range ch.Records {
			s.offsets[ch.TopicPartition] = append(s.offsets[ch.TopicPartition], r.Offset)
		}
	}
	s.batches = append(s.batches, w)
	return nil
}

func partitions(b *tick.Batch) []tick.TopicPartition {
	var out []tick.TopicPartition
	for _, ch := range b.Chunks {
		if len(out) == 0 || out[len(out)-1] != ch.TopicPartition {
			out = append(out, ch.TopicPartition)
		}
	}
	return out
}

func (s *memSink) committed(tp tick.TopicPartition) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.offsets[tp]...)
}

func (s *memSink) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// ackLog records acknowledged ranges.
type ackLog struct {
	mu     sync.Mutex
	ranges []tick.Range
}

func (a *ackLog) Ack(r []tick.Range) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ranges = append(a.ranges, r...)
}

func (a *ackLog) of(tp tick.TopicPartition) []tick.Range {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []tick.Range
	for _, r := range a.ranges {
		if r.TopicPartition == tp {
			out = append(out, r)
		}
	}
	return out
}

// fakeClock returns at once from Sleep and records the waits.
type fakeClock struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (f *fakeClock) Sleep(_ context.Context, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps = append(f.sleeps, d)
}

func (f *fakeClock) recorded() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

type harness struct {
	c    *Coordinator
	rec  *recorder // the level transitions, told by OnLevel
	reg  *prometheus.Registry
	acks *ackLog
	run  func() // starts Run
	stop func() // cancels Run and waits for it
}

// start builds a coordinator on sink and, if run, runs it; everything is
// stopped when the test ends. clk may be nil for the real clock.
func start(t testing.TB, cfg Config, sink Sink, clk clock, run bool) *harness {
	t.Helper()
	if clk == nil {
		clk = realClock{}
	}
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	h := &harness{rec: newRecorder(), reg: prometheus.NewPedanticRegistry(), acks: &ackLog{}}
	c, err := newCoordinator(cfg, sink, log, h.reg, clk, OnLevel(h.rec.record))
	if err != nil {
		t.Fatal(err)
	}
	c.SetAcker(h.acks)
	h.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := false
	h.run = func() {
		started = true
		go func() { done <- c.Run(ctx) }()
	}
	h.stop = sync.OnceFunc(func() {
		cancel()
		if started {
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	})
	t.Cleanup(h.stop)
	if run {
		h.run()
	}
	return h
}

// recorder keeps the level transitions in order. OnLevel must not block,
// so a transition beyond the first 1000 not yet read is counted lost (a
// benchmark changes level far more often and reads none).
type recorder struct {
	ch   chan backpressure.Event
	lost atomic.Int64
}

func newRecorder() *recorder { return &recorder{ch: make(chan backpressure.Event, 1000)} }

func (r *recorder) record(e backpressure.Event) {
	select {
	case r.ch <- e:
	default:
		r.lost.Add(1)
	}
}

// next returns the next transition, waiting for it up to 5s.
func (r *recorder) next(t *testing.T) backpressure.Event {
	t.Helper()
	select {
	case e := <-r.ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatalf("no level transition within 5s (%d lost)", r.lost.Load())
		return backpressure.Event{}
	}
}

// eventually polls cond until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// value reads a counter or gauge.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%v is not a counter or gauge", c.Desc())
	return 0
}
