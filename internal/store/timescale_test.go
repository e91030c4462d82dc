package store

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/tick"
)

func TestInterval(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour:          "INTERVAL '1 days'",
		7 * 24 * time.Hour:      "INTERVAL '7 days'",
		36 * time.Hour:          "INTERVAL '36 hours'",
		90 * time.Minute:        "INTERVAL '90 minutes'",
		61 * time.Second:        "INTERVAL '61 seconds'",
		1500 * time.Millisecond: "INTERVAL '1500000 microseconds'",
	} {
		if got := interval(d); got != want {
			t.Errorf("interval(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestTimescaleSQL(t *testing.T) {
	def := DefaultConfig().Timescale
	has := func(q []string, sub string) bool {
		return slices.ContainsFunc(q, func(s string) bool { return strings.Contains(s, sub) })
	}

	fresh := timescaleSQL(def, tsState{Available: true, Version: "2.17.0"})
	for _, want := range []string{
		"SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '1 days', create_default_indexes => FALSE, migrate_data => TRUE, if_not_exists => TRUE)",
		"SELECT set_chunk_time_interval('ticks', INTERVAL '1 days')",
		"ALTER TABLE ticks SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')",
		"SELECT remove_compression_policy('ticks', if_exists => TRUE)",
		"SELECT add_compression_policy('ticks', INTERVAL '7 days')",
		"SELECT remove_retention_policy('ticks', if_exists => TRUE)",
		"SELECT remove_continuous_aggregate_policy('bars_1m', if_exists => TRUE)",
		"SELECT add_continuous_aggregate_policy('bars_1m', start_offset => INTERVAL '1 hours', end_offset => INTERVAL '1 minutes', schedule_interval => INTERVAL '1 minutes')",
	} {
		if !slices.Contains(fresh, want) {
			t.Errorf("fresh plan lacks %q:\n%s", want, strings.Join(fresh, "\n"))
		}
	}
	if has(fresh, "add_retention_policy") {
		t.Error("retention is off by default")
	}
	var view string
	for _, q := range fresh {
		if strings.HasPrefix(q, "CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m") {
			view = q
		}
	}
	for _, part := range []string{"timescaledb.continuous", "timescaledb.materialized_only = false",
		"time_bucket(INTERVAL '1 minute', ts) AS bucket", "first(price, ts) AS open", "max(price)       AS high",
		"min(price)       AS low", "last(price, ts)  AS close", "sum(size)        AS volume", "count(*)         AS trades",
		"GROUP BY bucket, symbol", "WITH NO DATA"} {
		if !strings.Contains(view, part) {
			t.Errorf("bars_1m view lacks %q:\n%s", part, view)
		}
	}
	// Policies are removed before they are added, so a changed setting wins.
	if i, j := slices.Index(fresh, "SELECT remove_compression_policy('ticks', if_exists => TRUE)"),
		slices.Index(fresh, "SELECT add_compression_policy('ticks', INTERVAL '7 days')"); i > j {
		t.Error("compression policy added before the old one is removed")
	}

	existing := timescaleSQL(def, tsState{Available: true, Version: "2.17.0", Hypertable: true, Compressed: true})
	if has(existing, "create_hypertable") || has(existing, "ALTER TABLE ticks SET") {
		t.Errorf("an existing compressed hypertable is set up again:\n%s", strings.Join(existing, "\n"))
	}

	changed := def
	changed.ChunkInterval, changed.CompressAfter, changed.Retention = 6*time.Hour, 0, 90*24*time.Hour
	q := timescaleSQL(changed, tsState{Available: true, Version: "2.17.0", Hypertable: true, Compressed: true})
	if !slices.Contains(q, "SELECT set_chunk_time_interval('ticks', INTERVAL '6 hours')") ||
		!slices.Contains(q, "SELECT remove_compression_policy('ticks', if_exists => TRUE)") || has(q, "add_compression_policy") ||
		!slices.Contains(q, "SELECT add_retention_policy('ticks', INTERVAL '90 days')") {
		t.Errorf("changed settings give:\n%s", strings.Join(q, "\n"))
	}
}

func TestTimescaleWarning(t *testing.T) {
	cases := []struct {
		st   tsState
		want string
	}{
		{tsState{}, "not available on this server"},
		{tsState{Available: true}, "available but not created"},
		{tsState{Available: true, CreateErr: fmt.Errorf("x")}, "could not be created (x)"},
		{tsState{Available: true, Version: "2.17.0"}, "not a hypertable yet"},
		{tsState{Available: true, Version: "2.17.0", Hypertable: true}, ""},
	}
	for _, c := range cases {
		got := c.st.warning()
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%+v: warning %q, want it to say %q", c.st, got, c.want)
		}
	}
}

// TestTimescale runs the reconcile path against a real TimescaleDB, in a
// scratch database created on the server MDS_TEST_TIMESCALE_URL names.
func TestTimescale(t *testing.T) {
	server := os.Getenv("MDS_TEST_TIMESCALE_URL")
	if server == "" {
		t.Skip("no TimescaleDB here: set MDS_TEST_TIMESCALE_URL to a database on a server with the timescaledb extension (e.g. the timescale/timescaledb image)")
	}
	ctx := testCtx(t)
	name := fmt.Sprintf("mds_ts_test_%d", time.Now().UnixNano())
	url, err := pgtemp.CreateDatabase(ctx, server, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgtemp.DropDatabase(context.Background(), server, name) })

	s, _ := openStore(t, testConfig(url)) // migrates, creating the extension
	st := s.Status(ctx)
	if !st.Timescale || st.Warning != "" || st.Error != "" {
		t.Fatalf("status after Migrate = %+v", st)
	}
	db := connect(t, url)
	compressAfter := func() string {
		var v string
		if err := db.QueryRow(ctx, `SELECT coalesce(string_agg(config->>'compress_after', ','), '')
			FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := compressAfter(); got != "7 days" {
		t.Fatalf("compression policy compress_after = %q", got)
	}

	c := chunk("ticks", 0, -1, 3, "AAPL")
	for i := range c.Records {
		c.Records[i].Tick.TS = time.Now().Add(-time.Duration(i) * time.Second)
		c.Records[i].Tick.Size, c.Records[i].Tick.Has = 10, tick.HasSize
	}
	if err := s.Write(ctx, batch(c)); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, `SELECT coalesce(sum(trades), 0) FROM bars_1m WHERE symbol = 'AAPL'`); n != 3 {
		t.Fatalf("bars_1m counts %d trades, want 3 (real-time aggregation)", n)
	}

	// Changed settings are applied by the next Migrate, and a re-run adds
	// no second policy.
	s.cfg.Timescale.CompressAfter = 3 * 24 * time.Hour
	s.cfg.Timescale.Retention = 30 * 24 * time.Hour
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := compressAfter(); got != "3 days" {
		t.Fatalf("compression policy after the change: compress_after = %q", got)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'`); n != 1 {
		t.Fatalf("%d retention policies, want 1", n)
	}
}
