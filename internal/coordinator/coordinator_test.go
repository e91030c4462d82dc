package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

func TestSubmitAdmission(t *testing.T) {
	h := start(t, testConfig(), newMemSink(), nil, false) // capacity 100
	c := h.c
	ctx := context.Background()
	if err := c.Submit(ctx, chunk(p0, 0, 1)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("Submit to an unassigned partition: %v, want ErrRevoked", err)
	}
	c.Assign([]tick.TopicPartition{p0})
	bounded, cancelBounded := context.WithTimeout(ctx, 5*time.Second)
	defer cancelBounded()
	if err := c.Submit(bounded, chunk(p0, 0, 150)); err != nil {
		t.Fatalf("a chunk larger than the capacity is refused on an empty queue: %v", err)
	}
	if err := c.TrySubmit(chunk(p0, 150, 1)); err != ErrQueueFull {
		t.Fatalf("TrySubmit on a full queue: %v, want ErrQueueFull", err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := c.Submit(short, chunk(p0, 150, 1)); err != context.DeadlineExceeded {
		t.Fatalf("blocked Submit: %v, want context.DeadlineExceeded", err)
	}
	if err := c.TrySubmit(chunk(p0, 7, 1)); err == nil || !strings.Contains(err.Error(), "contiguous") {
		t.Fatalf("a gap in offsets: %v, want a contiguity error", err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- c.Submit(ctx, chunk(p0, 150, 1)) }()
	select {
	case err := <-blocked:
		t.Fatalf("Submit on a full queue returned %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	h.run() // the workers make room
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatalf("blocked Submit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Submit still blocked 5s after the workers started")
	}
}

// produce submits, from one goroutine per partition, chunks of 1 to 10
// records until each partition holds n records.
func produce(t *testing.T, c *Coordinator, tps []tick.TopicPartition, n int) {
	t.Helper()
	c.Assign(tps)
	var wg sync.WaitGroup
	for i, tp := range tps {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 42))
			for off := 0; off < n; {
				k := min(1+r.IntN(10), n-off)
				if err := c.Submit(context.Background(), chunk(tp, int64(off), k)); err != nil {
					t.Error(err)
					return
				}
				off += k
			}
		})
	}
	wg.Wait()
}

// checkExactlyOnce checks that each partition's n records were committed
// once each, in offset order, and acknowledged as contiguous ranges.
func checkExactlyOnce(t *testing.T, h *harness, sink *memSink, tps []tick.TopicPartition, n int) {
	t.Helper()
	sink.mu.Lock()
	if sink.overlap != nil {
		t.Error(sink.overlap)
	}
	sink.mu.Unlock()
	for _, tp := range tps {
		got := sink.committed(tp)
		if len(got) != n {
			t.Errorf("%s: %d records committed, want %d", tp, len(got), n)
		}
		for i, off := range got {
			if off != int64(i) {
				t.Errorf("%s: record %d has offset %d: lost, duplicated or out of order", tp, i, off)
				break
			}
		}
		next := int64(0)
		for _, r := range h.acks.of(tp) {
			if r.From != next {
				t.Errorf("%s: ack [%d,%d) after %d", tp, r.From, r.Next, next)
			}
			next = r.Next
		}
		if next != int64(n) {
			t.Errorf("%s: acknowledged up to %d, want %d", tp, next, n)
		}
	}
	if got := value(t, h.c.m.rows); got != float64(n*len(tps)) {
		t.Errorf("rows written metric %v, want %d", got, n*len(tps))
	}
	if got := value(t, h.c.m.dropped); got != 0 {
		t.Errorf("dropped %v ticks", got)
	}
}

var eight = func() []tick.TopicPartition {
	var tps []tick.TopicPartition
	for _, topic := range []string{"a", "b"} {
		for p := range int32(4) {
			tps = append(tps, tick.TopicPartition{Topic: topic, Partition: p})
		}
	}
	return tps
}()

func TestOrderPerPartitionUnderFourWorkers(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 4
	sink := newMemSink()
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(1, 2))
	sink.delay = func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return time.Duration(r.IntN(300)) * time.Microsecond
	}
	h := start(t, cfg, sink, nil, true)
	produce(t, h.c, eight, 500)
	if err := h.c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, h, sink, eight, 500)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	mixed := slices.ContainsFunc(sink.batches, func(w []written) bool { return w[0].tp != w[len(w)-1].tp })
	if !mixed {
		t.Error("no batch mixed partitions")
	}
}

