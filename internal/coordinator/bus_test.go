package coordinator

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
)

func ev(size int) backpressure.Event {
	return backpressure.Event{CoordinatorID: "test", QueueSize: size, Level: backpressure.Soft}
}

type subFunc func(ctx context.Context, e backpressure.Event) error

func (f subFunc) Notify(ctx context.Context, e backpressure.Event) error { return f(ctx, e) }

func TestBusIsolatesFailingSubscribers(t *testing.T) {
	bus := NewBus(zap.NewNop())
	defer bus.Close()
	var erred, panicked atomic.Int64
	bus.Subscribe("erroring", subFunc(func(context.Context, backpressure.Event) error {
		erred.Add(1)
		return errors.New("broken")
	}))
	bus.Subscribe("panicking", subFunc(func(context.Context, backpressure.Event) error {
		panicked.Add(1)
		panic("boom")
	}))
	bus.Subscribe("blocked", subFunc(func(ctx context.Context, _ backpressure.Event) error {
		<-ctx.Done() // never returns before Close
		return ctx.Err()
	}))
	good := newRecorder()
	bus.Subscribe("good", good)
	if bus.Len() != 4 {
		t.Fatalf("Len() = %d, want 4", bus.Len())
	}
	for i := 1; i <= 50; i++ {
		start := time.Now()
		bus.Publish(ev(i))
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Fatalf("Publish took %v", d)
		}
		if got := good.next(t).QueueSize; got != i {
			t.Fatalf("good subscriber got event %d, want %d", got, i)
		}
	}
	// The failing subscribers kept receiving too (possibly coalesced).
	eventually(t, "failing subscribers to see the last event", func() bool { return erred.Load() > 0 && panicked.Load() > 0 })
}

func TestBusCoalescesForSlowSubscriber(t *testing.T) {
	bus := NewBus(zap.NewNop())
	defer bus.Close()
	release := make(chan struct{})
	got := make(chan int, 100)
	bus.Subscribe("slow", subFunc(func(_ context.Context, e backpressure.Event) error {
		got <- e.QueueSize
		<-release
		return nil
	}))
	bus.Publish(ev(1))
	if v := <-got; v != 1 {
		t.Fatalf("first event %d", v)
	}
	for i := 2; i <= 100; i++ { // the subscriber is stuck in Notify(1)
		bus.Publish(ev(i))
	}
	close(release)
	if v := <-got; v != 100 {
		t.Fatalf("after the backlog got %d, want the latest (100)", v)
	}
	select {
	case v := <-got:
		t.Fatalf("unexpected extra event %d", v)
	case <-time.After(20 * time.Millisecond):
	}
}

func TestBusOrderPerSubscriber(t *testing.T) {
	bus := NewBus(zap.NewNop())
	defer bus.Close()
	subs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	for _, s := range subs {
		bus.Subscribe("r", s)
	}
	const n = 1000
	for i := 1; i <= n; i++ {
		bus.Publish(ev(i))
	}
	for _, s := range subs {
		last := 0
		for last != n {
			e := s.next(t)
			if e.QueueSize <= last {
				t.Fatalf("event %d after %d", e.QueueSize, last)
			}
			last = e.QueueSize
		}
	}
}

func TestBusUnsubscribe(t *testing.T) {
	bus := NewBus(zap.NewNop())
	defer bus.Close()
	var calls atomic.Int64
	entered := make(chan struct{}, 1)
	var cancelled atomic.Bool
	unsub := bus.Subscribe("blocked", subFunc(func(ctx context.Context, _ backpressure.Event) error {
		calls.Add(1)
		entered <- struct{}{}
		<-ctx.Done()
		cancelled.Store(true)
		return nil
	}))
	other := newRecorder()
	bus.Subscribe("other", other)
	bus.Publish(ev(1))
	<-entered
	other.next(t)
	unsub() // cancels the blocked Notify and waits for it
	if !cancelled.Load() {
		t.Fatal("unsubscribe returned before Notify ended")
	}
	unsub() // idempotent
	if bus.Len() != 1 {
		t.Fatalf("Len() = %d after unsubscribe, want 1", bus.Len())
	}
	bus.Publish(ev(2))
	if other.next(t).QueueSize != 2 {
		t.Fatal("remaining subscriber missed an event")
	}
	if calls.Load() != 1 {
		t.Fatalf("unsubscribed subscriber called %d times", calls.Load())
	}
}

func TestBusLateSubscriberGetsLastEvent(t *testing.T) {
	bus := NewBus(zap.NewNop())
	bus.Publish(ev(7))
	r := newRecorder()
	bus.Subscribe("late", r)
	if got := r.next(t).QueueSize; got != 7 {
		t.Fatalf("late subscriber got %d, want 7", got)
	}
	bus.Close()
	bus.Publish(ev(8)) // no effect, no panic
	bus.Subscribe("after close", r)()
	if bus.Len() != 0 {
		t.Fatalf("Len() = %d after Close", bus.Len())
	}
}
