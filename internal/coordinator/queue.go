package coordinator

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// signal is a broadcast to goroutines waiting under the queue's mutex: wait
// hands out a channel that notify closes. The channel is made only when
// somebody waits, so notify costs a nil check on the hot path.
type signal struct{ ch chan struct{} }

func (s *signal) wait() <-chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) notify() {
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// waitLocked waits, with q.mu released, until s is notified, due fires
// (nil: never) or ctx is done; it returns with q.mu held again.
func (q *queue) waitLocked(ctx context.Context, s *signal, due <-chan time.Time) {
	wake := s.wait()
	q.mu.Unlock()
	defer q.mu.Lock()
	select {
	case <-wake:
	case <-due:
	case <-ctx.Done():
	}
}

type queued struct {
	ch    *tick.Chunk
	at    time.Time // when it was queued, for FlushInterval
	bytes int       // ch.Bytes(), computed once at Submit
}

// lane holds the queued chunks of one assigned partition, oldest first.
type lane struct {
	tp      tick.TopicPartition
	chunks  []queued
	depth   int   // ticks in chunks
	bytes   int   // bytes of chunks
	next    int64 // Next of the last chunk submitted, when hasNext
	hasNext bool
	ready   bool // listed in queue.ready: not busy and has chunks
	busy    bool // some of its chunks are in a worker's batch
	writing bool // that batch is inside Sink.Write
	closed  bool // revoked or fenced: dropped from lanes, takes nothing more
}

// batch is what a worker writes: the chunks, and the lanes they came from
// (each lane once; its chunks contiguous and in offset order).
type batch struct {
	tick.Batch
	lanes []*lane
	bytes int // Bytes of its chunks, as queued
}

// stall is why a batch cannot be written as it is: an error that is not
// temporary (or a panic), kept until the batch commits or goes.
type stall struct {
	cause string // SQLSTATE, "panic" or "error": the label of mds_worker_stall_cause
	err   error
	since time.Time
}

// Stall describes a stalled write, for /readyz.
type Stall struct {
	// Cause is the SQLSTATE of the error (the label of
	// mds_worker_stall_cause), "panic" for a panic in the sink, or "error"
	// for an error without a SQLSTATE.
	Cause string `json:"cause"`
	// Error is the error of the last attempt.
	Error string `json:"error"`
	// Since is when the batch first failed so.
	Since time.Time `json:"since"`
	// Batches is how many batches are stalled.
	Batches int `json:"batches"`
}

// reasonStalled is the reason of an event raising HARD because writing
// stalled (see Coordinator.Stalled), whatever the queue size.
const reasonStalled = "store_stalled"

// queue is the bounded, per-partition queue. Every field below mu is
// guarded by it.
type queue struct {
	capacity   int
	capBytes   int
	low, high  int
	batchSize  int
	batchBytes int
	flushEvery time.Duration
	id         string
	m          *metrics
	// onLevel is called, with mu held, on every level transition.
	onLevel func(backpressure.Event)

	mu        sync.Mutex
	lanes     map[tick.TopicPartition]*lane
	ready     []*lane // oldest first chunk first
	readySize int     // ticks in ready lanes
	size      int     // ticks queued, not yet taken
	bytes     int     // their bytes
	inflight  int     // batches taken and not yet released
	closed    bool    // Drain started: no intake, flush at once
	level     backpressure.Level
	reason    string
	blocked   int // producers waiting for space
	stalls    map[*batch]stall
	space     signal // room freed, lane gone, or closed
	work      signal // a batch may be due
	done      signal // a write attempt ended or a batch was released
}

func newQueue(cfg Config, m *metrics, onLevel func(backpressure.Event)) *queue {
	low, high := cfg.Watermarks()
	m.capacity.Set(float64(cfg.Capacity))
	m.capacityBytes.Set(float64(cfg.CapacityBytes))
	return &queue{
		capacity:   cfg.Capacity,
		capBytes:   cfg.CapacityBytes,
		low:        low,
		high:       high,
		batchSize:  cfg.BatchSize,
		batchBytes: cfg.batchBytes(),
		flushEvery: cfg.FlushInterval,
		id:         cfg.ID,
		m:          m,
		onLevel:    onLevel,
		lanes:      make(map[tick.TopicPartition]*lane),
		stalls:     make(map[*batch]stall),
		reason:     backpressure.ReasonLowWatermark,
	}
}

// fits is the admission rule: a chunk is admitted if it fits in the free
// space, in ticks and in bytes, or if nothing is queued, so that a chunk
// larger than the free space (or than the capacity) waits for the workers
// but never forever.
func (q *queue) fits(n, nb int) bool {
	return (q.size+n <= q.capacity && q.bytes+nb <= q.capBytes) || q.size == 0
}

func (q *queue) submit(ctx context.Context, ch *tick.Chunk, block bool) error {
	n, nb := ch.Size(), ch.Bytes()
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return ErrClosed
		}
		l := q.lanes[ch.TopicPartition]
		if l == nil {
			return fmt.Errorf("submitting to %s: %w", ch.TopicPartition, ErrRevoked)
		}
		if l.hasNext && ch.From != l.next {
			return fmt.Errorf("chunk of %s starts at offset %d, want %d (chunks of a partition must be contiguous)",
				ch.TopicPartition, ch.From, l.next)
		}
		if q.fits(n, nb) {
			break
		}
		if !block {
			return ErrQueueFull
		}
		q.blocked++
		q.work.notify() // producers are waiting: workers flush without waiting for age
		q.waitLocked(ctx, &q.space, nil)
		q.blocked--
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	l := q.lanes[ch.TopicPartition]
	l.chunks = append(l.chunks, queued{ch: ch, at: time.Now(), bytes: nb})
	l.depth += n
	l.bytes += nb
	l.next, l.hasNext = ch.Next, true
	switch {
	case l.busy:
	case l.ready:
		q.readySize += n
		if q.readySize >= q.batchSize {
			q.work.notify()
		}
	default:
		q.makeReadyLocked(l)
	}
	q.m.submitted.Add(float64(n))
	q.resizeLocked(n, nb)
	return nil
}

