package backpressure_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
)

// scale is a ScaleSource the test sets by hand.
type scale struct {
	mu      sync.Mutex
	v       float64
	changed chan struct{}
}

func newScale(v float64) *scale { return &scale{v: v, changed: make(chan struct{})} }

func (s *scale) Scale() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.v
}

func (s *scale) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *scale) set(v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v = v
	close(s.changed)
	s.changed = make(chan struct{})
}

// sends counts how many Waits return within d.
func sends(t *testing.T, l *backpressure.Limiter, d time.Duration) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n := 0
	for l.Wait(ctx) == nil {
		n++
	}
	return n
}

func TestLimiterScalesRate(t *testing.T) {
	const target = 2000.0
	src := newScale(1)
	// The default burst (10 ms worth) keeps the rate when timers oversleep
	// on a loaded machine.
	l, err := backpressure.NewLimiter(target, 0, src)
	if err != nil {
		t.Fatal(err)
	}
	const window = 400 * time.Millisecond
	full := sends(t, l, window)
	if max := int(target*window.Seconds()*1.2) + 20; full > max {
		t.Fatalf("%d sends in %v at scale 1, more than %d", full, window, max)
	}
	src.set(0.5)
	if l.Rate() != target/2 {
		t.Errorf("Rate() = %v at scale 0.5", l.Rate())
	}
	half := sends(t, l, window)
	ratio := float64(half) / float64(full)
	t.Logf("full %d, half %d, ratio %.2f", full, half, ratio)
	if ratio < 0.3 || ratio > 0.7 {
		t.Errorf("half scale sent %d vs %d at full scale (ratio %.2f, want about 0.5)", half, full, ratio)
	}
}

func TestLimiterHoldsAtScaleZero(t *testing.T) {
	src := newScale(0)
	l, err := backpressure.NewLimiter(1000, 0, src)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Wait returned %v at scale 0", err)
	case <-time.After(200 * time.Millisecond):
	}
	src.set(0.5)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait still blocked after the scale rose")
	}

	ctx, cancel := context.WithCancel(context.Background())
	src.set(0)
	go func() { done <- l.Wait(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v", err)
	}
}

// A caller already waiting a long time at a tiny scale is released when the
// scale rises.
func TestLimiterWaiterSeesScaleRise(t *testing.T) {
	src := newScale(0.001)
	l, err := backpressure.NewLimiter(10, 1, src) // 0.01/s: 100 s between sends
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(context.Background()); err != nil { // the burst token
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	src.set(1)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting caller not released when the scale rose")
	}
}

func TestNewLimiterValidates(t *testing.T) {
	for _, tc := range []struct {
		rate  float64
		burst int
	}{{0, 1}, {-1, 1}, {1, -1}} {
		if _, err := backpressure.NewLimiter(tc.rate, tc.burst, nil); err == nil {
			t.Errorf("NewLimiter(%v, %d) gave no error", tc.rate, tc.burst)
		}
	}
}

func ExampleLimiter() {
	// Without a follower the scale stays 1: a plain rate limiter.
	l, err := backpressure.NewLimiter(100, 0, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := l.Wait(ctx); err != nil {
			panic(err)
		}
	}
	fmt.Println("sent 3 at", l.Rate(), "per second")
	// Output: sent 3 at 100 per second
}
