package dbtest

import (
	"context"
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/pgtest"
)

// A lock on ticks held past the write deadline: the write times out (the
// store counts cause timeout), is retried, the queue fills and the level
// follows (HARD); once the lock goes, everything commits and the level
// falls back to OK.
func TestLockOnTicksPastTheDeadline(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	r := newRig(t, dsn, dsn, 500*time.Millisecond, 100*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hold, err := r.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(context.Background()) }()
	if _, err := hold.Exec(ctx, `LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	r.submit(t, chunk(p0, 0, 20), chunk(p1, 0, 20))
	waitFor(t, 30*time.Second, "two timeouts counted", func() bool {
		return r.metric(t, "mds_store_write_errors_total", map[string]string{"cause": "timeout"}) >= 2
	})
	if r.metric(t, "mds_worker_write_errors_total", map[string]string{"class": "temporary"}) < 2 {
		t.Error("the timeouts were not temporary errors for the coordinator")
	}
	// The queue fills behind the stuck batches: HARD at 80 of 100 ticks.
	r.submit(t, chunk(p0, 20, 40), chunk(p1, 20, 40))
	if l := r.level(); l != backpressure.Hard {
		t.Fatalf("level %s with 80 ticks queued behind a lock, want hard", l)
	}
	if _, stalled := r.co.Stalled(); stalled {
		t.Fatal("a timeout stalled writing; it is temporary")
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every tick committed after the lock went", func() bool {
		return r.count(t, `SELECT count(*) FROM ticks`) == 120
	})
	waitFor(t, 5*time.Second, "the level back to OK", func() bool { return r.level() == backpressure.OK })
	if n := r.count(t, `SELECT sum(next_offset) FROM mds_offsets`); n != 120 {
		t.Errorf("stored offsets sum to %d, want 120", n)
	}
}

// The database goes away for a while (every connection cut, new ones
// refused) and comes back: writing resumes within one retry wait of its
// return, not after a breaker's cool-down.
func TestWritingResumesWithinOneWaitOfTheDatabase(t *testing.T) {
	const outage = 15 * time.Second
	const maxBackoff = 500 * time.Millisecond
	direct := pgtest.NewDatabase(t)
	px := newProxy(t, hostPort(t, direct))
	r := newRig(t, px.through(t, direct), direct, 2*time.Second, maxBackoff)
	r.submit(t, chunk(p0, 0, 10))
	waitFor(t, 10*time.Second, "the first batch", func() bool { return r.count(t, `SELECT count(*) FROM ticks`) == 10 })

	px.setDown(true)
	downAt := time.Now()
	r.submit(t, chunk(p0, 10, 10), chunk(p1, 0, 10))
	waitFor(t, 10*time.Second, "failed attempts during the outage", func() bool {
		return r.metric(t, "mds_store_write_errors_total", map[string]string{"cause": "connection"}) >= 3
	})
	time.Sleep(time.Until(downAt.Add(outage)))
	if n := r.count(t, `SELECT count(*) FROM ticks`); n != 10 {
		t.Fatalf("%d rows while the database was unreachable, want 10", n)
	}
	if got := r.metric(t, "mds_coord_circuit_state", nil); got != 1 {
		t.Errorf("mds_coord_circuit_state = %v during the outage, want 1", got)
	}

	px.setDown(false)
	// One wait is at most 1.5 × maxBackoff (jitter); a second covers
	// reconnecting and the commit on a loaded machine.
	waitFor(t, maxBackoff*3/2+time.Second, "writing to resume after the database came back", func() bool {
		return r.count(t, `SELECT count(*) FROM ticks`) == 30
	})
	waitFor(t, 5*time.Second, "mds_coord_circuit_state back to 0", func() bool {
		return r.metric(t, "mds_coord_circuit_state", nil) == 0
	})
}

// A trigger refusing every row: writing stalls (HARD, Stalled names
// P0001, mds_worker_stall_cause{cause="P0001"}), nothing is lost or
// dead-lettered; when the trigger is dropped writing resumes by itself.
func TestTriggerRefusingEveryRowStallsUntilDropped(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	r := newRig(t, dsn, dsn, 5*time.Second, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := r.db.Exec(ctx, `
CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'ticks are read-only today'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON ticks FOR EACH ROW EXECUTE FUNCTION refuse()`); err != nil {
		t.Fatal(err)
	}
	r.submit(t, chunk(p0, 0, 20), chunk(p1, 0, 20))
	waitFor(t, 10*time.Second, "writing to stall", func() bool { _, ok := r.co.Stalled(); return ok })
	st, _ := r.co.Stalled()
	if st.Cause != "P0001" || st.Error == "" {
		t.Errorf("Stalled() = %+v, want cause P0001 and the error", st)
	}
	if ev := r.co.Current(); ev.Level != backpressure.Hard {
		t.Errorf("level %s while stalled with %d ticks queued, want hard", ev.Level, ev.QueueSize)
	}
	if got := r.metric(t, "mds_worker_stall_cause", map[string]string{"cause": "P0001"}); got < 1 {
		t.Errorf("mds_worker_stall_cause{cause=P0001} = %v, want >= 1", got)
	}
	// Probes go on while stalled.
	before := r.metric(t, "mds_worker_write_errors_total", map[string]string{"class": "permanent"})
	waitFor(t, 10*time.Second, "the stalled batch to be retried", func() bool {
		return r.metric(t, "mds_worker_write_errors_total", map[string]string{"class": "permanent"}) >= before+2
	})

	if _, err := r.db.Exec(ctx, `DROP TRIGGER refuse ON ticks`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "every tick committed after the trigger went", func() bool {
		return r.count(t, `SELECT count(*) FROM ticks`) == 40
	})
	waitFor(t, 5*time.Second, "the stall to end", func() bool { _, ok := r.co.Stalled(); return !ok })
	waitFor(t, 5*time.Second, "the level back to OK", func() bool { return r.level() == backpressure.OK })
	if n := r.count(t, `SELECT count(*) FROM mds_dead_letters`); n != 0 {
		t.Errorf("%d dead letters, want none: the rows were not at fault", n)
	}
	if n := r.count(t, `SELECT sum(next_offset) FROM mds_offsets`); n != 40 {
		t.Errorf("stored offsets sum to %d, want 40", n)
	}
	if got := r.metric(t, "mds_worker_stalled", nil); got != 0 {
		t.Errorf("mds_worker_stalled = %v after the stall, want 0", got)
	}
}
