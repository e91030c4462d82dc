package consume

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

func recs(from, to int64) []*kgo.Record {
	var out []*kgo.Record
	for o := from; o <= to; o++ {
		out = append(out, &kgo.Record{Offset: o})
	}
	return out
}

func TestAdmit(t *testing.T) {
	for _, tc := range []struct {
		name              string
		recs              []*kgo.Record
		pos, logStart     int64
		first, n          int64 // first record kept and how many
		trimmed           int
		skipped           int64
		gapFrom, gapTo    int64 // 0,0: no gap
		gapLost           int64
		wantNoRecordsLeft bool
	}{
		{name: "contiguous", recs: recs(10, 14), pos: 10, logStart: 0, first: 10, n: 5},
		{name: "unknown position takes all", recs: recs(3, 5), pos: -1, logStart: 0, first: 3, n: 3},
		// The batch [8..12] reaches past the position 10: 8 and 9 are
		// trimmed, 10..12 are kept (dropping the whole batch lost them).
		{name: "batch reaching past the position is trimmed", recs: recs(8, 12), pos: 10, logStart: 0, first: 10, n: 3, trimmed: 2},
		{name: "batch wholly before the position", recs: recs(8, 9), pos: 10, logStart: 0, trimmed: 2, wantNoRecordsLeft: true},
		// Markers, aborted records, compaction: a normal gap, counted.
		{name: "normal gap", recs: recs(13, 15), pos: 10, logStart: 0, first: 13, n: 3, skipped: 3},
		// Retention moved the log start to 50 past the position 10.
		{name: "below the log start", recs: recs(50, 60), pos: 10, logStart: 50, first: 50, n: 11, gapFrom: 10, gapTo: 50, gapLost: 40},
		{name: "below the log start, then a normal gap", recs: recs(55, 60), pos: 10, logStart: 50, first: 55, n: 6, skipped: 5, gapFrom: 10, gapTo: 50, gapLost: 40},
		{name: "log start not told", recs: recs(55, 60), pos: 10, logStart: -1, first: 55, n: 6, skipped: 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := admit(tc.recs, tc.pos, tc.logStart)
			if a.trimmed != tc.trimmed || a.skipped != tc.skipped {
				t.Errorf("trimmed %d skipped %d, want %d and %d", a.trimmed, a.skipped, tc.trimmed, tc.skipped)
			}
			if tc.wantNoRecordsLeft {
				if len(a.records) != 0 {
					t.Errorf("%d records kept, want none", len(a.records))
				}
			} else if len(a.records) != int(tc.n) || a.records[0].Offset != tc.first {
				t.Errorf("kept %d records from %d, want %d from %d", len(a.records), a.records[0].Offset, tc.n, tc.first)
			}
			switch {
			case tc.gapTo == 0 && a.gap != nil:
				t.Errorf("gap %+v, want none", *a.gap)
			case tc.gapTo != 0 && a.gap == nil:
				t.Errorf("no gap, want [%d, %d)", tc.gapFrom, tc.gapTo)
			case tc.gapTo != 0 && (a.gap.From != tc.gapFrom || a.gap.To != tc.gapTo || a.gap.Lost != tc.gapLost || a.gap.Reason != tick.GapLogStart):
				t.Errorf("gap %+v, want [%d, %d) lost %d log_start", *a.gap, tc.gapFrom, tc.gapTo, tc.gapLost)
			}
		})
	}
}

// deleteRecords moves the log start of partition p to offset.
func (c *cluster) deleteRecords(p int32, offset int64) {
	c.t.Helper()
	var os kadm.Offsets
	os.AddOffset(topic, p, offset, -1)
	resp, err := c.adm.DeleteRecords(context.Background(), os)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		c.t.Fatalf("DeleteRecords: %v", err)
	}
}

// gapsOf returns the gaps recorded for tp.
func (db *fakeDB) gapsOf(tp tick.TopicPartition) []tick.Gap {
	db.mu.Lock()
	defer db.mu.Unlock()
	return append([]tick.Gap(nil), db.gaps[tp]...)
}

func (db *fakeDB) stored(tp tick.TopicPartition) int64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.offsets[tp]
}

