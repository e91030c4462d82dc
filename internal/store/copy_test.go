package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/market-data-store/mds/internal/tick"
)

// roundTripTicks returns n ticks that go through every combination of the
// optional fields (Has cycles through all 128 values) with values at the
// edges of each type. The value lists have pairwise different lengths, so
// the combinations of values vary as well.
func roundTripTicks(n int) []tick.Tick {
	ny := time.FixedZone("NY", -5*3600)
	times := []time.Time{
		time.Date(2026, 1, 2, 15, 4, 5, 123456000, time.UTC),     // microsecond precision
		time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC),     // nanoseconds: floored
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),              // PostgreSQL's zero
		time.Date(2000, 1, 1, 0, 0, 0, 500, time.UTC),            // just after it, below 1 µs
		time.Date(1999, 12, 31, 23, 59, 59, 999999999, time.UTC), // just before it
		time.Date(1999, 12, 31, 23, 59, 59, 999999500, time.UTC),
		time.Date(1990, 6, 15, 12, 30, 0, 1, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC), // before the Unix epoch
		time.Date(2099, 12, 31, 23, 59, 59, 999999001, time.UTC),
		time.Date(2026, 3, 8, 1, 59, 59, 987654321, ny), // not UTC
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	floats := []float64{
		0, math.Copysign(0, -1), 1, -1, 412.37, -412.37,
		math.MaxFloat64, -math.MaxFloat64,
		math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, // subnormal
		0x1p-1022 / 3, // subnormal
		0x1p-1022,     // smallest normal
		1e300, -1e-300, 0.1, math.Pi,
		math.Inf(1), math.Inf(-1), math.NaN(),
	}
	symbols := []string{"AAPL", "日本株", "€URO", "📈🚀", "e\u0301", "x", strings.Repeat("Ω", 300), "BRK.B"}
	venues := []string{"XNAS", "", "Börse", "東証", "V"}
	seqs := []int64{0, 1, -1, math.MaxInt64, math.MinInt64, 1 << 40, 123456789}
	out := make([]tick.Tick, n)
	for i := range out {
		f := func(k int) float64 { return floats[(i+k)%len(floats)] }
		out[i] = tick.Tick{
			TS: times[i%len(times)], Symbol: symbols[i%len(symbols)], Venue: venues[i%len(venues)],
			Price: f(0), Size: f(1), Bid: f(2), Ask: f(3), BidSize: f(4), AskSize: f(5),
			Seq: seqs[i%len(seqs)], Has: tick.Field(i % 128),
		}
	}
	return out
}

