package store

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/tick"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const testGroup = "g1"

// testCtx is bounded so that a lock wait that never ends fails the test.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testConfig(url string) Config {
	cfg := DefaultConfig()
	cfg.DatabaseURL = url
	cfg.Group = testGroup
	return cfg
}

// openStore opens a Store on url with its own registry.
func openStore(t testing.TB, cfg Config) (*Store, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s, err := Open(testCtx(t), cfg, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s, reg
}

// newStore opens a migrated Store on a fresh database.
func newStore(t testing.TB) (*Store, string, *prometheus.Registry) {
	t.Helper()
	url := pgtest.NewDatabase(t)
	s, reg := openStore(t, testConfig(url))
	return s, url, reg
}

// connect opens a plain connection for the test's own queries.
func connect(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(testCtx(t), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func queryInt(t testing.TB, c *pgx.Conn, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := c.QueryRow(testCtx(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

var baseTime = time.Date(2026, 1, 2, 15, 4, 5, 123456000, time.UTC)

// record makes a record at offset off with only the required fields.
func record(off int64, symbol string, price float64) tick.Record {
	value := fmt.Sprintf(`{"ts":%q,"symbol":%q,"price":%v}`, baseTime.Format(time.RFC3339Nano), symbol, price)
	return tick.Record{
		Offset: off,
		Key:    []byte(symbol),
		Value:  []byte(value),
		Tick:   tick.Tick{TS: baseTime.Add(time.Duration(off) * time.Millisecond), Symbol: symbol, Price: price},
	}
}

// chunk makes a chunk of tp covering [from, next) with n good records
// starting at offset max(from, 0).
func chunk(topic string, part int32, from, next int64, symbol string) *tick.Chunk {
	c := &tick.Chunk{TopicPartition: tick.TopicPartition{Topic: topic, Partition: part}, From: from, Next: next}
	for off := max(from, 0); off < next; off++ {
		c.Records = append(c.Records, record(off, symbol, 100+float64(off)))
	}
	return c
}

func batch(chunks ...*tick.Chunk) *tick.Batch { return &tick.Batch{Chunks: chunks} }

// preloads reports whether the server at url preloads TimescaleDB.
func preloads(t testing.TB, url string) bool {
	t.Helper()
	st, err := detectTimescale(testCtx(t), connect(t, url))
	if err != nil {
		t.Fatalf("detecting timescaledb: %v", err)
	}
	return st.Available && st.Preloaded
}

// timescaleDatabase returns a fresh database on a server with a preloaded
// TimescaleDB: the one MDS_TEST_TIMESCALE_URL names, else the tests' own
// server when it has TimescaleDB (pgtemp preloads it where installed). The
// test is skipped, saying so, when there is none.
func timescaleDatabase(t testing.TB) string {
	t.Helper()
	server := os.Getenv("MDS_TEST_TIMESCALE_URL")
	switch {
	case server != "" && !preloads(t, server):
		t.Fatal("MDS_TEST_TIMESCALE_URL names a server that does not preload timescaledb (shared_preload_libraries)")
	case server == "":
		server = pgtest.ServerURL(t)
		if !preloads(t, server) {
			t.Skip("no TimescaleDB here: the test server does not preload timescaledb; install it (pgtemp then preloads it) " +
				"or set MDS_TEST_TIMESCALE_URL to a server that preloads it")
		}
	}
	ctx := testCtx(t)
	name := fmt.Sprintf("mds_ts_test_%d_%d", os.Getpid(), counter.Add(1))
	url, err := pgtemp.CreateDatabase(ctx, server, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgtemp.DropDatabase(context.Background(), server, name) })
	return url
}

var counter atomic.Int64
