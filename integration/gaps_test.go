//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/internal/tick"
)

// gapRow is one row of mds_offset_gaps.
type gapRow struct {
	partition      int32
	from, to, lost int64
	reason         string
}

func (f *fixture) gaps(ctx context.Context, db *pgxpool.Pool) []gapRow {
	f.t.Helper()
	rows, err := db.Query(ctx, `SELECT partition, from_offset, to_offset, lost_records, reason FROM mds_offset_gaps
		WHERE consumer_group = $1 AND topic = $2 ORDER BY id`, f.group, f.topic)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []gapRow
	var g gapRow
	if _, err := pgx.ForEachRow(rows, []any{&g.partition, &g.from, &g.to, &g.lost, &g.reason}, func() error {
		out = append(out, g)
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// deleteBefore moves the log start of every partition to its end offset now
// minus keep (DeleteRecords, as retention would), and returns the new log
// starts.
func (f *fixture) deleteBefore(ctx context.Context, keep int64) map[int32]int64 {
	f.t.Helper()
	end, err := f.endOffsets(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	var os kadm.Offsets
	starts := make(map[int32]int64)
	for p, e := range end {
		starts[p] = max(e-keep, 0)
		os.AddOffset(f.topic, p, starts[p], -1)
	}
	resp, err := f.adm.DeleteRecords(ctx, os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		f.t.Fatalf("DeleteRecords: %v", err)
	}
	return starts
}

// rowsAndDistinct counts the ticks and their distinct seq.
func rowsAndDistinct(ctx context.Context, t *testing.T, db *pgxpool.Pool) (rows, distinct int64) {
	t.Helper()
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq) FROM ticks`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

// TestLogStartPassingUsIsRecorded: retention (here DeleteRecords) moves the
// log start past the stored offsets, first while the processor is stopped
// (started again with MDS_KAFKA_START_OFFSET=latest, which once jumped to
// the end and skipped what was still in Kafka), then while it runs with its
// partitions paused by a locked table. Every record still in Kafka is
// written once, every record gone is in mds_offset_gaps, and the two add up
// to what was produced.
func TestLogStartPassingUsIsRecorded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tl := newTimeline(t)
	f := newFixture(t, 3)
	db := f.connect(ctx)
	l := newLedger()
	if err := f.produce(ctx, batchSpec{From: 1, To: 3000}, l); err != nil {
		t.Fatal(err)
	}
	a := f.startApp(t, "gaps-1", f.env(t, "gaps-1"))
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	stored, err := f.storedOffsets(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	tl.logf("first run wrote everything: stored offsets %v", stored)

	if err := f.produce(ctx, batchSpec{From: 3001, To: 6000}, l); err != nil {
		t.Fatal(err)
	}
	starts := f.deleteBefore(ctx, 400)
	tl.logf("stopped; produced 3000 more and deleted all but the last 400 records of each partition: log starts %v", starts)

	env := f.env(t, "gaps-2")
	env["MDS_KAFKA_START_OFFSET"] = "latest" // applies to partitions never seen only
	// A small queue, so that a locked table pauses the partitions with
	// most of what follows still in Kafka.
	env["MDS_COORDINATOR_CAPACITY"], env["MDS_COORDINATOR_BATCH_SIZE"] = "500", "100"
	b := f.startApp(t, "gaps-2", env)
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	gaps := f.gaps(ctx, db)
	var lost int64
	for _, g := range gaps {
		if g.reason != tick.GapLogStart || g.from != stored[g.partition] || g.to != starts[g.partition] || g.lost != g.to-g.from {
			t.Errorf("gap %+v, want log_start [%d, %d)", g, stored[g.partition], starts[g.partition])
		}
		lost += g.lost
	}
	if len(gaps) != 3 {
		t.Fatalf("%d gaps recorded, want one per partition: %+v", len(gaps), gaps)
	}
	rows, distinct := rowsAndDistinct(ctx, t, db)
	tl.logf("restarted with start offset latest: %d rows, %d records recorded lost in %d gaps", rows, lost, len(gaps))
	if rows != distinct || rows+lost != 6000 {
		t.Fatalf("%d rows (%d distinct) + %d lost != 6000 produced", rows, distinct, lost)
	}

	// While running: lock the table so the partitions pause at HARD, produce
	// and delete past the position, unlock.
	lock, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec(ctx, `LOCK TABLE ticks IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if err := f.produce(ctx, batchSpec{From: 6001, To: 9000}, l); err != nil {
		t.Fatal(err)
	}
	starts = f.deleteBefore(ctx, 0)
	tl.logf("ticks locked; produced 3000 more and deleted every record: log starts %v", starts)
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.produce(ctx, batchSpec{From: 9001, To: 9300}, l); err != nil {
		t.Fatal(err)
	}
	if err := f.waitIngested(ctx, db, time.Minute); err != nil {
		t.Fatal(err)
	}
	m, err := scrape(b.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	gaps = f.gaps(ctx, db)
	lost = 0
	for _, g := range gaps {
		if g.reason != tick.GapLogStart || g.lost != g.to-g.from || g.lost <= 0 {
			t.Errorf("gap %+v is not a log_start gap of to-from records", g)
		}
		lost += g.lost
	}
	rows, distinct = rowsAndDistinct(ctx, t, db)
	tl.logf("after the live deletion: %d rows, %d lost in %d gaps; metrics: lost %v, gaps %v",
		rows, lost, len(gaps), m.sum("mds_consumer_lost_records_total"), m.sum("mds_consumer_offset_gaps_total"))
	if rows != distinct || rows+lost != 9300 {
		t.Fatalf("%d rows (%d distinct) + %d lost != 9300 produced: a record was lost without a trace or written twice", rows, distinct, lost)
	}
	if len(gaps) == 3 {
		t.Error("no gap recorded for the deletion while running")
	}
	if got := m.sum("mds_consumer_offset_gaps_total", `reason="log_start"`); got != float64(len(gaps)) {
		t.Errorf("the second run counted %v gaps, it recorded %d", got, len(gaps))
	}
}

// TestTransactionGapsAreNotLoss: a transactional producer's commit markers
// and aborted batches leave offsets a read_committed consumer never
// receives. They are normal: every committed tick is written once, nothing
// aborted is, and no gap is recorded.
func TestTransactionGapsAreNotLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := newFixture(t, 2)
	db := f.connect(ctx)
	a := f.startApp(t, "txn-1", f.env(t, "txn-1"))
	txn, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.DefaultProduceTopic(f.topic), kgo.TransactionalID(uniqueName("txn")))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	seq := int64(0)
	for round := range 20 {
		commit := round%3 != 1
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range 50 {
			tk := goodTick(seq + 1)
			if !commit {
				tk.Seq = 1_000_000 + int64(round)
			} else {
				seq++
			}
			if err := txn.ProduceSync(ctx, &kgo.Record{Key: []byte(tk.Symbol), Value: tick.AppendJSON(nil, &tk)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// The stored offset stops at a partition's last record: a commit marker
	// after it is never delivered. So wait for the rows.
	err = waitFor(ctx, time.Minute, 200*time.Millisecond, func() (bool, error) {
		rows, _ := rowsAndDistinct(ctx, t, db)
		return rows >= seq, nil
	})
	if err != nil {
		t.Fatalf("the %d committed ticks never all arrived", seq)
	}
	m, err := scrape(a.addr)
	if err != nil {
		t.Fatal(err)
	}
	rows, distinct := rowsAndDistinct(ctx, t, db)
	var aborted int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM ticks WHERE seq >= 1000000`).Scan(&aborted); err != nil {
		t.Fatal(err)
	}
	gaps := f.gaps(ctx, db)
	t.Logf("%d committed ticks produced in 20 transactions (a third aborted): %d rows, %d aborted rows, %d gaps, %v offsets not delivered",
		seq, rows, aborted, len(gaps), m.sum("mds_consumer_skipped_offsets_total", `reason="not_delivered"`))
	if rows != seq || distinct != seq || aborted != 0 {
		t.Fatalf("%d rows (%d distinct, %d aborted), want the %d committed ticks once", rows, distinct, aborted, seq)
	}
	if len(gaps) != 0 {
		t.Fatalf("normal transaction gaps recorded as lost: %+v", gaps)
	}
	if m.sum("mds_consumer_skipped_offsets_total", `reason="not_delivered"`) == 0 {
		t.Error("no offsets counted as not delivered, though markers and aborted records occupy offsets")
	}
	if err := a.stop(); err != nil {
		t.Error(err)
	}
}