// makeReadyLocked lists l among the ready lanes, keeping them ordered by
// the age of their oldest chunk.
func (q *queue) makeReadyLocked(l *lane) {
	at := l.chunks[0].at
	i := len(q.ready)
	for i > 0 && q.ready[i-1].chunks[0].at.After(at) {
		i--
	}
	q.ready = slices.Insert(q.ready, i, l)
	l.ready = true
	q.readySize += l.depth
	q.work.notify()
}

func (q *queue) unreadyLocked(l *lane) {
	if !l.ready {
		return
	}
	q.ready = slices.DeleteFunc(q.ready, func(r *lane) bool { return r == l })
	q.readySize -= l.depth
	l.ready = false
}

// resizeLocked changes the queue size by delta ticks and deltaBytes bytes
// and raises a level event if the level changes.
func (q *queue) resizeLocked(delta, deltaBytes int) {
	q.size += delta
	q.bytes += deltaBytes
	q.m.depth.Set(float64(q.size))
	q.m.bytes.Set(float64(q.bytes))
	if delta < 0 || deltaBytes < 0 {
		q.space.notify()
	}
	q.levelLocked()
}

// fullness is the queue size the level follows: the ticks queued, or the
// bytes queued scaled to ticks (bytes / CapacityBytes × Capacity) if that
// is more, so the watermarks apply to whichever is fuller.
func (q *queue) fullness() int {
	return max(q.size, int(int64(q.bytes)*int64(q.capacity)/int64(q.capBytes)))
}

// levelLocked recomputes the level and raises an event if it changed. A
// stalled write makes it HARD whatever the queue holds; once no write is
// stalled the level follows the queue again (and, with hysteresis, stays
// HARD until the queue is at the low watermark).
func (q *queue) levelLocked() {
	lvl := nextLevel(q.level, q.fullness(), q.low, q.high)
	reason := reasonFor(lvl)
	if len(q.stalls) > 0 {
		lvl, reason = backpressure.Hard, reasonStalled
	}
	if lvl == q.level {
		return
	}
	q.level, q.reason = lvl, reason
	if lvl == backpressure.Hard {
		q.work.notify() // intake pauses: partial batches are due
	}
	q.onLevel(q.eventLocked())
}

