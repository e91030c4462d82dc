package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/pgtest"
	"github.com/market-data-store/mds/internal/tick"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// produceTicks writes n ticks with seq 1..n over symbols, keyed by symbol,
// and returns them by seq.
func produceTicks(t *testing.T, brokers []string, topic string, n int) map[int64]tick.Tick {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	base := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	want := make(map[int64]tick.Tick, n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const batch = 5000
	recs := make([]*kgo.Record, 0, batch)
	for i := 1; i <= n; i++ {
		tk := tick.Tick{
			TS: base.Add(time.Duration(i) * time.Microsecond), Symbol: fmt.Sprintf("SYM%02d", i%50),
			Venue: "XNAS", Price: 100 + float64(i%1000)/100, Size: float64(i % 300), Seq: int64(i),
			Has: tick.HasVenue | tick.HasSize | tick.HasSeq,
		}
		want[tk.Seq] = tk
		recs = append(recs, &kgo.Record{Key: []byte(tk.Symbol), Value: tick.AppendJSON(nil, &tk)})
		if len(recs) == batch || i == n {
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	return want
}

// testEnv is the environment of a processor in tests: fast group timings,
// no HTTP listener.
func testEnv(brokers []string, dbURL string) map[string]string {
	return map[string]string{
		"MDS_KAFKA_BROKERS":            brokers[0],
		"MDS_DATABASE_URL":             dbURL,
		"MDS_HTTP_ADDR":                "",
		"MDS_KAFKA_HEARTBEAT_INTERVAL": "100ms",
		"MDS_KAFKA_SESSION_TIMEOUT":    "3s",
		"MDS_COORDINATOR_ID":           "e2e",
	}
}

// TestEndToEnd100k produces 100,000 ticks to an 8-partition topic and finds
// exactly those rows in PostgreSQL, written by the assembled application.
func TestEndToEnd100k(t *testing.T) {
	const n = 100_000
	kf, err := kfake.NewCluster(kfake.SeedTopics(8, "market.ticks"), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	brokers := kf.ListenAddrs()
	want := produceTicks(t, brokers, "market.ticks", n)
	dbURL := pgtest.NewDatabase(t)

	s, err := app.LoadSettings(testEnv(brokers, dbURL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	start := time.Now()
	go func() {
		runErr <- app.Run(ctx, s, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), app.NewRegistry())
	}()

	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var rows int64
	deadline := time.Now().Add(2 * time.Minute)
	for rows < n && time.Now().Before(deadline) {
		select {
		case err := <-runErr:
			t.Fatalf("processor stopped early: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		// The schema appears when the app has migrated.
		if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM ticks").Scan(&rows); err != nil {
			rows = 0
		}
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("processor did not stop cleanly: %v", err)
	}
	t.Logf("end to end: %d ticks in %s (%.0f ticks/s, start-up and migration included)", rows, elapsed.Round(time.Millisecond), float64(rows)/elapsed.Seconds())

	var count, distinct, minSeq, maxSeq, stored int64
	if err := conn.QueryRow(context.Background(),
		"SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM ticks").Scan(&count, &distinct, &minSeq, &maxSeq); err != nil {
		t.Fatal(err)
	}
	if count != n || distinct != n || minSeq != 1 || maxSeq != n {
		t.Fatalf("ticks: %d rows, %d distinct seq, seq %d..%d; want exactly %d, 1..%d", count, distinct, minSeq, maxSeq, n, n)
	}
	if err := conn.QueryRow(context.Background(), "SELECT sum(next_offset) FROM mds_offsets").Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != n {
		t.Fatalf("stored offsets add up to %d, want %d", stored, n)
	}
	for _, seq := range []int64{1, 777, 50_000, n} {
		w := want[seq]
		var ts time.Time
		var symbol, venue string
		var price, size float64
		var bid *float64
		if err := conn.QueryRow(context.Background(),
			"SELECT ts, symbol, venue, price, size, bid FROM ticks WHERE seq = $1", seq).Scan(&ts, &symbol, &venue, &price, &size, &bid); err != nil {
			t.Fatal(err)
		}
		if !ts.Equal(w.TS) || symbol != w.Symbol || venue != w.Venue || price != w.Price || size != w.Size || bid != nil {
			t.Fatalf("seq %d: got %v %s %s %v %v %v, want %v %s %s %v %v <nil>", seq, ts, symbol, venue, price, size, bid, w.TS, w.Symbol, w.Venue, w.Price, w.Size)
		}
	}
}
