//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tickgen"
)

// Backpressure run: a small queue so that a stalled database fills it in
// well under a second at the generator's rate.
const (
	bpRate     = 4000 // generator target, ticks per second
	bpCapacity = 2000 // MDS_COORDINATOR_CAPACITY: HARD at 1600, OK again at 1000
	// bpCount ends the generator by itself (about 10 s at full rate, plus
	// the stall), so that every tick it numbered is acknowledged: stopping
	// it by its context instead fails the ticks still buffered, and leaves
	// gaps in seq.
	bpCount = 40_000
)

// TestBackpressureEndToEnd stalls the database (an ACCESS EXCLUSIVE lock on
// ticks, held from another connection) under the tick generator, which
// obeys the feedback topic. It checks, from outside the processor: the
// feedback topic goes HARD (arrivals with no writes: the lag grows), every
// assigned partition is paused
// (mds_consumer_paused_partitions on /metrics), the generator stops
// producing; after the unlock the level returns to OK, the partitions
// resume, the generator is back to its rate, and every tick it produced is
// in the database exactly once.
func TestBackpressureEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tl := newTimeline(t)
	f := newFixture(t, 12)
	db := f.connect(ctx)

	env := f.env(t, "bp-1")
	env["MDS_COORDINATOR_CAPACITY"] = fmt.Sprint(bpCapacity)
	env["MDS_COORDINATOR_BATCH_SIZE"] = "250"
	env["MDS_COORDINATOR_WORKERS"] = "2"
	a := f.startApp(t, "bp-1", env)
	tl.logf("processor ready: capacity %d ticks (HARD at 80%%, OK at 50%%), 2 workers, feedback heartbeat %s", bpCapacity, env["MDS_FB_HEARTBEAT_INTERVAL"])

	// What the feedback topic says: every event, and the level a
	// producer following it computes.
	events := followEvents(ctx, t, f)
	fol, err := backpressure.NewFollower(
		backpressure.WithBrokers(f.brokers...),
		backpressure.WithTopic(f.feedback),
		backpressure.OnChange(func(l backpressure.Level) { tl.logf("follower: level %s", l) }),
	)
	if err != nil {
		t.Fatal(err)
	}
	folCtx, stopFol := context.WithCancel(ctx)
	var folDone sync.WaitGroup
	folDone.Go(func() { _ = fol.Run(folCtx) })
	defer func() { stopFol(); folDone.Wait(); fol.Close() }()

	// The generator, obeying the feedback.
	gen, err := tickgen.New(tickgen.Config{
		Topic: f.topic, Rate: bpRate, Symbols: 50, Count: bpCount,
		FeedbackTopic: f.feedback, ObeyFeedback: true,
		Seed: 7, ReportInterval: 250 * time.Millisecond,
	}, []kgo.Opt{kgo.SeedBrokers(f.brokers...)})
	if err != nil {
		t.Fatal(err)
	}
	var last atomic.Pointer[tickgen.Progress]
	genCtx, stopGen := context.WithCancel(ctx)
	defer stopGen()
	var final tickgen.Progress
	var genErr error
	var genDone sync.WaitGroup
	genDone.Go(func() {
		final, genErr = gen.Run(genCtx, func(p tickgen.Progress) { last.Store(&p) })
	})
	defer func() { stopGen(); genDone.Wait(); gen.Close() }()

	// rate measures the generator's acknowledged ticks per second over d.
	rate := func(d time.Duration) float64 {
		acked := func() int64 {
			if p := last.Load(); p != nil {
				return p.Acked
			}
			return 0
		}
		before := acked()
		time.Sleep(d)
		return float64(acked()-before) / d.Seconds()
	}
	paused := func() float64 {
		m, err := scrape(a.addr)
		if err != nil {
			return -1
		}
		return m.sum("mds_consumer_paused_partitions")
	}

	// Steady state: the generator reaches its rate (on a fresh broker its
	// first produce waits for a producer id, longer on a loaded machine).
	var steady float64
	_ = waitFor(ctx, 30*time.Second, 0, func() (bool, error) {
		steady = rate(1500 * time.Millisecond)
		return steady >= 0.6*bpRate, nil
	})
	tl.logf("steady: generator at %.0f ticks/s (target %d), follower level %s, paused partitions %v", steady, bpRate, fol.Level(), paused())
	if steady < 0.6*bpRate || fol.Level() != backpressure.OK {
		t.Fatalf("not a steady start: generator at %.0f/s, level %s", steady, fol.Level())
	}

	// Stall the database.
	lockTx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockTx.Exec(ctx, `LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	tl.logf("LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE (held in an open transaction)")
	if err := waitFor(ctx, 15*time.Second, 20*time.Millisecond, func() (bool, error) { return fol.Level() == backpressure.Hard, nil }); err != nil {
		t.Fatalf("the follower never saw HARD while the database was stalled (level %s)", fol.Level())
	}
	var nPaused float64
	if err := waitFor(ctx, 5*time.Second, 50*time.Millisecond, func() (bool, error) { nPaused = paused(); return nPaused == 12, nil }); err != nil {
		t.Errorf("under HARD, mds_consumer_paused_partitions = %v, want all 12 assigned partitions", nPaused)
	}
	tl.logf("HARD: mds_consumer_paused_partitions = %v", nPaused)
	if err := waitFor(ctx, 5*time.Second, 20*time.Millisecond, func() (bool, error) {
		p := last.Load()
		return p != nil && p.Level == backpressure.Hard, nil
	}); err != nil {
		t.Errorf("the generator's own follower never reported HARD")
	}
	stalled := rate(1500 * time.Millisecond)
	tl.logf("stalled: generator at %.0f ticks/s (target scaled to %.0f)", stalled, last.Load().Target)
	if stalled > 0.05*bpRate {
		t.Errorf("under HARD the generator still produced %.0f ticks/s, want at most 5%% of %d", stalled, bpRate)
	}

	// Release the database.
	if err := lockTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	tl.logf("lock released")
	if err := waitFor(ctx, 20*time.Second, 20*time.Millisecond, func() (bool, error) { return fol.Level() == backpressure.OK, nil }); err != nil {
		t.Fatalf("the level did not return to OK after the stall (level %s)", fol.Level())
	}
	if err := waitFor(ctx, 5*time.Second, 50*time.Millisecond, func() (bool, error) { nPaused = paused(); return nPaused == 0, nil }); err != nil {
		t.Errorf("after OK, mds_consumer_paused_partitions = %v, want 0", nPaused)
	}
	tl.logf("OK again: mds_consumer_paused_partitions = %v", nPaused)
	var recovered float64
	if err := waitFor(ctx, 10*time.Second, 0, func() (bool, error) {
		recovered = rate(time.Second)
		return recovered >= 0.6*bpRate, nil
	}); err != nil {
		t.Errorf("the generator did not recover: %.0f ticks/s, target %d", recovered, bpRate)
	}
	tl.logf("recovered: generator at %.0f ticks/s", recovered)

	// Let the generator finish its count, and check the database.
	genDone.Wait()
	if genErr != nil {
		t.Fatalf("generator: %v", genErr)
	}
	if final.Sent != bpCount || final.Acked != bpCount {
		t.Fatalf("generator: %d ticks sent and %d acknowledged, want %d", final.Sent, final.Acked, bpCount)
	}
	tl.logf("generator done: %d ticks produced", final.Acked)
	if err := f.waitIngested(ctx, db, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	l.good, l.maxSeq = final.Acked, final.Acked
	fd := f.assertExactlyOnce(ctx, db, l)

	seen := events.levels()
	tl.logf("feedback topic events: %v", seen)
	if !risesToHardAndBack(seen) {
		t.Errorf("the feedback topic did not show OK → HARD → OK: %v", seen)
	}
	t.Logf("TIMELINE\n%s\nFOUND\n%s", tl, fd)
}

// eventLog is every event read from the feedback topic.
type eventLog struct {
	mu     sync.Mutex
	events []backpressure.Event
}

// levels lists the levels of the events, without consecutive repeats
// (heartbeats).
func (e *eventLog) levels() []backpressure.Level {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []backpressure.Level
	for _, ev := range e.events {
		if len(out) == 0 || out[len(out)-1] != ev.Level {
			out = append(out, ev.Level)
		}
	}
	return out
}

// risesToHardAndBack reports whether levels contain OK, then HARD, then OK
// (a SOFT on the way up or down is allowed: near capacity, or draining).
func risesToHardAndBack(levels []backpressure.Level) bool {
	want := []backpressure.Level{backpressure.OK, backpressure.Hard, backpressure.OK}
	for _, l := range levels {
		if len(want) > 0 && l == want[0] {
			want = want[1:]
		}
	}
	return len(want) == 0
}

// followEvents reads every event of the fixture's feedback topic until the
// test ends.
func followEvents(ctx context.Context, t *testing.T, f *fixture) *eventLog {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(f.brokers...),
		kgo.ConsumeTopics(f.feedback),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AllowAutoTopicCreation(),
	)
	if err != nil {
		t.Fatal(err)
	}
	log := &eventLog{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	wg.Go(func() {
		for ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(r *kgo.Record) {
				var ev backpressure.Event
				if err := json.Unmarshal(r.Value, &ev); err != nil {
					t.Errorf("feedback record at offset %d is not an event: %v", r.Offset, err)
					return
				}
				log.mu.Lock()
				log.events = append(log.events, ev)
				log.mu.Unlock()
			})
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait(); cl.Close() })
	return log
}
