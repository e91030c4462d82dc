package consume

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/tick"
)

// fakeDB is the database both fakes stand for: stored next offsets with the
// compare-and-set of the real store, and every record written.
type fakeDB struct {
	mu       sync.Mutex
	offsets  map[tick.TopicPartition]int64
	written  map[tick.TopicPartition][]int64 // offsets of records and dead letters, in write order
	dead     []tick.DeadLetter
	fenced   int
	failLoad int // LoadOffsets fails this many more times
	loads    int
	gaps     map[tick.TopicPartition][]tick.Gap // recorded with the writes
	epochs   map[tick.TopicPartition]int32      // stored leader epochs
	topicIDs map[tick.TopicPartition][16]byte   // stored topic ids
}

func newFakeDB() *fakeDB {
	return &fakeDB{
		offsets: make(map[tick.TopicPartition]int64), written: make(map[tick.TopicPartition][]int64),
		gaps: make(map[tick.TopicPartition][]tick.Gap), epochs: make(map[tick.TopicPartition]int32),
		topicIDs: make(map[tick.TopicPartition][16]byte),
	}
}

func (db *fakeDB) LoadOffsets(_ context.Context, _ string, tps []tick.TopicPartition) (map[tick.TopicPartition]tick.StoredOffset, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.loads++
	if db.failLoad > 0 {
		db.failLoad--
		return nil, errors.New("database unavailable")
	}
	out := make(map[tick.TopicPartition]tick.StoredOffset)
	for _, tp := range tps {
		if off, ok := db.offsets[tp]; ok {
			epoch, ok := db.epochs[tp]
			if !ok {
				epoch = -1
			}
			out[tp] = tick.StoredOffset{Next: off, LeaderEpoch: epoch, TopicID: db.topicIDs[tp]}
		}
	}
	return out, nil
}

// write applies ch as one transaction would: the stored offset must be
// ch.From (no row when -1), else the write is fenced.
func (db *fakeDB) write(ch *tick.Chunk) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	stored, ok := db.offsets[ch.TopicPartition]
	if (ch.From == -1 && ok) || (ch.From != -1 && (!ok || stored != ch.From)) {
		db.fenced++
		return false
	}
	db.offsets[ch.TopicPartition] = ch.Next
	db.epochs[ch.TopicPartition] = ch.LeaderEpoch
	db.topicIDs[ch.TopicPartition] = ch.TopicID
	db.gaps[ch.TopicPartition] = append(db.gaps[ch.TopicPartition], ch.Gaps...)
	all := make([]int64, 0, ch.Size())
	for _, r := range ch.Records {
		all = append(all, r.Offset)
	}
	for _, d := range ch.Dead {
		all = append(all, d.Offset)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	db.written[ch.TopicPartition] = append(db.written[ch.TopicPartition], all...)
	db.dead = append(db.dead, ch.Dead...)
	return true
}

func (db *fakeDB) total() int {
	db.mu.Lock()
	defer db.mu.Unlock()
	n := 0
	for _, offs := range db.written {
		n += len(offs)
	}
	return n
}

// exactlyOnce checks that each partition's written offsets are want[tp]
// consecutive offsets from start[tp], each once.
func (db *fakeDB) exactlyOnce(want map[tick.TopicPartition]int, start map[tick.TopicPartition]int64) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.fenced > 0 {
		return fmt.Errorf("%d writes fenced", db.fenced)
	}
	for tp, n := range want {
		got := db.written[tp]
		if len(got) != n {
			return fmt.Errorf("%s: %d records written, want %d", tp, len(got), n)
		}
		for i, off := range got {
			if off != start[tp]+int64(i) {
				return fmt.Errorf("%s: record %d has offset %d, want %d", tp, i, off, start[tp]+int64(i))
			}
		}
	}
	return nil
}

// fakeQueue stands for the coordinator: Submit writes the chunk to the fake
// database at once and acknowledges it, unless the queue is made full. A
// fenced write closes the partition and, as the coordinator does, tells an
// acker that is a coordinator.Fencer.
type fakeQueue struct {
	db    *fakeDB
	acker coordinator.Acker

	mu       sync.Mutex
	lanes    map[tick.TopicPartition]bool
	chunks   map[tick.TopicPartition][]*tick.Chunk
	revokes  []revokeCall
	drained  bool
	level    backpressure.Level
	capacity int
	depths   map[tick.TopicPartition]int
	full     bool // Submit blocks until ctx is done
	holdAcks bool // acks wait for Drain, as the real queue's tail does
	held     []tick.Range
	zombies  map[tick.TopicPartition]zombie // runs before a write of the partition
	quiet    bool                           // fences are not told: only the partition's next Submit finds them
	refusal  error                          // Submit returns it
}

