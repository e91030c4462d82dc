package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/market-data-store/mds/internal/tick"
)

func TestAddSpan(t *testing.T) {
	m := func(i int) time.Time { return time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC) }
	sp := func(a, b int) span { return span{m(a), m(b)} }
	cases := []struct {
		name  string
		have  []span
		add   span
		limit int
		want  []span
	}{
		{"first", nil, sp(1, 2), 4, []span{sp(1, 2)}},
		{"before", []span{sp(5, 6)}, sp(1, 2), 4, []span{sp(1, 2), sp(5, 6)}},
		{"after", []span{sp(1, 2)}, sp(5, 6), 4, []span{sp(1, 2), sp(5, 6)}},
		{"adjacent merge", []span{sp(1, 2), sp(3, 4)}, sp(2, 3), 4, []span{sp(1, 4)}},
		{"inside", []span{sp(1, 10)}, sp(3, 4), 4, []span{sp(1, 10)}},
		{"covers several", []span{sp(1, 2), sp(4, 5), sp(7, 8), sp(20, 21)}, sp(0, 9), 4, []span{sp(0, 9), sp(20, 21)}},
		{"overlaps the end of one", []span{sp(1, 5), sp(10, 12)}, sp(4, 7), 4, []span{sp(1, 7), sp(10, 12)}},
		{"bounded: closest pair merges", []span{sp(0, 1), sp(10, 11), sp(13, 14)}, sp(30, 31), 3, []span{sp(0, 1), sp(10, 14), sp(30, 31)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := addSpan(append([]span(nil), c.have...), c.add, c.limit)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("addSpan(%v, %v) =\n%v\nwant\n%v", c.have, c.add, got, c.want)
			}
		})
	}
}

// at makes a chunk of partition 0 covering [from, from+len(times)) with
// one tick of symbol per time, of size 1.
func at(from int64, symbol string, times ...time.Time) *tick.Chunk {
	c := chunk("ticks", 0, from, max(from, 0)+int64(len(times)), symbol)
	for i := range c.Records {
		c.Records[i].Tick.TS = times[i]
		c.Records[i].Tick.Size, c.Records[i].Tick.Has = 1, tick.HasSize
	}
	return c
}

// TestBarsCoverHistoryAndLateTicks reproduces what the issue saw on
// TimescaleDB: ticks adopted from before the refresh policy's window, and a
// tick two hours late, are in bars_1m once the refresher ran, where the
// policy alone leaves them out for good.
func TestBarsCoverHistoryAndLateTicks(t *testing.T) {
	url := timescaleDatabase(t)
	cfg := testConfig(url)
	cfg.Timescale.RefreshInterval = 100 * time.Millisecond
	s, _ := openStore(t, cfg)
	ctx := testCtx(t)
	db := connect(t, url)

	now := time.Now().UTC()
	const history = 300
	start := now.Add(-72 * time.Hour).Truncate(time.Minute)
	times := make([]time.Time, history)
	for i := range times {
		times[i] = start.Add(time.Duration(i)*time.Minute + time.Second)
	}
	if err := s.Write(ctx, batch(at(-1, "H", times...))); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, batch(at(history, "H", now.Add(-10*time.Minute)))); err != nil {
		t.Fatal(err)
	}
	// What the refresh policy does every minute: the last hour. The
	// history is then below the watermark and not materialized.
	refreshLastHour(t, db, now)
	old := func() string {
		var n, trades int64
		if err := db.QueryRow(ctx, `SELECT count(*), coalesce(sum(trades), 0) FROM bars_1m WHERE symbol = 'H' AND bucket < $1`,
			now.Add(-24*time.Hour)).Scan(&n, &trades); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d bars, %d trades", n, trades)
	}
	if got := old(); got != "0 bars, 0 trades" {
		t.Fatalf("before the refresher, the history is in bars_1m (%s): the test shows nothing", got)
	}

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Bars().Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, fmt.Sprintf("%d bars, %d trades", history, history), old)

	// Late ticks: one in a history bucket that is already materialized, one
	// two hours old in a bucket of its own.
	late := now.Add(-2 * time.Hour)
	if err := s.Write(ctx, batch(at(history+1, "H", times[100].Add(time.Second), late))); err != nil {
		t.Fatal(err)
	}
	trades := func(ts time.Time) func() string {
		return func() string {
			return fmt.Sprint(queryInt(t, db, `SELECT coalesce(sum(trades), 0) FROM bars_1m WHERE symbol = 'H' AND bucket = $1`, ts.Truncate(time.Minute)))
		}
	}
	waitFor(t, "2", trades(times[100]))
	waitFor(t, "1", trades(late))
	if n := testutil.ToFloat64(s.m.barsRefreshes); n < 2 {
		t.Fatalf("mds_store_bars_refreshes_total{result=ok} = %v", n)
	}
}

