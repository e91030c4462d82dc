//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestIngest runs the application against a topic of good and bad
// records: every good tick lands once, every bad record is dead-lettered
// once, the stored offsets reach the end of every partition, and /metrics
// counts the rows.
func TestIngest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, 12)
	l := newLedger()
	if err := f.produce(ctx, batchSpec{From: 1, To: 20_000, PoisonEvery: 1000, Kinds: []poisonKind{poisonDecode, poisonInvalid}}, l); err != nil {
		t.Fatal(err)
	}
	a := f.startApp(t, "ingest-1", f.env(t, "ingest-1"))
	db := f.connect(ctx)
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	fd := f.assertExactlyOnce(ctx, db, l)
	t.Logf("found:\n%s", fd)

	m, err := scrape(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.sum("mds_store_copy_rows_total"); got != float64(l.goodCount()) {
		t.Errorf("mds_store_copy_rows_total = %v, want %d", got, l.goodCount())
	}
	if got := m.sum("mds_dead_letters_total"); got != float64(l.poisoned()) {
		t.Errorf("mds_dead_letters_total = %v, want %d", got, l.poisoned())
	}
	if err := a.stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
	checkCommitted(ctx, t, f, db)
	checkTimescale(t, db)
}

// TestRestart stops the application in the middle of ingestion, deletes
// the group's Kafka offsets so that only the database remembers the
// progress, and starts it again: it resumes from mds_offsets, and nothing
// is duplicated or lost.
func TestRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, 12)
	l := newLedger()
	if err := f.produce(ctx, batchSpec{From: 1, To: 40_000, PoisonEvery: 2000, Kinds: []poisonKind{poisonDecode, poisonInvalid}}, l); err != nil {
		t.Fatal(err)
	}
	db := f.connect(ctx)
	env := f.env(t, "restart-1")
	// Small batches slow the first run down, so that it stops midway.
	env["MDS_COORDINATOR_BATCH_SIZE"], env["MDS_COORDINATOR_WORKERS"] = "200", "1"
	a := f.startApp(t, "restart-1", env)
	var atStop int64
	err := waitFor(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		err := db.QueryRow(ctx, `SELECT count(*) FROM ticks`).Scan(&atStop)
		return atStop >= 2000, err
	})
	if err != nil {
		t.Fatalf("first run wrote %d ticks: %v", atStop, err)
	}
	if err := a.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	checkCommitted(ctx, t, f, db)
	if err := db.QueryRow(ctx, `SELECT count(*) FROM ticks`).Scan(&atStop); err != nil {
		t.Fatal(err)
	}
	stored, err := f.storedOffsets(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, o := range stored {
		sum += o
	}
	t.Logf("first run stopped after writing %d of %d ticks; mds_offsets covers %d records", atStop, l.goodCount(), sum)
	if resp, err := f.adm.DeleteGroup(ctx, f.group); err != nil || resp.Err != nil {
		t.Fatalf("deleting the Kafka group %s: %v %v", f.group, err, resp.Err)
	}

	if err := f.produce(ctx, batchSpec{From: 40_001, To: 50_000, PoisonEvery: 2000, Kinds: []poisonKind{poisonInvalid}}, l); err != nil {
		t.Fatal(err)
	}
	b := f.startApp(t, "restart-2", f.env(t, "restart-2"))
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.stop(); err != nil {
		t.Errorf("graceful stop: %v", err)
	}
	fd := f.assertExactlyOnce(ctx, db, l)
	t.Logf("after the restart:\n%s", fd)
	if atStop >= l.goodCount() {
		t.Logf("note: the first run had written everything before it was stopped; the resume was trivial")
	}
}

// TestRebalance runs two members in one group: the partitions are split
// between them; when one stops, the other takes all of them, and every tick
// is stored exactly once.
func TestRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, 12)
	l := newLedger()
	db := f.connect(ctx)
	a := f.startApp(t, "rebalance-a", f.env(t, "rebalance-a"))
	b := f.startApp(t, "rebalance-b", f.env(t, "rebalance-b"))

	assigned := func(addr string) float64 {
		m, err := scrape(addr)
		if err != nil {
			return -1
		}
		return m.sum("mds_consumer_assigned_partitions")
	}
	var na, nb float64
	err := waitFor(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		na, nb = assigned(a.addr), assigned(b.addr)
		return na > 0 && nb > 0 && na+nb == 12, nil
	})
	if err != nil {
		t.Fatalf("partitions not split between the members: a %v, b %v", na, nb)
	}
	t.Logf("split: a has %v partitions, b has %v", na, nb)

	// Produce while both run, then stop b in the middle of more input.
	if err := f.produce(ctx, batchSpec{From: 1, To: 20_000, PoisonEvery: 1000, Kinds: []poisonKind{poisonDecode}}, l); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- f.produce(ctx, batchSpec{From: 20_001, To: 40_000, Rate: 20_000, PoisonEvery: 1000, Kinds: []poisonKind{poisonInvalid}}, l)
	}()
	time.Sleep(300 * time.Millisecond)
	if err := b.stop(); err != nil {
		t.Errorf("graceful stop of b: %v", err)
	}
	err = waitFor(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		na = assigned(a.addr)
		return na == 12, nil
	})
	if err != nil {
		t.Fatalf("a did not take every partition after b stopped: a has %v", na)
	}
	t.Logf("b stopped: a has all %v partitions", na)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(); err != nil {
		t.Errorf("graceful stop of a: %v", err)
	}
	fd := f.assertExactlyOnce(ctx, db, l)
	t.Logf("found:\n%s", fd)
}

// checkCommitted asserts that after the graceful stop of the group's last
// member, its Kafka-committed offsets (kept for lag tooling) equal the
// offsets stored with the data: a stop drains and makes its final commits.
func checkCommitted(ctx context.Context, t *testing.T, f *fixture, db *pgxpool.Pool) {
	t.Helper()
	stored, err := f.storedOffsets(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if diffs := f.committedGap(ctx, stored); len(diffs) > 0 {
		t.Errorf("after a graceful stop the Kafka group's committed offsets differ from mds_offsets (lag tools would show phantom lag): %v", diffs)
	}
}