// Retention (here DeleteRecords) moved the log start from 0 to 50 past the
// stored offset 10 while the member was down. Whatever the start offset
// setting (latest used to jump to the end and skip 50..99 silently), the
// member resumes at the log start, writes 50..99, and records [10, 50) as
// lost in the same write that moves the stored offset past it.
func TestStoredOffsetBelowLogStartRecordsTheGap(t *testing.T) {
	for _, start := range []string{"earliest", "latest"} {
		t.Run(start, func(t *testing.T) {
			c := newCluster(t, 1)
			c.produce(1, 100, goodTick)
			c.deleteRecords(0, 50)
			db := newFakeDB()
			db.offsets[tp(0)] = 10
			cfg := testConfig("g-gap-" + start)
			cfg.StartOffset = start
			m := startMember(t, c, cfg, db, tick.DefaultLimits())
			eventually(t, 10*time.Second, "the stored offset at the end", func() bool { return db.stored(tp(0)) == 100 })
			if err := db.exactlyOnce(map[tick.TopicPartition]int{tp(0): 50}, map[tick.TopicPartition]int64{tp(0): 50}); err != nil {
				t.Fatal(err)
			}
			gaps := db.gapsOf(tp(0))
			if len(gaps) != 1 || gaps[0].From != 10 || gaps[0].To != 50 || gaps[0].Lost != 40 || gaps[0].Reason != tick.GapLogStart {
				t.Fatalf("gaps recorded %+v, want one log_start [10, 50) of 40 records", gaps)
			}
			if first := m.q.partitionChunks(tp(0))[0]; first.From != 10 || first.Records[0].Offset != 50 || len(first.Gaps) != 1 {
				t.Fatalf("first chunk From %d at offset %d with %d gaps, want From 10 at 50 with the gap", first.From, first.Records[0].Offset, len(first.Gaps))
			}
		})
	}
}

// The same while the member runs: its partition is paused at HARD when
// retention passes its position; on resume the fetch is out of range, and
// the member moves to the log start and records the gap.
func TestLogStartPassesARunningMember(t *testing.T) {
	c := newCluster(t, 1)
	c.produce(1, 20, goodTick)
	db := newFakeDB()
	m := startMember(t, c, testConfig("g-gap-live"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "the first 20 records", func() bool { return db.stored(tp(0)) == 20 })
	m.q.setLevel(backpressure.Hard)
	eventually(t, 5*time.Second, "the partition paused", func() bool { return m.metric(t, "mds_consumer_paused_partitions") == 1 })
	c.produce(1, 80, func(p int32, i int) string { return goodTick(p, 20+i) })
	c.deleteRecords(0, 60)
	m.q.setLevel(backpressure.OK)
	eventually(t, 10*time.Second, "the stored offset at the end", func() bool { return db.stored(tp(0)) == 100 })
	gaps := db.gapsOf(tp(0))
	if len(gaps) != 1 || gaps[0].From != 20 || gaps[0].To != 60 || gaps[0].Lost != 40 || gaps[0].Reason != tick.GapLogStart {
		t.Fatalf("gaps recorded %+v, want one log_start [20, 60) of 40 records", gaps)
	}
	if err := db.exactlyOnce(map[tick.TopicPartition]int{tp(0): 60}, nil); err == nil {
		t.Fatal("want 20 then 40 records, not 60 contiguous")
	}
	if n := db.total(); n != 20+40 {
		t.Fatalf("%d records written, want 60 (0..19 and 60..99)", n)
	}
}

// With MDS_KAFKA_ON_LOST_DATA=fail the member stops instead, naming the
// partition and the lost range, and writes nothing past the gap.
func TestOnLostDataFailStops(t *testing.T) {
	c := newCluster(t, 1)
	c.produce(1, 100, goodTick)
	c.deleteRecords(0, 50)
	db := newFakeDB()
	db.offsets[tp(0)] = 10
	cfg := testConfig("g-gap-fail")
	cfg.OnLostData = "fail"
	m := startMember(t, c, cfg, db, tick.DefaultLimits())
	var err error
	select {
	case err = <-m.errc:
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop on lost data")
	}
	m.errc <- nil // for the cleanup's stop
	var lost *lostDataError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), "below the log start 50") || !strings.Contains(err.Error(), "10..49") {
		t.Fatalf("Run = %v, want a lost data error naming 10..49", err)
	}
	if db.total() != 0 || db.stored(tp(0)) != 10 {
		t.Fatalf("wrote %d records, stored offset %d: want nothing past the gap", db.total(), db.stored(tp(0)))
	}
}

