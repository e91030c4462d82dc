package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/tick"
)

func TestWriteCommitsRowsDeadLettersAndOffsets(t *testing.T) {
	s, url, reg := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)

	full := record(5, "MSFT", 412.5)
	full.Tick.Venue, full.Tick.Size, full.Tick.Bid, full.Tick.Ask = "XNAS", 100, 412.4, 412.6
	full.Tick.BidSize, full.Tick.AskSize, full.Tick.Seq = 300, 200, 123456
	full.Tick.Has = tick.HasVenue | tick.HasSize | tick.HasBid | tick.HasAsk | tick.HasBidSize | tick.HasAskSize | tick.HasSeq
	p0 := chunk("ticks", 0, -1, 5, "AAPL")
	p0.Records = append(p0.Records, full)
	p0.Next = 7
	p0.Dead = []tick.DeadLetter{{
		TopicPartition: p0.TopicPartition, Offset: 6, Key: []byte("k"), Value: []byte("{not json"),
		Reason: tick.ReasonDecode, Err: "bad \x00 json \xff",
	}}
	p1 := chunk("ticks", 1, 40, 50, "IBM")
	p1.From = -1 // first write of the partition, starting at offset 40

	if err := s.Write(ctx, batch(p0, p1)); err != nil {
		t.Fatalf("Write: %v", err)
	}

	if n := queryInt(t, db, `SELECT count(*) FROM ticks`); n != 16 {
		t.Fatalf("ticks holds %d rows, want 16", n)
	}
	var (
		ts                               time.Time
		venue                            *string
		size, bid, ask, bidSize, askSize *float64
		seq                              *int64
	)
	err := db.QueryRow(ctx, `SELECT ts, venue, size, bid, ask, bid_size, ask_size, seq FROM ticks WHERE symbol = 'MSFT'`).
		Scan(&ts, &venue, &size, &bid, &ask, &bidSize, &askSize, &seq)
	if err != nil {
		t.Fatal(err)
	}
	if !ts.Equal(full.Tick.TS) || *venue != "XNAS" || *size != 100 || *bid != 412.4 || *ask != 412.6 ||
		*bidSize != 300 || *askSize != 200 || *seq != 123456 {
		t.Fatalf("MSFT row = %v %v %v %v %v %v %v %v", ts, *venue, *size, *bid, *ask, *bidSize, *askSize, *seq)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks WHERE symbol = 'AAPL'
		AND venue IS NULL AND size IS NULL AND bid IS NULL AND ask IS NULL
		AND bid_size IS NULL AND ask_size IS NULL AND seq IS NULL`); n != 5 {
		t.Fatalf("%d AAPL rows with NULL optional fields, want 5", n)
	}

	got, err := s.LoadOffsets(ctx, testGroup, []tick.TopicPartition{{Topic: "ticks", Partition: 0}, {Topic: "ticks", Partition: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if got[tick.TopicPartition{Topic: "ticks", Partition: 0}].Next != 7 || got[tick.TopicPartition{Topic: "ticks", Partition: 1}].Next != 50 {
		t.Fatalf("offsets = %v", got)
	}

	dls, err := s.ListDeadLetters(ctx, DeadLetterFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Offset != 6 || string(dls[0].Value) != "{not json" || dls[0].Reason != tick.ReasonDecode ||
		dls[0].Err != `bad \x00 json `+"\uFFFD" || dls[0].ReplayedAt != nil {
		t.Fatalf("dead letters = %+v", dls)
	}

	if v := testutil.ToFloat64(s.m.committed); v != 1 {
		t.Errorf("committed transactions = %v", v)
	}
	if v := testutil.ToFloat64(s.m.rows); v != 16 {
		t.Errorf("rows metric = %v", v)
	}
	if v := testutil.ToFloat64(s.m.deadLetters.WithLabelValues(tick.ReasonDecode)); v != 1 {
		t.Errorf("decode dead letters metric = %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "mds_dead_letters_total", "mds_store_transactions_total",
		"mds_store_copy_rows_total", "mds_store_pool_acquired_conns", "mds_store_pool_max_conns"); err != nil || n != 4+3+1+1+1 {
		t.Errorf("gathered %d series (%v)", n, err)
	}
}

func TestWriteFencedWhenStoredOffsetDiffers(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if err := s.Write(ctx, batch(chunk("ticks", 0, -1, 10, "A"), chunk("ticks", 1, -1, 10, "A"))); err != nil {
		t.Fatalf("first Write: %v", err)
	}

	cases := []struct {
		name   string
		batch  *tick.Batch
		fenced []int32
	}{
		{"no row expected but one exists", batch(chunk("ticks", 0, -1, 20, "Z")), []int32{0}},
		{"stale from", batch(chunk("ticks", 0, 5, 20, "Z")), []int32{0}},
		{"one of two partitions stale", batch(chunk("ticks", 1, 10, 20, "Z"), chunk("ticks", 0, 3, 20, "Z")), []int32{0}},
		{"stored row expected but absent", batch(chunk("ticks", 7, 10, 20, "Z")), []int32{7}},
		{"every fenced partition is listed", batch(chunk("ticks", 0, 3, 20, "Z"), chunk("ticks", 2, 10, 20, "Z"), chunk("ticks", 1, 0, 20, "Z")), []int32{0, 2, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := s.Write(ctx, c.batch)
			var fe *tick.FencedError
			if !errors.As(err, &fe) {
				t.Fatalf("Write = %v, want *tick.FencedError", err)
			}
			var parts []int32
			for _, tp := range fe.Partitions {
				parts = append(parts, tp.Partition)
			}
			if !slices.Equal(parts, c.fenced) {
				t.Fatalf("fenced partitions %v, want %v", parts, c.fenced)
			}
			if IsTemporary(err) {
				t.Fatal("a fenced write must not be retried")
			}
		})
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks WHERE symbol = 'Z'`); n != 0 {
		t.Fatalf("fenced writes left %d rows", n)
	}
	if n := queryInt(t, db, `SELECT sum(next_offset) FROM mds_offsets`); n != 20 {
		t.Fatalf("offsets changed by fenced writes: sum %d", n)
	}
	if v := testutil.ToFloat64(s.m.fenced); v != 5 {
		t.Errorf("fenced transactions = %v", v)
	}
}