func (q *queue) eventLocked() backpressure.Event {
	return backpressure.Event{
		CoordinatorID: q.id,
		QueueSize:     q.size,
		Capacity:      q.capacity,
		Utilization:   max(float64(q.size)/float64(q.capacity), float64(q.bytes)/float64(q.capBytes)),
		Level:         q.level,
		Reason:        q.reason,
		Source:        backpressure.SourceStore,
		TS:            backpressure.UnixSeconds(time.Now()),
	}
}

func (q *queue) current() backpressure.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.eventLocked()
}

// take blocks until a batch is due and returns it, or returns nil once ctx
// is done. A batch is due when the ready lanes hold BatchSize ticks, when
// the oldest ready chunk waited FlushInterval, when the level is HARD or
// producers are blocked on a full queue (intake has stopped: waiting for a
// fuller batch would only leave the database idle), or when draining.
// While a write is stalled no batch is due: the stalled batches probe the
// database, and the rest waits in the queue.
func (q *queue) take(ctx context.Context) *batch {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	q.mu.Lock()
	defer q.mu.Unlock()
	for ctx.Err() == nil {
		var due <-chan time.Time
		if len(q.ready) > 0 && len(q.stalls) == 0 {
			age := time.Since(q.ready[0].chunks[0].at)
			if q.readySize >= q.batchSize || age >= q.flushEvery || q.level == backpressure.Hard || q.blocked > 0 || q.closed {
				return q.buildLocked()
			}
			if timer == nil {
				timer = time.NewTimer(q.flushEvery - age)
			} else {
				timer.Reset(q.flushEvery - age)
			}
			due = timer.C
		}
		q.waitLocked(ctx, &q.work, due)
	}
	return nil
}

// buildLocked takes whole chunks from the ready lanes, oldest first, up to
// BatchSize ticks and batchBytes bytes (a single larger chunk goes alone).
// Every lane it takes from becomes busy until the batch is released, so a
// partition has at most one batch in flight.
func (q *queue) buildLocked() *batch {
	b := &batch{}
	n := 0
	full := func(c queued) bool {
		return n > 0 && (n+c.ch.Size() > q.batchSize || b.bytes+c.bytes > q.batchBytes)
	}
	for len(q.ready) > 0 && n < q.batchSize && b.bytes < q.batchBytes {
		l := q.ready[0]
		if full(l.chunks[0]) {
			break
		}
		q.unreadyLocked(l)
		took, tookBytes := 0, 0
		for len(l.chunks) > 0 && !full(l.chunks[0]) {
			c := l.chunks[0]
			b.Chunks = append(b.Chunks, c.ch)
			l.chunks[0] = queued{}
			l.chunks = l.chunks[1:]
			n += c.ch.Size()
			b.bytes += c.bytes
			took += c.ch.Size()
			tookBytes += c.bytes
		}
		l.depth -= took
		l.bytes -= tookBytes
		l.busy = true
		b.lanes = append(b.lanes, l)
	}
	q.inflight++
	q.resizeLocked(-n, -b.bytes)
	return b
}

// setStall records that b cannot be written as it is: the level becomes
// HARD and no other batch is taken until no batch is stalled.
func (q *queue) setStall(b *batch, cause string, err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	st, ok := q.stalls[b]
	if !ok {
		st.since = time.Now()
	}
	st.cause, st.err = cause, err
	q.stalls[b] = st
	q.stallsChangedLocked()
}

// clearStall forgets b's stall, if any: it committed or went.
func (q *queue) clearStall(b *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.stalls[b]; !ok {
		return
	}
	delete(q.stalls, b)
	q.stallsChangedLocked()
	q.work.notify() // batches may be taken again
}

func (q *queue) stallsChangedLocked() {
	q.m.stalled.Set(float64(len(q.stalls)))
	q.m.stallCause.Reset()
	for _, st := range q.stalls {
		q.m.stallCause.WithLabelValues(st.cause).Inc()
	}
	q.levelLocked()
}

// stalled returns the oldest stall, if any.
func (q *queue) stalled() (Stall, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out Stall
	for _, st := range q.stalls {
		if out.Batches == 0 || st.since.Before(out.Since) {
			out.Cause, out.Error, out.Since = st.cause, st.err.Error(), st.since
		}
		out.Batches++
	}
	return out, out.Batches > 0
}