// zombie is another writer that commits first, before the write of the
// first chunk of its partition that when accepts (any chunk when nil).
type zombie struct {
	when func(*tick.Chunk) bool
	do   func(*fakeDB)
}

type revokeCall struct {
	tps  []tick.TopicPartition
	wait bool
}

func newFakeQueue(db *fakeDB) *fakeQueue {
	return &fakeQueue{db: db, lanes: make(map[tick.TopicPartition]bool), chunks: make(map[tick.TopicPartition][]*tick.Chunk), capacity: 500}
}

func (q *fakeQueue) Submit(ctx context.Context, ch *tick.Chunk) error {
	q.mu.Lock()
	full := q.full
	q.mu.Unlock()
	if full {
		<-ctx.Done()
		return ctx.Err()
	}
	q.mu.Lock()
	if q.refusal != nil {
		defer q.mu.Unlock()
		return q.refusal
	}
	if !q.lanes[ch.TopicPartition] {
		q.mu.Unlock()
		return fmt.Errorf("submitting to %s: %w", ch.TopicPartition, coordinator.ErrRevoked)
	}
	q.chunks[ch.TopicPartition] = append(q.chunks[ch.TopicPartition], ch)
	hold, quiet := q.holdAcks, q.quiet
	z, fence := q.zombies[ch.TopicPartition]
	fence = fence && (z.when == nil || z.when(ch))
	if fence {
		delete(q.zombies, ch.TopicPartition)
	}
	q.mu.Unlock()
	if fence {
		// Another writer commits first; the queue then finds ch fenced,
		// closes the lane and tells the acker, as the coordinator does.
		z.do(q.db)
	}
	if !q.db.write(ch) {
		q.mu.Lock()
		delete(q.lanes, ch.TopicPartition)
		q.mu.Unlock()
		if f, ok := q.acker.(coordinator.Fencer); ok && !quiet {
			f.Fenced([]tick.TopicPartition{ch.TopicPartition})
		}
		return nil
	}
	if q.acker == nil {
		return nil
	}
	r := tick.Range{TopicPartition: ch.TopicPartition, From: ch.From, Next: ch.Next, LeaderEpoch: ch.LeaderEpoch}
	if hold {
		q.mu.Lock()
		q.held = append(q.held, r)
		q.mu.Unlock()
		return nil
	}
	q.acker.Ack([]tick.Range{r})
	return nil
}

func (q *fakeQueue) Assign(tps []tick.TopicPartition) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, tp := range tps {
		q.lanes[tp] = true
	}
}

func (q *fakeQueue) Revoke(_ context.Context, tps []tick.TopicPartition, wait bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, tp := range tps {
		delete(q.lanes, tp)
	}
	q.revokes = append(q.revokes, revokeCall{tps, wait})
}

func (q *fakeQueue) Drain(context.Context) error {
	q.mu.Lock()
	q.drained = true
	held := q.held
	q.held = nil
	q.mu.Unlock()
	if len(held) > 0 {
		q.acker.Ack(held)
	}
	return nil
}

func (q *fakeQueue) PartitionDepths(dst map[tick.TopicPartition]int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for tp, n := range q.depths {
		dst[tp] = n
	}
}

func (q *fakeQueue) Current() backpressure.Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return backpressure.Event{Level: q.level, Capacity: q.capacity}
}

func (q *fakeQueue) setLevel(l backpressure.Level) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.level = l
}

func (q *fakeQueue) setFull(full bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.full = full
}

func (q *fakeQueue) setHoldAcks(hold bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.holdAcks = hold
}

// fenceNext makes the next chunk of tp fenced: do changes the database
// first.
func (q *fakeQueue) fenceNext(tp tick.TopicPartition, do func(*fakeDB)) {
	q.fenceWhen(tp, nil, do)
}

// fenceWhen makes the first chunk of tp that when accepts fenced: do
// changes the database first.
func (q *fakeQueue) fenceWhen(tp tick.TopicPartition, when func(*tick.Chunk) bool, do func(*fakeDB)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.zombies == nil {
		q.zombies = make(map[tick.TopicPartition]zombie)
	}
	q.zombies[tp] = zombie{when: when, do: do}
}

func (q *fakeQueue) refuseWith(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refusal = err
}

func (q *fakeQueue) assigned() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.lanes)
}

func (q *fakeQueue) partitionChunks(tp tick.TopicPartition) []*tick.Chunk {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*tick.Chunk(nil), q.chunks[tp]...)
}

func (q *fakeQueue) revokeCalls() []revokeCall {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]revokeCall(nil), q.revokes...)
}
