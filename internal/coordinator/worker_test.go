package coordinator

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

const ms = time.Millisecond

// scheduleConfig has the original's retry defaults without jitter and a
// failure threshold of two attempts.
func scheduleConfig() Config {
	cfg := testConfig()
	cfg.Retry = RetryConfig{MaxAttempts: 5, InitialBackoff: 50 * ms, MaxBackoff: 2 * time.Second, Multiplier: 2}
	cfg.Breaker = BreakerConfig{FailureThreshold: 2, HalfOpenAfter: time.Minute}
	return cfg
}

// The waits between attempts follow the retry policy and never exceed
// MaxBackoff, however long the failures last: no breaker adds a minute
// after the database is back. mds_coord_circuit_state reads 1 from the
// FailureThreshold-th failure to the commit.
func TestRetryScheduleHasNoOpenWait(t *testing.T) {
	sink := newMemSink()
	var circuit [13]float64
	var h *harness
	sink.fail = func(call int, _ *tick.Batch) error {
		circuit[call] = value(t, h.c.m.circuit)
		if call <= 11 {
			return temporary{}
		}
		return nil
	}
	clk := &fakeClock{}
	h = start(t, scheduleConfig(), sink, clk, false)
	h.run()
	h.c.Assign([]tick.TopicPartition{p0})
	if err := h.c.Submit(context.Background(), chunk(p0, 0, 20)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the batch to be committed", func() bool { return len(sink.committed(p0)) == 20 })
	h.stop()
	want := []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms,
		2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second}
	if got := clk.recorded(); !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	if sink.callCount() != 12 {
		t.Errorf("%d write calls, want 12", sink.callCount())
	}
	if want := [13]float64{0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}; circuit != want {
		t.Errorf("circuit state seen by each call %v, want %v", circuit, want)
	}
	m := h.c.m
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"temporary errors", value(t, m.writeErrors[classTemporary]), 11},
		{"retries", value(t, m.retries), 11},
		{"batches", value(t, m.batches), 1},
		{"rows", value(t, m.rows), 20},
		{"circuit state", value(t, m.circuit), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestRetryJitter(t *testing.T) {
	sink := newMemSink()
	sink.fail = func(call int, _ *tick.Batch) error {
		if call <= 4 {
			return temporary{}
		}
		return nil
	}
	clk := &fakeClock{}
	cfg := scheduleConfig()
	cfg.Retry.Jitter = true
	h := start(t, cfg, sink, clk, true)
	h.c.Assign([]tick.TopicPartition{p0})
	if err := h.c.Submit(context.Background(), chunk(p0, 0, 20)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the commit", func() bool { return len(sink.committed(p0)) == 20 })
	got := clk.recorded()
	base := []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms}
	if len(got) != len(base) {
		t.Fatalf("waits %v", got)
	}
	for i, d := range got {
		if d < base[i]/2 || d > base[i]*3/2+time.Nanosecond {
			t.Errorf("wait %d = %v, want within ±50%% of %v", i, d, base[i])
		}
	}
	if slices.Equal(got, base) {
		t.Errorf("waits %v are not jittered", got) // all four exact: jitter ignored
	}
}

// refusal is a permanent error with a SQLSTATE, as the store returns when
// every row of a batch is refused.
type refusal struct{}

func (refusal) Error() string    { return "all rows refused: P0001" }
func (refusal) Temporary() bool  { return false }
func (refusal) SQLState() string { return "P0001" }

// An error that is not temporary (or a panic) stalls writing: the level is
// HARD, Stalled and mds_worker_stall_cause name the cause, no other batch is
// written; the batch is retried on the retry schedule and, once it
// commits, writing resumes and the level follows the queue again.
func TestStallUntilTheCauseIsFixed(t *testing.T) {
	for _, tc := range []struct {
		name, cause, class string
		fail               func() error
	}{
		{"refused", "P0001", classPermanent, func() error { return refusal{} }},
		{"no sqlstate", "error", classPermanent, func() error { return errPermanent }},
		{"panic", "panic", classPanic, func() error { panic("sink bug") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var broken atomic.Bool
			broken.Store(true)
			sink := newMemSink()
			sink.fail = func(_ int, b *tick.Batch) error {
				if broken.Load() {
					return tc.fail()
				}
				return nil
			}
			cfg := testConfig()
			cfg.Workers = 2
			h := start(t, cfg, sink, nil, false)
			h.run()
			c, ctx := h.c, context.Background()
			c.Assign([]tick.TopicPartition{p0, p1})
			if err := c.Submit(ctx, chunk(p0, 0, 20)); err != nil {
				t.Fatal(err)
			}
			if e := h.rec.next(t); e.Level != backpressure.Hard || e.Reason != reasonStalled {
				t.Fatalf("event %+v, want HARD for %s", e, reasonStalled)
			}
			st, ok := c.Stalled()
			if !ok || st.Cause != tc.cause || st.Batches != 1 || st.Error == "" {
				t.Fatalf("Stalled() = %+v, %v; want cause %s", st, ok, tc.cause)
			}
			if got := value(t, c.m.stallCause.WithLabelValues(tc.cause)); got != 1 {
				t.Errorf("mds_worker_stall_cause{cause=%q} = %v, want 1", tc.cause, got)
			}
			if got := value(t, c.m.stalled); got != 1 {
				t.Errorf("mds_worker_stalled = %v, want 1", got)
			}
			// Another partition's batch is not taken while stalled.
			if err := c.Submit(ctx, chunk(p1, 0, 20)); err != nil {
				t.Fatal(err)
			}
			calls := sink.callCount()
			eventually(t, "two more probes of the stalled batch", func() bool { return sink.callCount() >= calls+2 })
			sink.mu.Lock()
			inflight := sink.inflight[p1]
			sink.mu.Unlock()
			if inflight || len(sink.committed(p1)) != 0 {
				t.Fatal("another batch was written while writing was stalled")
			}

			broken.Store(false)
			eventually(t, "both partitions committed", func() bool {
				return len(sink.committed(p0)) == 20 && len(sink.committed(p1)) == 20
			})
			if e := h.rec.next(t); e.Level != backpressure.OK {
				t.Errorf("event after the stall %+v, want OK", e)
			}
			if _, ok := c.Stalled(); ok {
				t.Error("still stalled after the commit")
			}
			if got := value(t, c.m.stalled); got != 0 {
				t.Errorf("mds_worker_stalled = %v after the commit, want 0", got)
			}
			if value(t, c.m.writeErrors[tc.class]) < 2 {
				t.Errorf("%s errors = %v, want one per failed attempt", tc.class, value(t, c.m.writeErrors[tc.class]))
			}
			if got := value(t, c.m.workersAlive); got != 2 {
				t.Errorf("workers alive = %v, want 2", got)
			}
		})
	}
}