// begin drops from b the chunks of lanes closed since it was built,
// counting them as dropped, and marks the other lanes as writing. It
// reports whether anything is left to write.
func (q *queue) begin(b *batch) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	var gone []tick.TopicPartition
	b.lanes = slices.DeleteFunc(b.lanes, func(l *lane) bool {
		if l.closed {
			l.busy = false
			gone = append(gone, l.tp)
			return true
		}
		l.writing = true
		return false
	})
	if len(gone) > 0 {
		b.Chunks = slices.DeleteFunc(b.Chunks, func(c *tick.Chunk) bool {
			drop := slices.Contains(gone, c.TopicPartition)
			if drop {
				q.m.dropped.Add(float64(c.Size()))
			}
			return drop
		})
	}
	return len(b.lanes) > 0
}

// end marks the end of a write attempt of b.
func (q *queue) end(b *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range b.lanes {
		l.writing = false
	}
	q.done.notify()
}

// release returns b's lanes to the queue once b is written (or abandoned
// at stop): their next chunks may now be taken.
func (q *queue) release(b *batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, l := range b.lanes {
		l.busy, l.writing = false, false
		if !l.closed && len(l.chunks) > 0 {
			q.makeReadyLocked(l)
		}
	}
	q.inflight--
	q.done.notify()
}

func (q *queue) assign(tps []tick.TopicPartition) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, tp := range tps {
		if q.lanes[tp] == nil {
			q.lanes[tp] = &lane{tp: tp}
		}
	}
}

// closeLaneLocked removes l from the queue and drops its queued chunks.
// Chunks of l already in a batch are dropped by that batch's next begin.
func (q *queue) closeLaneLocked(l *lane) {
	if q.lanes[l.tp] == l {
		delete(q.lanes, l.tp)
	}
	q.unreadyLocked(l)
	l.closed = true
	l.chunks = nil
	if l.depth > 0 || l.bytes > 0 {
		q.m.dropped.Add(float64(l.depth))
		q.resizeLocked(-l.depth, -l.bytes)
		l.depth, l.bytes = 0, 0
	}
	q.space.notify() // producers blocked on this lane get ErrRevoked
	q.done.notify()  // Drain may be waiting for the dropped ticks
}

// revoke closes the lanes of tps and, if wait, waits until none of them is
// inside Sink.Write (or ctx is done). It reports whether that wait ended
// because ctx was done.
func (q *queue) revoke(ctx context.Context, tps []tick.TopicPartition, wait bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	var writing []*lane
	for _, tp := range tps {
		if l := q.lanes[tp]; l != nil {
			q.closeLaneLocked(l)
			if l.writing {
				writing = append(writing, l)
			}
		}
	}
	for wait && slices.ContainsFunc(writing, func(l *lane) bool { return l.writing }) {
		q.waitLocked(ctx, &q.done, nil)
		if ctx.Err() != nil {
			return true
		}
	}
	return false
}

// fence closes the lanes of b named in tps: another member owns them. It
// returns the partitions it closed; a lane revoked during the attempt was
// closed already and is not among them.
func (q *queue) fence(b *batch, tps []tick.TopicPartition) []tick.TopicPartition {
	q.mu.Lock()
	defer q.mu.Unlock()
	var closed []tick.TopicPartition
	for _, l := range b.lanes {
		if !l.closed && slices.Contains(tps, l.tp) {
			q.closeLaneLocked(l)
			closed = append(closed, l.tp)
		}
	}
	return closed
}

// drain stops intake and waits until everything queued is written.
func (q *queue) drain(ctx context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.space.notify()
	q.work.notify()
	for q.size > 0 || q.inflight > 0 {
		q.waitLocked(ctx, &q.done, nil)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("draining: %d ticks queued and %d batches in flight: %w", q.size, q.inflight, err)
		}
	}
	return nil
}

func (q *queue) partitionDepths(dst map[tick.TopicPartition]int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	clear(dst)
	for tp, l := range q.lanes {
		dst[tp] = l.depth
	}
}
