package coordinator

import (
	"slices"
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	var states []circuitState
	b := newBreaker(BreakerConfig{FailureThreshold: 2, HalfOpenAfter: time.Minute}, func(s circuitState) { states = append(states, s) })
	t0 := time.Unix(1000, 0)
	allowed := func(at time.Time) (bool, bool) {
		ok, probe, _, _ := b.allow(at)
		return ok, probe
	}

	if ok, probe := allowed(t0); !ok || probe {
		t.Fatal("closed breaker refuses")
	}
	b.failure(t0, false)
	b.success() // consecutive failures only
	b.failure(t0, false)
	if b.current() != circuitClosed {
		t.Fatal("opened after one consecutive failure")
	}
	b.failure(t0, false)
	if b.current() != circuitOpen {
		t.Fatal("not open after two consecutive failures")
	}
	ok, _, wait, _ := b.allow(t0.Add(59 * time.Second))
	if ok || wait != time.Second {
		t.Fatalf("open breaker: ok=%v wait=%v, want refused for 1s", ok, wait)
	}

	t1 := t0.Add(time.Minute)
	if ok, probe := allowed(t1); !ok || !probe || b.current() != circuitHalfOpen {
		t.Fatal("no probe after the cooldown")
	}
	ok, _, _, changed := b.allow(t1)
	if ok || changed == nil {
		t.Fatal("a second probe was allowed")
	}
	b.failure(t1, false) // a round that started before: ignored
	if b.current() != circuitHalfOpen {
		t.Fatal("a non-probe failure changed the half-open state")
	}
	b.failure(t1, true)
	select {
	case <-changed:
	default:
		t.Fatal("waiters not woken by the probe's failure")
	}
	if b.current() != circuitOpen {
		t.Fatal("failed probe did not reopen")
	}

	t2 := t1.Add(time.Minute)
	if ok, probe := allowed(t2); !ok || !probe {
		t.Fatal("no second probe")
	}
	_, _, _, changed = b.allow(t2)
	b.abandon()
	select {
	case <-changed:
	default:
		t.Fatal("waiters not woken by an abandoned probe")
	}
	if ok, probe := allowed(t2); !ok || !probe {
		t.Fatal("abandoned probe not given back")
	}
	b.success()
	if ok, probe := allowed(t2); !ok || probe {
		t.Fatal("not closed after a successful probe")
	}
	want := []circuitState{circuitOpen, circuitHalfOpen, circuitOpen, circuitHalfOpen, circuitClosed}
	if !slices.Equal(states, want) {
		t.Errorf("transitions %v, want %v", states, want)
	}
}
