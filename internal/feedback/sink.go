package feedback

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
)

// mailbox holds the latest event a sink was notified of until the sink's
// delivery loop takes it: a newer event replaces one not yet taken, so a
// sink that falls behind skips to the latest state. Safe for concurrent use.
type mailbox struct {
	mu      sync.Mutex
	e       backpressure.Event
	full    bool
	changed chan struct{} // closed and replaced by put
}

func newMailbox() *mailbox { return &mailbox{changed: make(chan struct{})} }

// put replaces the pending event with e.
func (m *mailbox) put(e backpressure.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.e, m.full = e, true
	close(m.changed)
	m.changed = make(chan struct{})
}

// take empties the mailbox. It returns the pending event, if any, and a
// channel closed at the next put.
func (m *mailbox) take() (e backpressure.Event, ok bool, newer <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok = m.e, m.full
	m.full = false
	return e, ok, m.changed
}

// newer returns a channel closed at the next put.
func (m *mailbox) newer() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// heartbeat is the delivery loop of a sink, and the only goroutine through
// which the sink sends: it sends src's current state with reason
// "heartbeat" at once and then every interval, and each event put in box as
// soon as the send before it has returned. One goroutine keeps the order of
// the facts: a heartbeat reads the state after every transition already
// sent, and a transition raised while a heartbeat is being sent is sent
// after it, so the last thing a sink sends is never older than the last
// transition. Every event is stamped with the interval (HeartbeatInterval),
// so that followers know how long to keep counting this coordinator. send
// is also given a channel closed when a newer event is put in box: a send
// that would wait (a retry backoff) may give up then. heartbeat returns
// when ctx is done.
func heartbeat(ctx context.Context, interval time.Duration, src Source, box *mailbox, send func(e backpressure.Event, newer <-chan struct{})) {
	t := time.NewTicker(interval)
	defer t.Stop()
	beat := true // the first heartbeat goes out at once
	for ctx.Err() == nil {
		var e backpressure.Event
		var newer <-chan struct{}
		if beat {
			beat = false
			newer = box.newer()
			e = src.Current()
			e.Reason = backpressure.ReasonHeartbeat
			e.TS = backpressure.UnixSeconds(time.Now())
		} else {
			var ok bool
			if e, ok, newer = box.take(); !ok {
				select {
				case <-ctx.Done():
				case <-newer:
				case <-t.C:
					beat = true
				}
				continue
			}
		}
		e.HeartbeatInterval = interval.Seconds()
		send(e, newer)
	}
}

// episodes logs a run of failed publications once, when it starts, and
// once when it ends. Safe for concurrent use.
type episodes struct {
	log      *zap.Logger
	failing  atomic.Bool
	failures atomic.Int64
}

func (p *episodes) failed(err error) {
	p.failures.Add(1)
	if !p.failing.Swap(true) {
		p.log.Warn("publishing feedback failed; retrying with the next publication", zap.Error(err))
	}
}

func (p *episodes) succeeded() {
	if p.failing.Swap(false) {
		p.log.Info("publishing feedback recovered", zap.Int64("failed_publications", p.failures.Swap(0)))
	}
}