// TestCopyStoresWhatPgxStores writes ticks with every combination of
// fields through Write's binary COPY and the same ticks through pgx's own
// CopyFrom into a second table, and compares the two tables bit for bit
// (floats as their float8send bytes, so that -0 differs from 0).
func TestCopyStoresWhatPgxStores(t *testing.T) {
	s, url, _ := newStore(t)
	ctx := testCtx(t)
	db := connect(t, url)

	ticks := roundTripTicks(3000)
	huge := ticks[7]
	huge.Symbol = strings.Repeat("s", 200_000) // larger than pgconn's 64 KiB buffer
	ticks = append(ticks, huge)
	c := &tick.Chunk{TopicPartition: tick.TopicPartition{Topic: "ticks", Partition: 0}, From: -1, Next: int64(len(ticks))}
	for i, tk := range ticks {
		c.Records = append(c.Records, tick.Record{Offset: int64(i), Tick: tk})
	}
	if err := s.Write(ctx, batch(c)); err != nil {
		t.Fatalf("Write: %v", err)
	}

	if _, err := db.Exec(ctx, `CREATE TABLE ticks_pgx (LIKE ticks)`); err != nil {
		t.Fatal(err)
	}
	opt := func(ok tick.Field, has tick.Field, v any) any {
		if has&ok == 0 {
			return nil
		}
		return v
	}
	n, err := db.CopyFrom(ctx, pgx.Identifier{"ticks_pgx"},
		[]string{"ts", "symbol", "venue", "price", "size", "bid", "ask", "bid_size", "ask_size", "seq"},
		pgx.CopyFromSlice(len(ticks), func(i int) ([]any, error) {
			tk := &ticks[i]
			return []any{tk.TS, tk.Symbol, opt(tick.HasVenue, tk.Has, tk.Venue), tk.Price,
				opt(tick.HasSize, tk.Has, tk.Size), opt(tick.HasBid, tk.Has, tk.Bid), opt(tick.HasAsk, tk.Has, tk.Ask),
				opt(tick.HasBidSize, tk.Has, tk.BidSize), opt(tick.HasAskSize, tk.Has, tk.AskSize),
				opt(tick.HasSeq, tk.Has, tk.Seq)}, nil
		}))
	if err != nil || n != int64(len(ticks)) {
		t.Fatalf("pgx CopyFrom: %d rows, %v", n, err)
	}

	const cols = `ts, symbol, venue, float8send(price), float8send(size), float8send(bid), float8send(ask),
		float8send(bid_size), float8send(ask_size), seq`
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT ` + cols + ` FROM ticks EXCEPT ALL SELECT ` + cols + ` FROM ticks_pgx) d`,
		`SELECT count(*) FROM (SELECT ` + cols + ` FROM ticks_pgx EXCEPT ALL SELECT ` + cols + ` FROM ticks) d`,
	} {
		if d := queryInt(t, db, q); d != 0 {
			t.Errorf("%d rows differ: %s", d, q)
		}
	}
	if got := queryInt(t, db, `SELECT count(*) FROM ticks`); got != int64(len(ticks)) {
		t.Fatalf("ticks holds %d rows, want %d", got, len(ticks))
	}
	// The comparison is only as good as its coverage of NULLs and values.
	if got := queryInt(t, db, `SELECT count(DISTINCT (venue IS NULL, size IS NULL, bid IS NULL, ask IS NULL,
		bid_size IS NULL, ask_size IS NULL, seq IS NULL)) FROM ticks`); got != 128 {
		t.Fatalf("%d combinations of NULL fields stored, want 128", got)
	}
	if got := queryInt(t, db, `SELECT count(*) FROM ticks WHERE venue = ''`); got == 0 {
		t.Fatal("no empty venue stored: an empty venue that is present must not be NULL")
	}
}

// readAll reads r to io.EOF with a buffer of size bufSize.
func readAll(t *testing.T, r io.Reader, bufSize int) []byte {
	t.Helper()
	var out []byte
	p := make([]byte, bufSize)
	for range 1_000_000 {
		n, err := r.Read(p)
		out = append(out, p[:n]...)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("Read returned 0 bytes without an error")
		}
	}
	t.Fatal("Read never returned io.EOF")
	return nil
}

func TestCopyReaderWindowsAndBufferSizes(t *testing.T) {
	ticks := roundTripTicks(300)
	ticks[5].Symbol = strings.Repeat("s", 5000)
	mk := func(part int32, ts []tick.Tick) *tick.Chunk {
		c := &tick.Chunk{TopicPartition: tick.TopicPartition{Topic: "t", Partition: part}}
		for i, tk := range ts {
			c.Records = append(c.Records, tick.Record{Offset: int64(i), Tick: tk})
		}
		return c
	}
	chunks := []*tick.Chunk{mk(0, ticks[:100]), mk(9, nil), mk(1, ticks[100:101]), mk(2, ticks[101:])}

	for i := range ticks {
		if got := len(appendRow(nil, &ticks[i])); got != rowSize(&ticks[i]) {
			t.Fatalf("tick %d: appendRow wrote %d bytes, rowSize says %d", i, got, rowSize(&ticks[i]))
		}
	}
	for _, w := range [][2]int{{0, 300}, {0, 0}, {99, 102}, {100, 101}, {5, 6}, {150, 300}} {
		want := append([]byte(nil), copyHeader...)
		for i := w[0]; i < w[1]; i++ {
			want = appendRow(want, &ticks[i])
		}
		want = append(want, copyTrailer...)
		for _, size := range []int{1, 2, 7, 19, 100, 4096, 65531} {
			t.Run(fmt.Sprintf("rows %d-%d buffer %d", w[0], w[1], size), func(t *testing.T) {
				if got := readAll(t, newCopyReader(chunks, w[0], w[1]), size); !bytes.Equal(got, want) {
					t.Fatalf("read %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
				}
			})
		}
	}

	r := newCopyReader(chunks, 0, 300)
	r.close()
	if n, err := r.Read(make([]byte, 100)); n != 0 || !errors.Is(err, errCopyClosed) {
		t.Fatalf("Read after close = %d, %v", n, err)
	}

	p := make([]byte, 65531)
	allocs := testing.AllocsPerRun(10, func() {
		r := newCopyReader(chunks[2:], 0, 200)
		for {
			if _, err := r.Read(p); err != nil {
				break
			}
		}
	})
	if allocs > 1 {
		t.Fatalf("a COPY of 200 rows allocates %v times, want at most 1 (the reader)", allocs)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkCopyReader measures the encoding of Write's COPY per row, read
// through a buffer of pgconn's size.
func BenchmarkCopyReader(b *testing.B) {
	c := chunk("ticks", 0, 0, 5000, "BENCH")
	chunks := []*tick.Chunk{c}
	p := make([]byte, 65531)
	b.ReportAllocs()
	for b.Loop() {
		r := newCopyReader(chunks, 0, len(c.Records))
		for {
			if _, err := r.Read(p); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(c.Records)), "ns/row")
}

// TestCopyIntoAnotherLayoutFailsTheWrite checks that a ticks table whose
// columns no longer have the types of the migrations fails the write with a
// permanent error: the binary COPY then sends fields the server cannot read
// (22P03), which must not pass for bad rows and be dead-lettered. With
// TimescaleDB, bars_1m pins the price column: it is dropped first.
func TestCopyIntoAnotherLayoutFailsTheWrite(t *testing.T) {
	for _, alter := range []string{
		`ALTER TABLE ticks ALTER price TYPE real`,
		`ALTER TABLE ticks ALTER price TYPE numeric`,
		`ALTER TABLE ticks ALTER seq TYPE integer`,
	} {
		t.Run(alter, func(t *testing.T) {
			s, url, _ := newStore(t)
			ctx := testCtx(t)
			db := connect(t, url)
			for _, q := range []string{`DROP MATERIALIZED VIEW IF EXISTS bars_1m`, alter} {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			c := chunk("ticks", 0, -1, 5, "A")
			c.Records[2].Tick.Seq, c.Records[2].Tick.Has = 7, tick.HasSeq
			err := s.Write(ctx, batch(c))
			if err == nil || IsTemporary(err) {
				t.Fatalf("Write = %v, want a permanent error", err)
			}
			if n := queryInt(t, db, `SELECT count(*) FROM mds_dead_letters`) + queryInt(t, db, `SELECT count(*) FROM mds_offsets`); n != 0 {
				t.Fatalf("%d dead letters and offsets stored", n)
			}
		})
	}
}