func TestFailingSinkThenRecoveryLosesAndDuplicatesNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 4
	cfg.Breaker.FailureThreshold = 3
	sink := newMemSink()
	sink.fail = func(call int, _ *tick.Batch) error {
		switch {
		case call > 40:
			return nil
		case call%7 == 0:
			panic("sink bug")
		case call%3 == 0:
			return errPermanent
		}
		return temporary{}
	}
	h := start(t, cfg, sink, nil, true)
	produce(t, h.c, eight, 300)
	if err := h.c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, h, sink, eight, 300)
	if value(t, h.c.m.writeErrors[classPanic]) == 0 || value(t, h.c.m.writeErrors[classPermanent]) == 0 {
		t.Error("the failures were not all exercised")
	}
	if got := value(t, h.c.m.workersAlive); got != 4 {
		t.Errorf("%v workers alive, want 4", got)
	}
}

// gate makes the sink's first write wait for release, then return err.
func gate(sink *memSink, err error) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	sink.fail = func(call int, _ *tick.Batch) error {
		if call > 1 {
			return nil
		}
		close(entered)
		<-release
		return err
	}
	return entered, release
}

func TestFencedPartitionsAreDroppedWhileOthersCommit(t *testing.T) {
	sink := newMemSink()
	entered, release := gate(sink, &tick.FencedError{Partitions: []tick.TopicPartition{p0}})
	h := start(t, testConfig(), sink, nil, false) // 1 worker, batches of 20
	c, ctx := h.c, context.Background()
	c.Assign([]tick.TopicPartition{p0, p1})
	for _, ch := range []*tick.Chunk{chunk(p0, 0, 10), chunk(p1, 0, 10)} {
		if err := c.Submit(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	h.run()
	<-entered // writing p0[0,10) + p1[0,10)
	for _, ch := range []*tick.Chunk{chunk(p0, 10, 10), chunk(p0, 20, 10), chunk(p1, 10, 5)} {
		if err := c.Submit(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	eventually(t, "p1 to be committed", func() bool { return len(sink.committed(p1)) == 15 })
	if got := sink.committed(p0); len(got) != 0 {
		t.Errorf("fenced partition committed %v", got)
	}
	sink.mu.Lock()
	first := sink.batches[0]
	sink.mu.Unlock()
	if !slices.Equal(first, []written{{p1, 0, 10}}) {
		t.Errorf("retried batch %v, want only p1[0,10)", first)
	}
	if err := c.Submit(ctx, chunk(p0, 30, 1)); !errors.Is(err, ErrRevoked) {
		t.Errorf("Submit to a fenced partition: %v, want ErrRevoked", err)
	}
	if got := value(t, c.m.dropped); got != 30 {
		t.Errorf("dropped %v ticks, want 30 (10 in the batch, 20 queued)", got)
	}
	if got := value(t, c.m.writeErrors[classFenced]); got != 1 {
		t.Errorf("fenced errors %v, want 1", got)
	}
	if got := value(t, c.m.circuit); got != 0 {
		t.Errorf("a fence moved the breaker to %v", got)
	}
	c.Assign([]tick.TopicPartition{p0}) // reassigned: starts again from the stored offset
	if err := c.Submit(ctx, chunk(p0, 0, 5)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "p0 to be committed after reassignment", func() bool { return len(sink.committed(p0)) == 5 })
}

// fenceLog is an Acker that is also a Fencer.
type fenceLog struct {
	ackLog
	fmu    sync.Mutex
	fences [][]tick.TopicPartition
}

func (f *fenceLog) Fenced(tps []tick.TopicPartition) {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	f.fences = append(f.fences, slices.Clone(tps))
}

func (f *fenceLog) told() [][]tick.TopicPartition {
	f.fmu.Lock()
	defer f.fmu.Unlock()
	return slices.Clone(f.fences)
}

func TestFencerIsToldEachFenceAtOnce(t *testing.T) {
	for _, fencer := range []bool{true, false} {
		t.Run(fmt.Sprintf("fencer=%v", fencer), func(t *testing.T) {
			var fences *fenceLog
			var acks interface {
				Acker
				of(tick.TopicPartition) []tick.Range
			} = &ackLog{}
			if fencer {
				fences = &fenceLog{}
				acks = fences
			}
			sink := newMemSink()
			entered, release := make(chan struct{}), make(chan struct{})
			sink.fail = func(call int, b *tick.Batch) error {
				switch {
				case call == 1: // p0, p1, p2; p2 is revoked meanwhile
					close(entered)
					<-release
					return &tick.FencedError{Partitions: []tick.TopicPartition{p0, p2}}
				case b.Chunks[0].TopicPartition == p0 && b.Chunks[0].From == 50:
					return &tick.FencedError{Partitions: []tick.TopicPartition{p0}}
				}
				return nil
			}
			cfg := testConfig()
			cfg.BatchSize = 30
			h := start(t, cfg, sink, nil, false)
			c, ctx := h.c, context.Background()
			c.SetAcker(acks)
			c.Assign([]tick.TopicPartition{p0, p1, p2})
			for _, ch := range []*tick.Chunk{chunk(p0, 0, 10), chunk(p1, 0, 10), chunk(p2, 0, 10)} {
				if err := c.Submit(ctx, ch); err != nil {
					t.Fatal(err)
				}
			}
			h.run()
			<-entered
			c.Revoke(ctx, []tick.TopicPartition{p2}, false) // a rebalance, not the fence, closed p2
			close(release)
			eventually(t, "p1 to be committed", func() bool { return len(sink.committed(p1)) == 10 })
			if fencer {
				eventually(t, "the fence to be told", func() bool { return len(fences.told()) == 1 })
				if got := fences.told(); !slices.Equal(got[0], []tick.TopicPartition{p0}) {
					t.Errorf("told %v fenced, want only p0", got)
				}
			}

			// Assigned again from the zombie's offset, p0 is fenced a
			// second time, then written.
			c.Assign([]tick.TopicPartition{p0})
			if err := c.Submit(ctx, chunk(p0, 50, 5)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the second fence", func() bool {
				// Refused for not following [50, 55) while open, then
				// ErrRevoked once the fence has closed it.
				return errors.Is(c.Submit(ctx, chunk(p0, 0, 1)), ErrRevoked)
			})
			c.Assign([]tick.TopicPartition{p0})
			if err := c.Submit(ctx, chunk(p0, 60, 5)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "p0 to be acknowledged", func() bool { return len(acks.of(p0)) > 0 })
			if got := sink.committed(p0); len(got) != 5 {
				t.Errorf("p0 committed %v, want [60, 65)", got)
			}
			if got := acks.of(p0); len(got) != 1 || got[0].From != 60 || got[0].Next != 65 {
				t.Errorf("p0 acks %v, want only [60, 65)", got)
			}
			if got := acks.of(p1); len(got) != 1 || got[0].Next != 10 {
				t.Errorf("p1 acks %v, want [0, 10)", got)
			}
			if got := sink.committed(p2); len(got) != 0 {
				t.Errorf("revoked p2 committed %v", got)
			}
			if fencer {
				want := [][]tick.TopicPartition{{p0}, {p0}}
				if got := fences.told(); !slices.EqualFunc(got, want, slices.Equal) {
					t.Errorf("told %v, want %v: each fence once", got, want)
				}
			}
		})
	}
}

func TestRevokeDropsQueuedAndWaitsForInflight(t *testing.T) {
	sink := newMemSink()
	entered, release := gate(sink, nil)
	cfg := testConfig()
	cfg.BatchSize = 10
	h := start(t, cfg, sink, nil, true)
	c, ctx := h.c, context.Background()
	c.Assign([]tick.TopicPartition{p0, p1})
	if err := c.Submit(ctx, chunk(p0, 0, 10)); err != nil {
		t.Fatal(err)
	}
	<-entered
	for _, ch := range []*tick.Chunk{chunk(p0, 10, 5), chunk(p0, 15, 5), chunk(p1, 0, 5)} {
		if err := c.Submit(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	revoked := make(chan struct{})
	go func() {
		c.Revoke(ctx, []tick.TopicPartition{p0}, true)
		close(revoked)
	}()
	select {
	case <-revoked:
		t.Fatal("Revoke returned while p0's write was in flight")
	case <-time.After(30 * time.Millisecond):
	}
	depths := map[tick.TopicPartition]int{p2: 99}
	c.PartitionDepths(depths)
	if len(depths) != 1 || depths[p1] != 5 {
		t.Errorf("depths after revoke %v, want only p1: 5", depths)
	}
	if got := value(t, c.m.dropped); got != 10 {
		t.Errorf("dropped %v, want the 10 queued ticks", got)
	}
	if got := c.Current().QueueSize; got != 5 {
		t.Errorf("queue size %d, want 5", got)
	}
	if err := c.Submit(ctx, chunk(p0, 20, 1)); !errors.Is(err, ErrRevoked) {
		t.Errorf("Submit to a revoked partition: %v", err)
	}
	close(release)
	<-revoked
	eventually(t, "p1 to be committed", func() bool { return len(sink.committed(p1)) == 5 })
	if got := sink.committed(p0); len(got) != 10 {
		t.Errorf("p0 committed %d records, want the 10 in flight", len(got))
	}
	start := time.Now()
	c.Revoke(ctx, []tick.TopicPartition{p1, p2}, true) // nothing in flight
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Revoke with nothing in flight took %v", d)
	}
}

func TestRevokeDropsPartitionFromABatchAwaitingRetry(t *testing.T) {
	sink := newMemSink()
	entered, release := gate(sink, temporary{})
	h := start(t, testConfig(), sink, nil, false)
	c, ctx := h.c, context.Background()
	c.Assign([]tick.TopicPartition{p0, p1})
	for _, ch := range []*tick.Chunk{chunk(p0, 0, 10), chunk(p1, 0, 10)} {
		if err := c.Submit(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	h.run()
	<-entered
	revoked := make(chan struct{})
	go func() {
		c.Revoke(ctx, []tick.TopicPartition{p0}, true)
		close(revoked)
	}()
	close(release) // the attempt fails; the retry must leave p0 out
	<-revoked
	eventually(t, "p1 to be committed", func() bool { return len(sink.committed(p1)) == 10 })
	if got := sink.committed(p0); len(got) != 0 {
		t.Errorf("revoked partition written on retry: %v", got)
	}
	if got := value(t, c.m.dropped); got != 10 {
		t.Errorf("dropped %v, want 10", got)
	}
}

func TestDrainWritesEverything(t *testing.T) {
	cfg := testConfig()
	cfg.Workers = 4
	cfg.FlushInterval = time.Hour // only Drain flushes the partial batches
	sink := newMemSink()
	h := start(t, cfg, sink, nil, true)
	c := h.c
	tps := []tick.TopicPartition{p0, p1, p2}
	c.Assign(tps)
	for i, tp := range tps {
		if err := c.Submit(context.Background(), chunk(tp, 0, 3+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, tp := range tps {
		if got := len(sink.committed(tp)); got != 3+i {
			t.Errorf("%s: %d committed, want %d", tp, got, 3+i)
		}
	}
	if err := c.Submit(context.Background(), chunk(p0, 3, 1)); err != ErrClosed {
		t.Errorf("Submit after Drain: %v, want ErrClosed", err)
	}
}

func TestDrainIsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.DrainTimeout = 50 * time.Millisecond
	h := start(t, cfg, newMemSink(), nil, false) // no workers: nothing drains
	c := h.c
	c.Assign([]tick.TopicPartition{p0})
	if err := c.Submit(context.Background(), chunk(p0, 0, 100)); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- c.Submit(context.Background(), chunk(p0, 100, 1)) }()
	start := time.Now()
	outer, cancel := context.WithTimeout(context.Background(), 5*time.Second) // bounds the test if DrainTimeout is ignored
	defer cancel()
	err := c.Drain(outer)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "100 ticks queued") {
		t.Errorf("Drain = %v, want a deadline error counting 100 ticks", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Drain took %v with a 50ms timeout", d)
	}
	if err := <-blocked; err != ErrClosed {
		t.Errorf("blocked Submit: %v, want ErrClosed", err)
	}
}

// Each transition is told to OnLevel, in order, and counted in
// mds_feedback_events_total, with or without MDS_FB_ENABLE_FEEDBACK (which
// only the application reads).
func TestOnLevelTellsEachTransition(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		t.Run(map[bool]string{true: "enabled", false: "disabled"}[enabled], func(t *testing.T) {
			cfg := testConfig() // capacity 100: soft above 50, hard at 80
			cfg.EnableFeedback = enabled
			h := start(t, cfg, newMemSink(), nil, false) // no workers: only Submit changes the level
			h.c.Assign([]tick.TopicPartition{p0})
			for i := range 9 {
				if err := h.c.TrySubmit(chunk(p0, int64(10*i), 10)); err != nil {
					t.Fatal(err)
				}
			}
			if cur := h.c.Current(); cur.Level != backpressure.Hard || cur.QueueSize != 90 {
				t.Errorf("Current() = %+v, want hard at 90", cur)
			}
			if got := value(t, h.c.m.level); got != 2 {
				t.Errorf("level gauge %v, want 2", got)
			}
			// OnLevel runs in the goroutine that changes the level, here
			// TrySubmit's: both transitions are recorded already.
			if n := len(h.rec.ch); n != 2 {
				t.Fatalf("%d transitions told, want 2", n)
			}
			if e := h.rec.next(t); e.Level != backpressure.Soft || e.QueueSize != 60 || e.CoordinatorID != cfg.ID {
				t.Errorf("first transition %+v, want soft at 60", e)
			}
			if e := h.rec.next(t); e.Level != backpressure.Hard || e.QueueSize != 80 || e.Reason != backpressure.ReasonHighWatermark {
				t.Errorf("second transition %+v, want hard at 80", e)
			}
			for l, want := range map[backpressure.Level]float64{backpressure.OK: 0, backpressure.Soft: 1, backpressure.Hard: 1} {
				if got := value(t, h.c.m.events[l]); got != want {
					t.Errorf("%v transitions counted %v, want %v", l, got, want)
				}
			}
		})
	}
}

func TestMetricsAreRegistered(t *testing.T) {
	sink := newMemSink()
	h := start(t, testConfig(), sink, nil, true)
	produce(t, h.c, []tick.TopicPartition{p0}, 50)
	if err := h.c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, err := h.reg.Gather() // the pedantic registry checks consistency
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, name := range []string{
		"mds_coord_items_submitted_total", "mds_coord_queue_depth", "mds_coord_queue_capacity",
		"mds_coord_level", "mds_coord_workers_alive", "mds_coord_circuit_state",
		"mds_coord_dropped_ticks_total", "mds_worker_batches_written_total",
		"mds_worker_rows_written_total", "mds_worker_write_errors_total", "mds_worker_retries_total",
		"mds_worker_write_latency_seconds", "mds_ingest_latency_seconds", "mds_feedback_events_total",
	} {
		if !got[name] {
			t.Errorf("metric %s not exported", name)
		}
	}
	if v := value(t, h.c.m.submitted); v != 50 {
		t.Errorf("submitted %v, want 50", v)
	}
	if v := value(t, h.c.m.capacity); v != 100 {
		t.Errorf("capacity %v, want 100", v)
	}
	if v := value(t, h.c.m.depth); v != 0 {
		t.Errorf("depth after drain %v", v)
	}
}

// At HARD the consumer stops fetching, so a partial batch is written at once
// instead of waiting for BatchSize ticks or the flush interval.
func TestPartialBatchIsWrittenAtOnceWhenHard(t *testing.T) {
	cfg := testConfig()
	cfg.Capacity, cfg.HighWatermark, cfg.LowWatermark = 100, 60, 30
	cfg.BatchSize = 100
	cfg.FlushInterval = time.Hour
	sink := newMemSink()
	h := start(t, cfg, sink, nil, true)
	c := h.c
	c.Assign([]tick.TopicPartition{p0})
	if err := c.Submit(context.Background(), chunk(p0, 0, 50)); err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(context.Background(), chunk(p0, 50, 20)); err != nil { // 70 queued: HARD
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(sink.committed(p0)) < 70 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(sink.committed(p0)); got != 70 {
		t.Fatalf("%d of 70 ticks written at HARD", got)
	}
	// One write of all 70: the first 50 were not written below the high
	// watermark, before the batch or its age was due.
	if n := sink.callCount(); n != 1 {
		t.Fatalf("%d writes, want the 70 ticks in one at HARD", n)
	}
}
