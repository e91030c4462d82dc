package feedback

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/market-data-store/mds/internal/tick"
)

// Writer is the store as the coordinator's workers use it (the
// coordinator's Sink): one call, one transaction.
type Writer interface {
	Write(ctx context.Context, b *tick.Batch) error
}

// Meter is a Writer in front of the store that measures what the upstream
// level needs: the records committed, the newest record committed per
// partition (its next offset and Kafka timestamp), how long writes have
// been failing, and the oldest write in progress. It changes nothing
// about the write. Safe for concurrent use: workers write in parallel.
//
// A fenced write (*tick.FencedError) and one cut short by its context
// (revoke, shutdown) are neither a success nor a failure of the store;
// any other error is a failure.
type Meter struct {
	next Writer
	now  func() time.Time

	mu           sync.Mutex
	written      int64 // records committed since the last take
	parts        map[tick.TopicPartition]committed
	failingSince time.Time // first failure since the last success; zero if none
	inFlight     map[uint64]time.Time
	seq          uint64
}

// committed is the newest record committed of one partition.
type committed struct {
	next int64     // offset after it
	ts   time.Time // its Kafka timestamp; zero if the chunk held only dead letters
}

// NewMeter returns a Meter writing through to next.
func NewMeter(next Writer) *Meter { return newMeter(next, time.Now) }

func newMeter(next Writer, now func() time.Time) *Meter {
	return &Meter{next: next, now: now, parts: make(map[tick.TopicPartition]committed), inFlight: make(map[uint64]time.Time)}
}

// Write writes b through to the store and records the outcome.
func (m *Meter) Write(ctx context.Context, b *tick.Batch) error {
	m.mu.Lock()
	m.seq++
	id := m.seq
	m.inFlight[id] = m.now()
	m.mu.Unlock()

	err := m.next.Write(ctx, b)

	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.inFlight, id)
	var fenced *tick.FencedError
	switch {
	case err == nil:
		m.failingSince = time.Time{}
		for _, ch := range b.Chunks {
			m.written += int64(ch.Size())
			c := committed{next: ch.Next, ts: m.parts[ch.TopicPartition].ts}
			if n := len(ch.Records); n > 0 {
				c.ts = ch.Records[n-1].Timestamp
			}
			m.parts[ch.TopicPartition] = c
		}
	case errors.As(err, &fenced) || ctx.Err() != nil:
	case m.failingSince.IsZero():
		m.failingSince = m.now()
	}
	return err
}

// take returns the records committed since the previous take, how long
// writes have been failing (0 if the last one succeeded) and how long the
// oldest write in progress has been running (0 if none), as of now.
func (m *Meter) take(now time.Time) (written int64, failingFor, oldest time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	written, m.written = m.written, 0
	if !m.failingSince.IsZero() {
		failingFor = max(0, now.Sub(m.failingSince))
	}
	for _, start := range m.inFlight {
		oldest = max(oldest, now.Sub(start))
	}
	return written, failingFor, oldest
}

// committedOf clears dst and fills it with the newest record committed of
// each partition in keep, forgetting the partitions not in keep (no longer
// assigned: if they come back, their old position would be stale).
func (m *Meter) committedOf(dst map[tick.TopicPartition]committed, keep map[tick.TopicPartition]int64) {
	clear(dst)
	m.mu.Lock()
	defer m.mu.Unlock()
	for tp, c := range m.parts {
		if _, ok := keep[tp]; !ok {
			delete(m.parts, tp)
			continue
		}
		dst[tp] = c
	}
}