// A stored offset past the log end (the log lost records under it, and no
// leader epoch was stored to locate where): the member re-reads from the
// log start rather than skip anything, and records the truncation.
func TestStoredOffsetPastLogEndIsATruncation(t *testing.T) {
	c := newCluster(t, 1)
	c.produce(1, 100, goodTick)
	db := newFakeDB()
	db.offsets[tp(0)] = 500
	startMember(t, c, testConfig("g-trunc"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "the stored offset at the end", func() bool { return db.stored(tp(0)) == 100 })
	if err := db.exactlyOnce(map[tick.TopicPartition]int{tp(0): 100}, nil); err != nil {
		t.Fatal(err)
	}
	gaps := db.gapsOf(tp(0))
	if len(gaps) != 1 || gaps[0].Reason != tick.GapTruncated || gaps[0].From != 0 || gaps[0].To != 500 || gaps[0].Lost != 400 {
		t.Fatalf("gaps recorded %+v, want one truncated [0, 500) with 400 records past the log end", gaps)
	}
}

// With the leader epoch stored, franz-go asks the broker where the log
// diverged (KIP-320) and resumes exactly there; the member records the
// truncation it reports.
func TestStoredEpochLocatesATruncation(t *testing.T) {
	c := newCluster(t, 1)
	c.produce(1, 100, goodTick)
	db := newFakeDB()
	db.offsets[tp(0)], db.epochs[tp(0)] = 500, 0
	m := startMember(t, c, testConfig("g-trunc-epoch"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "ready", m.c.Ready)
	// The log diverged at its end (100): the records below are the ones
	// already written and are not read again. The gap goes with the next
	// write, so produce one.
	c.produce(1, 10, func(p int32, i int) string { return goodTick(p, 100+i) })
	eventually(t, 10*time.Second, "the new records", func() bool { return db.stored(tp(0)) == 110 })
	gaps := db.gapsOf(tp(0))
	if len(gaps) != 1 || gaps[0].Reason != tick.GapTruncated || gaps[0].From != 100 || gaps[0].To != 500 || gaps[0].Lost != 400 {
		t.Fatalf("gaps recorded %+v, want one truncated [100, 500)", gaps)
	}
	if err := db.exactlyOnce(map[tick.TopicPartition]int{tp(0): 10}, map[tick.TopicPartition]int64{tp(0): 100}); err != nil {
		t.Fatal(err)
	}
}

// A topic deleted and created again under the same name is a new log: its
// stored offset (read from the old topic id) is void. The member reads the
// new topic from its start and records why, instead of seeking into the new
// log at the old position (or dropping everything before it, as it did).
func TestRecreatedTopicVoidsTheStoredOffset(t *testing.T) {
	c := newCluster(t, 2)
	c.produce(2, 50, goodTick)
	db := newFakeDB()
	old := [16]byte{1, 2, 3}
	for p := range int32(2) {
		db.offsets[tp(p)] = 700
		db.topicIDs[tp(p)] = old
	}
	m := startMember(t, c, testConfig("g-recreated"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "both partitions at the end", func() bool { return db.stored(tp(0)) == 50 && db.stored(tp(1)) == 50 })
	if err := db.exactlyOnce(map[tick.TopicPartition]int{tp(0): 50, tp(1): 50}, nil); err != nil {
		t.Fatal(err)
	}
	details, err := c.adm.ListTopics(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	id := [16]byte(details[topic].ID)
	for p := range int32(2) {
		gaps := db.gapsOf(tp(p))
		if len(gaps) != 1 || gaps[0].Reason != tick.GapTopicRecreated || gaps[0].From != 0 || gaps[0].To != 700 || gaps[0].Lost != 0 {
			t.Fatalf("%s: gaps %+v, want one topic_recreated [0, 700)", tp(p), gaps)
		}
		if first := m.q.partitionChunks(tp(p))[0]; first.From != 700 || first.TopicID != id {
			t.Fatalf("%s: first chunk From %d topic id %x, want From 700 (the stored row) and the new id %x", tp(p), first.From, first.TopicID, id)
		}
		db.mu.Lock()
		stored := db.topicIDs[tp(p)]
		db.mu.Unlock()
		if stored != id {
			t.Fatalf("%s: stored topic id %x, want the new %x", tp(p), stored, id)
		}
	}
}

// Transaction markers and aborted records leave offsets a read_committed
// consumer never receives. Those are normal gaps: counted, never recorded
// as lost.
func TestTransactionMarkersAreNotGaps(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	txn, err := kgo.NewClient(kgo.SeedBrokers(c.seeds...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID("mds-test-txn"))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	i := 0
	for round, commit := range []bool{true, false, true, false, true} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			r := &kgo.Record{Partition: 0, Key: []byte("S0"), Value: []byte(goodTick(0, i))}
			if !commit {
				r.Value = []byte(goodTick(0, 1000+i))
			}
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if commit {
				i++
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("ending transaction %d: %v", round, err)
		}
	}
	end, err := c.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	last, _ := end.Lookup(topic, 0)
	db := newFakeDB()
	m := startMember(t, c, testConfig("g-txn"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "the 30 committed records", func() bool { return db.total() == 30 })
	for _, ch := range m.q.partitionChunks(tp(0)) {
		for _, r := range ch.Records {
			if r.Tick.Seq >= 1000 {
				t.Fatalf("aborted record %d handed on", r.Offset)
			}
		}
	}
	if gaps := db.gapsOf(tp(0)); len(gaps) != 0 {
		t.Fatalf("normal gaps recorded as lost: %+v", gaps)
	}
	if skipped := m.metric(t, "mds_consumer_skipped_offsets_total", "reason=not_delivered"); skipped == 0 {
		t.Errorf("mds_consumer_skipped_offsets_total{reason=not_delivered} = 0; markers and aborted records leave offsets that were not delivered (log end %d, 30 records)", last.Offset)
	}
}