// refreshLastHour does what the refresh policy does, retrying while
// TimescaleDB's own policy job refreshes (55P03).
func refreshLastHour(t testing.TB, db *pgx.Conn, now time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := db.Exec(testCtx(t), `CALL refresh_continuous_aggregate('bars_1m', $1::timestamptz, $2::timestamptz)`, now.Add(-time.Hour), limit(now))
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "55P03" || time.Now().After(deadline) {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls get until it returns want, failing after a deadline.
func waitFor(t *testing.T, want string, get func() string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = get(); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("after 30 s: %s, want %s", got, want)
}

// TestChunksCreatedCounted writes ticks on five distinct days of the past
// (backfill) and checks that the chunk counter sees five new chunks.
func TestChunksCreatedCounted(t *testing.T) {
	url := timescaleDatabase(t)
	s, _ := openStore(t, testConfig(url))
	ctx := testCtx(t)
	since, err := s.bars.countChunks(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2020, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.Write(ctx, batch(at(-1, "C", day, day.Add(24*time.Hour), day.Add(48*time.Hour), day.Add(72*time.Hour), day.Add(96*time.Hour)))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.bars.countChunks(ctx, since); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(s.m.chunksCreated); n != 5 {
		t.Fatalf("mds_store_chunks_created_total = %v after ticks on 5 new days, want 5", n)
	}
}

// BenchmarkBarsRefresh measures what the refresher costs on a large table:
// ticks of 20,000 minutes (10 symbols, 3 ticks a minute each: 600,000
// rows) adopted with only the last hour materialized, as the refresh
// policy leaves it. It reports the full refresh at the first start (cold),
// the same at a later start with nothing new (warm), and one round that
// refreshes a late tick two hours old (late). Run it with
//
//	go test -run '^$' -bench BarsRefresh -benchtime 1x ./internal/store
func BenchmarkBarsRefresh(b *testing.B) {
	url := timescaleDatabase(b)
	s, _ := openStore(b, testConfig(url))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	db := connect(b, url)
	const minutes = 20000
	now := time.Now().UTC().Truncate(time.Minute)
	if _, err := db.Exec(ctx, `INSERT INTO ticks (ts, symbol, price, size)
		SELECT $1::timestamptz - m * INTERVAL '1 minute' + k * INTERVAL '15 seconds', 'S' || sym, 100 + sym + k, 1
		FROM generate_series(1, $2::int) m, generate_series(1, 10) sym, generate_series(0, 2) k`, now, minutes); err != nil {
		b.Fatal(err)
	}
	refreshLastHour(b, db, now)
	bars := func() int64 { return queryInt(b, db, `SELECT count(*) FROM bars_1m`) }
	b.Logf("before the refresher: %d bars for %d minutes x 10 symbols", bars(), minutes)
	var cold, warm, late time.Duration
	for b.Loop() {
		start := time.Now()
		if err := s.bars.refreshAll(ctx); err != nil {
			b.Fatal(err)
		}
		cold = time.Since(start)
		start = time.Now()
		if err := s.bars.refreshAll(ctx); err != nil {
			b.Fatal(err)
		}
		warm = time.Since(start)
		if err := s.Write(ctx, batch(at(-1, "S1", now.Add(-2*time.Hour+time.Second)))); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if err := s.bars.refreshTouched(ctx); err != nil {
			b.Fatal(err)
		}
		late = time.Since(start)
	}
	if n := bars(); n < minutes*10 {
		b.Fatalf("after the refresh: %d bars, want %d", n, minutes*10)
	}
	if n := queryInt(b, db, `SELECT trades FROM bars_1m WHERE symbol = 'S1' AND bucket = $1`, now.Add(-2*time.Hour)); n != 4 {
		b.Fatalf("the bucket of the late tick counts %d trades, want 3 + 1", n)
	}
	b.Logf("after: %d bars; full refresh cold %v, warm %v; late tick round %v", bars(), cold, warm, late)
	b.ReportMetric(cold.Seconds(), "cold-s")
	b.ReportMetric(warm.Seconds(), "warm-s")
	b.ReportMetric(late.Seconds()*1e3, "late-ms")
}

// BenchmarkTouched measures what Write adds per batch for the refresher:
// the batch's time range and recording it.
func BenchmarkTouched(b *testing.B) {
	bt := batch(chunk("ticks", 0, 0, 5000, "BENCH"))
	r := &BarsRefresher{}
	for b.Loop() {
		r.touched(tickTimes(bt))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*5000), "ns/row")
}

func TestTickTimes(t *testing.T) {
	if lo, hi := tickTimes(batch(chunk("ticks", 0, 0, 0, "A"))); !lo.IsZero() || !hi.IsZero() {
		t.Fatalf("a batch without rows: %v, %v", lo, hi)
	}
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC)
	b := batch(at(0, "A", t0, t0.Add(-time.Hour), t0.Add(time.Minute)), at(3, "B", t0.Add(-2*time.Hour)))
	lo, hi := tickTimes(b)
	if !lo.Equal(t0.Add(-2*time.Hour).Truncate(time.Microsecond)) || !hi.Equal(t0.Add(time.Minute).Truncate(time.Microsecond)) {
		t.Fatalf("tickTimes = %v, %v", lo, hi)
	}
}

// TestBarsRefreshTakesTurns: while another instance holds the refresh lock,
// a round refreshes nothing, fails nothing and keeps its ranges for later.
func TestBarsRefreshTakesTurns(t *testing.T) {
	url := timescaleDatabase(t)
	s, _ := openStore(t, testConfig(url))
	ctx := testCtx(t)
	other := connect(t, url)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1)`, barsLockID); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-3 * time.Hour)
	if err := s.Write(ctx, batch(at(-1, "T", old))); err != nil {
		t.Fatal(err)
	}
	if err := s.bars.refreshTouched(ctx); !errors.Is(err, errBusy) {
		t.Fatalf("refreshTouched while another instance refreshes = %v, want errBusy", err)
	}
	if n := len(s.bars.pending); n != 1 {
		t.Fatalf("%d ranges pending after a busy round, want the 1 written", n)
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1)`, barsLockID); err != nil {
		t.Fatal(err)
	}
	// TimescaleDB's own policy job may be refreshing too (busy): retry.
	waitFor(t, "<nil>", func() string { return fmt.Sprint(s.bars.refreshTouched(ctx)) })
	if n := len(s.bars.pending); n != 0 || testutil.ToFloat64(s.m.barsRefreshes) != 1 {
		t.Fatalf("after the lock is free: %d ranges pending, %v refreshes", n, testutil.ToFloat64(s.m.barsRefreshes))
	}
}