// TestWriteZombieIsFencedAfterWaitingForTheOwner runs the zombie scenario
// with two real transactions on one partition: the new owner holds the
// offset row lock (its COPY is held up by a table lock), the zombie, which
// expects the same stored offset, blocks on that row, and once the owner
// commits the zombie finds the offset moved on and writes nothing.
func TestWriteZombieIsFencedAfterWaitingForTheOwner(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if err := s.Write(ctx, batch(chunk("ticks", 0, -1, 10, "A"))); err != nil {
		t.Fatal(err)
	}

	holder := connect(t, url)
	hold, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, `LOCK TABLE ticks IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	waitForLockWaiters := func(n int64) {
		t.Helper()
		for ctx.Err() == nil {
			// Client sessions only: TimescaleDB's policy jobs run as
			// background workers and may wait on the same lock.
			if queryInt(t, db, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'
				  AND backend_type = 'client backend'`) == n {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("never saw %d sessions waiting on a lock", n)
	}

	owner, zombie := make(chan error, 1), make(chan error, 1)
	go func() { owner <- s.Write(ctx, batch(chunk("ticks", 0, 10, 20, "OWNER"))) }()
	waitForLockWaiters(1) // the owner has its offset row and waits to COPY
	go func() { zombie <- s.Write(ctx, batch(chunk("ticks", 0, 10, 15, "ZOMBIE"))) }()
	waitForLockWaiters(2) // the zombie waits for the owner's offset row
	select {
	case err := <-zombie:
		t.Fatalf("the zombie returned %v while the owner still held the partition", err)
	case <-time.After(100 * time.Millisecond):
	}

	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-owner; err != nil {
		t.Fatalf("owner Write: %v", err)
	}
	var fe *tick.FencedError
	if err := <-zombie; !errors.As(err, &fe) || len(fe.Partitions) != 1 || fe.Partitions[0].Partition != 0 {
		t.Fatalf("zombie Write = %v, want fenced on partition 0", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks WHERE symbol = 'ZOMBIE'`); n != 0 {
		t.Fatalf("the zombie wrote %d rows", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks WHERE symbol = 'OWNER'`); n != 10 {
		t.Fatalf("the owner wrote %d rows, want 10", n)
	}
	if n := queryInt(t, db, `SELECT next_offset FROM mds_offsets`); n != 20 {
		t.Fatalf("next_offset = %d, want 20", n)
	}
}

