package coordinator

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
)

// Subscriber receives feedback events. Notify is called from a goroutine of
// the bus, one call at a time per subscriber, in publication order; ctx is
// cancelled on unsubscribe or Close, and Notify should return then. An
// error or a panic is logged and the next event is still delivered.
type Subscriber interface {
	Notify(ctx context.Context, e backpressure.Event) error
}

// Bus is the FeedbackBus: it delivers the queue's level transitions to
// in-process subscribers. The feedback published to producers is not one
// of them: it is computed from the lag and the write rate by package
// feedback, whose sinks keep the only mailbox on that path (pausing reads
// the queue level directly, with Current). Publish never blocks on a subscriber: each one has its own
// delivery goroutine and a one-event mailbox, so a subscriber that falls
// behind skips to the latest event instead of building a backlog. A new
// subscriber first receives the last event published, if any.
//
// The bus owns its delivery goroutines: unsubscribe stops and waits for
// one, Close for all.
type Bus struct {
	log    *zap.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	subs    map[*subscription]struct{}
	last    backpressure.Event
	hasLast bool
	closed  bool
}

type subscription struct {
	name   string
	s      Subscriber
	wake   chan struct{} // size 1: an event is pending
	cancel context.CancelFunc
	done   chan struct{}
	// guarded by Bus.mu
	pending    backpressure.Event
	hasPending bool
}

// NewBus returns an empty bus. Close it to stop its goroutines.
func NewBus(log *zap.Logger) *Bus {
	ctx, cancel := context.WithCancel(context.Background())
	return &Bus{
		log:    log.Named("feedback_bus"),
		ctx:    ctx,
		cancel: cancel,
		subs:   make(map[*subscription]struct{}),
	}
}

// Subscribe starts delivering events to s, named name in logs. The returned
// function unsubscribes: it stops the delivery and waits for a Notify in
// progress to return, so it must not be called from Notify. After Close,
// Subscribe does nothing.
func (b *Bus) Subscribe(name string, s Subscriber) (unsubscribe func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	sub := &subscription{name: name, s: s, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cancel()
		return func() {}
	}
	b.subs[sub] = struct{}{}
	if b.hasLast {
		sub.post(b.last)
	}
	b.wg.Go(func() { b.deliver(ctx, sub) })
	return sync.OnceFunc(func() {
		b.mu.Lock()
		delete(b.subs, sub)
		b.mu.Unlock()
		cancel()
		<-sub.done
	})
}

// Len returns the number of subscribers.
func (b *Bus) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish hands e to every subscriber and returns at once. Events are
// values: e must not be modified afterwards.
func (b *Bus) Publish(e backpressure.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.hasLast = e, true
	for sub := range b.subs {
		sub.post(e)
	}
}

// Close stops every delivery, waits for the goroutines to end and drops the
// subscribers. Publish after Close does nothing visible.
func (b *Bus) Close() {
	b.mu.Lock()
	b.closed = true
	clear(b.subs)
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// post replaces the pending event; called with Bus.mu held.
func (s *subscription) post(e backpressure.Event) {
	s.pending, s.hasPending = e, true
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (b *Bus) deliver(ctx context.Context, sub *subscription) {
	defer close(sub.done)
	log := b.log.With(zap.String("subscriber", sub.name))
	for {
		select {
		case <-sub.wake:
		case <-ctx.Done():
			return
		}
		b.mu.Lock()
		e, ok := sub.pending, sub.hasPending
		sub.hasPending = false
		b.mu.Unlock()
		if !ok {
			continue
		}
		if err := notify(ctx, sub.s, e); err != nil && ctx.Err() == nil {
			log.Warn("feedback subscriber failed", zap.Stringer("level", e.Level), zap.Error(err))
		}
	}
}

// notify calls s.Notify, turning a panic into an error.
func notify(ctx context.Context, s Subscriber, e backpressure.Event) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("subscriber panicked: %v", r)
		}
	}()
	return s.Notify(ctx, e)
}
