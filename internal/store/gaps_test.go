package store

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/tick"
)

// A chunk that moves past a gap records it in the same transaction, and the
// offset row keeps the leader epoch and topic id it was read with.
func TestWriteRecordsGapsEpochAndTopicID(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)
	id := [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 1}

	first := chunk("ticks", 0, -1, 10, "AAPL")
	first.LeaderEpoch, first.TopicID = 3, id
	if err := s.Write(ctx, batch(first)); err != nil {
		t.Fatal(err)
	}
	// Retention passed offsets 10..49; the next chunk starts at 50.
	next := chunk("ticks", 0, 50, 60, "AAPL")
	next.From, next.LeaderEpoch, next.TopicID = 10, 4, id
	next.Gaps = []tick.Gap{{From: 10, To: 50, Lost: 40, Reason: tick.GapLogStart, Detail: "log start 50 passed 10"}}
	if err := s.Write(ctx, batch(next)); err != nil {
		t.Fatal(err)
	}

	got, err := s.LoadOffsets(ctx, testGroup, []tick.TopicPartition{{Topic: "ticks", Partition: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if so := got[tick.TopicPartition{Topic: "ticks", Partition: 0}]; so.Next != 60 || so.LeaderEpoch != 4 || so.TopicID != id {
		t.Fatalf("stored %+v, want next 60, epoch 4, topic id %x", so, id)
	}
	gaps, err := s.ListGaps(ctx, GapFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps) != 1 {
		t.Fatalf("gaps %+v, want one", gaps)
	}
	g := gaps[0]
	if g.ConsumerGroup != testGroup || g.Topic != "ticks" || g.Partition != 0 || g.FromOffset != 10 || g.ToOffset != 50 ||
		g.LostRecords != 40 || g.Reason != tick.GapLogStart || g.Detail != "log start 50 passed 10" {
		t.Fatalf("gap row %+v", g)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM ticks`); n != 20 {
		t.Fatalf("%d rows, want 20", n)
	}
	if v := testutil.ToFloat64(s.m.lostRecords.WithLabelValues("ticks", tick.GapLogStart)); v != 40 {
		t.Errorf("mds_consumer_lost_records_total = %v, want 40", v)
	}
	if v := testutil.ToFloat64(s.m.gaps.WithLabelValues("ticks", tick.GapLogStart)); v != 1 {
		t.Errorf("mds_consumer_offset_gaps_total = %v, want 1", v)
	}

	// A fenced write records nothing: its gap belongs to the writer that
	// commits.
	stale := chunk("ticks", 0, 70, 80, "AAPL")
	stale.From = 10
	stale.Gaps = []tick.Gap{{From: 60, To: 70, Lost: 10, Reason: tick.GapLogStart}}
	var fenced *tick.FencedError
	if err := s.Write(ctx, batch(stale)); !errors.As(err, &fenced) {
		t.Fatalf("Write of a stale chunk = %v, want fenced", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM mds_offset_gaps`); n != 1 {
		t.Fatalf("%d gap rows after a fenced write, want still 1", n)
	}
}

// Two consumer groups reading one topic each keep their dead letters; within
// a group a second dead letter for the same record (a recreated topic reuses
// offsets) is skipped and counted, never silently.
func TestDeadLettersArePerGroup(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx := testCtx(t)
	dead := func(from, next int64) *tick.Chunk {
		c := chunk("ticks", 0, from, next, "AAPL")
		c.Records = nil
		c.Dead = []tick.DeadLetter{{TopicPartition: c.TopicPartition, Offset: 3, Value: []byte("x"), Reason: tick.ReasonDecode, Err: "bad"}}
		return c
	}
	var stores []*Store
	for _, group := range []string{"g-a", "g-b"} {
		cfg := testConfig(url)
		cfg.Group = group
		s, _ := openStore(t, cfg)
		if err := s.Write(ctx, batch(dead(-1, 4))); err != nil {
			t.Fatalf("group %s: %v", group, err)
		}
		stores = append(stores, s)
	}
	for _, group := range []string{"g-a", "g-b"} {
		rows, err := stores[0].ListDeadLetters(ctx, DeadLetterFilter{Group: group})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].ConsumerGroup != group || rows[0].Offset != 3 {
			t.Fatalf("group %s: dead letters %+v, want its own one", group, rows)
		}
	}
	s := stores[0]
	if err := s.Write(ctx, batch(dead(4, 5))); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(s.m.deadLetterConflicts); v != 1 {
		t.Fatalf("mds_dead_letters_conflicts_total = %v, want 1", v)
	}
}