func TestWriteDeadLettersRowsTheDatabaseRejects(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, `ALTER TABLE ticks ADD CONSTRAINT no_13_13 CHECK (price <> 13.13)`); err != nil {
		t.Fatal(err)
	}

	c := chunk("ticks", 3, -1, 100, "GOOD")
	bad := map[int64]string{ // offset -> SQLSTATE of the refusal
		0: "23514", 37: "23514", 38: "23514", 99: "23514", // check_violation
		50: "22021", 51: "22021", // character_not_in_repertoire / untranslatable: NUL, invalid UTF-8
	}
	for off, code := range bad {
		r := &c.Records[off]
		if code == "23514" {
			r.Tick.Price = 13.13
		}
	}
	c.Records[50].Tick.Symbol = "NUL\x00SYM"
	c.Records[51].Tick.Symbol = "BAD\xffUTF8"
	// A second chunk in the same batch, all good, so bisection crosses chunks.
	c2 := chunk("ticks", 4, 7, 27, "GOOD")
	c2.From = -1

	if err := s.Write(ctx, batch(c, c2)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks`); n != 100-int64(len(bad))+20 {
		t.Fatalf("ticks holds %d rows, want %d", n, 100-len(bad)+20)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks WHERE price = 13.13 OR symbol <> 'GOOD'`); n != 0 {
		t.Fatalf("%d rejected rows were stored", n)
	}
	dls, err := s.ListDeadLetters(ctx, DeadLetterFilter{Reason: tick.ReasonRejected})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != len(bad) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dls), len(bad), dls)
	}
	for _, d := range dls {
		code, ok := bad[d.Offset]
		if !ok || d.Partition != 3 || !strings.HasPrefix(d.Err, code+": ") ||
			string(d.Value) != string(c.Records[d.Offset].Value) || string(d.Key) != "GOOD" {
			t.Errorf("dead letter %+v (expected SQLSTATE %q)", d, code)
		}
	}
	offs, err := s.LoadOffsets(ctx, testGroup, []tick.TopicPartition{{Topic: "ticks", Partition: 3}, {Topic: "ticks", Partition: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if offs[tick.TopicPartition{Topic: "ticks", Partition: 3}].Next != 100 || offs[tick.TopicPartition{Topic: "ticks", Partition: 4}].Next != 27 {
		t.Fatalf("offsets = %v", offs)
	}
	if v := testutil.ToFloat64(s.m.deadLetters.WithLabelValues(tick.ReasonRejected)); v != float64(len(bad)) {
		t.Errorf("rejected dead letters metric = %v", v)
	}
}

func TestWritePermanentErrorRollsBack(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, `ALTER TABLE ticks RENAME TO ticks_gone`); err != nil {
		t.Fatal(err)
	}
	err := s.Write(ctx, batch(chunk("ticks", 0, -1, 3, "A")))
	if err == nil || IsTemporary(err) {
		t.Fatalf("Write into a missing table = %v, want a permanent error", err)
	}
	var te interface{ Temporary() bool }
	if !errors.As(err, &te) || te.Temporary() {
		t.Fatalf("Write error %T does not say Temporary() == false", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM mds_offsets`); n != 0 {
		t.Fatal("the offsets of a failed write were committed")
	}
	if v := testutil.ToFloat64(s.m.rolledBack); v != 1 {
		t.Errorf("rolled back transactions = %v", v)
	}
}

func TestKilledConnectionIsTemporary(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	cfg := testConfig(dbURL)
	cfg.MaxConns = 1
	s, _ := openStore(t, cfg)
	ctx := testCtx(t)
	db := connect(t, dbURL)

	var pid int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	for queryInt(t, db, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid) != 0 {
		time.Sleep(5 * time.Millisecond)
	}

	err := s.Write(ctx, batch(chunk("ticks", 0, -1, 3, "A")))
	if err == nil {
		t.Fatal("Write on a killed connection succeeded")
	}
	var te interface{ Temporary() bool }
	if !IsTemporary(err) || !errors.As(err, &te) || !te.Temporary() {
		t.Fatalf("Write on a killed connection = %v (%T), want temporary", err, errors.Unwrap(err))
	}
	if err := s.Write(ctx, batch(chunk("ticks", 0, -1, 3, "A"))); err != nil {
		t.Fatalf("retry after the pool replaced the connection: %v", err)
	}
}

func TestLoadOffsets(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	if _, err := db.Exec(ctx, `INSERT INTO mds_offsets (consumer_group, topic, partition, next_offset) VALUES
		('g1', 'a', 0, 10), ('g1', 'a', 1, 11), ('g1', 'b', 0, 12), ('other', 'a', 2, 13)`); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadOffsets(ctx, "g1", []tick.TopicPartition{{Topic: "a", Partition: 0}, {Topic: "b", Partition: 0}, {Topic: "a", Partition: 2}, {Topic: "c", Partition: 0}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[tick.TopicPartition]int64{{Topic: "a", Partition: 0}: 10, {Topic: "b", Partition: 0}: 12}
	if len(got) != len(want) || got[tick.TopicPartition{Topic: "a", Partition: 0}].Next != 10 || got[tick.TopicPartition{Topic: "b", Partition: 0}].Next != 12 {
		t.Fatalf("LoadOffsets = %v, want %v", got, want)
	}
	if got, err := s.LoadOffsets(ctx, "g1", nil); err != nil || len(got) != 0 {
		t.Fatalf("LoadOffsets of nothing = %v, %v", got, err)
	}
}

func TestDeadLetterListAndReplay(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := testCtx(t)
	dead := func(topic string, part int32, off int64, reason string) tick.DeadLetter {
		return tick.DeadLetter{TopicPartition: tick.TopicPartition{Topic: topic, Partition: part}, Offset: off,
			Value: []byte("v"), Reason: reason, Err: "e"}
	}
	c0 := &tick.Chunk{TopicPartition: tick.TopicPartition{Topic: "a", Partition: 0}, From: -1, Next: 3,
		Dead: []tick.DeadLetter{dead("a", 0, 0, tick.ReasonDecode), dead("a", 0, 1, tick.ReasonInvalid), dead("a", 0, 2, tick.ReasonDecode)}}
	c1 := &tick.Chunk{TopicPartition: tick.TopicPartition{Topic: "b", Partition: 1}, From: -1, Next: 2,
		Dead: []tick.DeadLetter{dead("b", 1, 0, tick.ReasonTooLarge), dead("b", 1, 1, tick.ReasonDecode)}}
	if err := s.Write(ctx, batch(c0, c1)); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListDeadLetters(ctx, DeadLetterFilter{})
	if err != nil || len(all) != 5 {
		t.Fatalf("all dead letters: %d, %v", len(all), err)
	}
	ids := func(rows []DeadLetterRow) []int64 {
		var out []int64
		for _, r := range rows {
			out = append(out, r.ID)
		}
		return out
	}
	one := int32(1)
	cases := []struct {
		name string
		f    DeadLetterFilter
		want []int64
	}{
		{"topic", DeadLetterFilter{Topic: "a"}, ids(all[:3])},
		{"partition", DeadLetterFilter{Partition: &one}, ids(all[3:])},
		{"reason", DeadLetterFilter{Reason: tick.ReasonDecode}, []int64{all[0].ID, all[2].ID, all[4].ID}},
		{"id range", DeadLetterFilter{MinID: all[1].ID, MaxID: all[3].ID}, ids(all[1:4])},
		{"limit", DeadLetterFilter{Limit: 2}, ids(all[:2])},
	}
	for _, c := range cases {
		got, err := s.ListDeadLetters(ctx, c.f)
		if err != nil || !slices.Equal(ids(got), c.want) {
			t.Errorf("%s: got %v (%v), want %v", c.name, ids(got), err, c.want)
		}
	}

	chosen := []int64{all[1].ID, all[4].ID, 1 << 40}
	rows, err := s.DeadLetters(ctx, chosen)
	if err != nil || !slices.Equal(ids(rows), chosen[:2]) || rows[0].Reason != tick.ReasonInvalid {
		t.Fatalf("DeadLetters(%v) = %+v, %v", chosen, rows, err)
	}
	if n, err := s.MarkReplayed(ctx, chosen); err != nil || n != 2 {
		t.Fatalf("MarkReplayed = %d, %v", n, err)
	}
	pending, err := s.ListDeadLetters(ctx, DeadLetterFilter{Pending: true})
	if err != nil || !slices.Equal(ids(pending), []int64{all[0].ID, all[2].ID, all[3].ID}) {
		t.Fatalf("pending = %v, %v", ids(pending), err)
	}
	rows, err = s.DeadLetters(ctx, chosen[:1])
	if err != nil || len(rows) != 1 {
		t.Fatalf("DeadLetters(%v) = %+v, %v", chosen[:1], rows, err)
	}
	if rows[0].ReplayedAt == nil || time.Since(*rows[0].ReplayedAt) > time.Minute {
		t.Fatalf("replayed_at = %v", rows[0].ReplayedAt)
	}
}

// BenchmarkWrite measures Store.Write of 5000-row batches of one partition.
// The records are built once; each round only moves the chunk's range on.
func BenchmarkWrite(b *testing.B) {
	s, _, _ := newStore(b)
	ctx := context.Background()
	const rows = 5000
	c := chunk("ticks", 0, 0, rows, "BENCH")
	c.From = -1
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(ctx, batch(c)); err != nil {
			b.Fatal(err)
		}
		c.From = max(c.From, 0) + rows
		c.Next = c.From + rows
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
