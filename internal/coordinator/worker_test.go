package coordinator

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/tick"
)

const ms = time.Millisecond

// scheduleConfig has the original's retry defaults without jitter and a
// breaker that opens after two failed rounds.
func scheduleConfig() Config {
	cfg := testConfig()
	cfg.Retry = RetryConfig{MaxAttempts: 5, InitialBackoff: 50 * ms, MaxBackoff: 2 * time.Second, Multiplier: 2}
	cfg.Breaker = BreakerConfig{FailureThreshold: 2, HalfOpenAfter: time.Minute}
	return cfg
}

func TestRetryScheduleAndBreaker(t *testing.T) {
	sink := newMemSink()
	sink.fail = func(call int, _ *tick.Batch) error {
		if call <= 11 {
			return temporary{}
		}
		return nil
	}
	clk := &fakeClock{now: time.Unix(1000, 0)}
	h := start(t, scheduleConfig(), sink, clk, false)
	var states []circuitState
	onChange := h.c.br.onChange
	h.c.br.onChange = func(s circuitState) { states = append(states, s); onChange(s) }
	h.run()
	h.c.Assign([]tick.TopicPartition{p0})
	if err := h.c.Submit(context.Background(), chunk(p0, 0, 20)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the batch to be committed", func() bool { return len(sink.committed(p0)) == 20 })

	// Round 1: 5 attempts, backoff 50..400ms; failure 1 leaves the breaker
	// closed, so the batch pauses MaxBackoff. Round 2: same, failure 2
	// opens the breaker for a minute. The probe fails: another minute. The
	// next probe succeeds.
	want := []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 2 * time.Second,
		50 * ms, 100 * ms, 200 * ms, 400 * ms, time.Minute, time.Minute}
	if got := clk.recorded(); !slices.Equal(got, want) {
		t.Errorf("waits %v, want %v", got, want)
	}
	if sink.callCount() != 12 {
		t.Errorf("%d write calls, want 12", sink.callCount())
	}
	wantStates := []circuitState{circuitOpen, circuitHalfOpen, circuitOpen, circuitHalfOpen, circuitClosed}
	h.stop() // onChange ran on the worker goroutine
	if !slices.Equal(states, wantStates) {
		t.Errorf("breaker went %v, want %v", states, wantStates)
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

func TestPermanentErrorAndPanicAreRetriedAfterAPause(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fail  func()
		class string
	}{
		{"permanent", nil, classPermanent},
		{"panic", func() { panic("sink bug") }, classPanic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := newMemSink()
			sink.fail = func(call int, _ *tick.Batch) error {
				if call > 1 {
					return nil
				}
				if tc.fail != nil {
					tc.fail()
				}
				return errPermanent
			}
			clk := &fakeClock{}
			h := start(t, scheduleConfig(), sink, clk, true)
			h.c.Assign([]tick.TopicPartition{p0})
			if err := h.c.Submit(context.Background(), chunk(p0, 0, 20)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the commit", func() bool { return len(sink.committed(p0)) == 20 })
			if got := clk.recorded(); !slices.Equal(got, []time.Duration{2 * time.Second}) {
				t.Errorf("waits %v, want no retry round, then one MaxBackoff pause", got)
			}
			if got := value(t, h.c.m.writeErrors[tc.class]); got != 1 {
				t.Errorf("%s errors = %v, want 1", tc.class, got)
			}
			if got := value(t, h.c.m.workersAlive); got != 1 {
				t.Errorf("workers alive = %v, want 1", got)
			}
		})
	}
}
