package store

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// sqlOf lists the statements of a plan.
func sqlOf(p tsPlan) []string {
	var q []string
	for _, s := range p.Steps {
		q = append(q, s.SQL)
	}
	return q
}

// upToDate is the catalog of a database that Migrate brought in line with
// the default settings.
func upToDate() (tsState, tsCatalog) {
	def := DefaultConfig().Timescale
	return tsState{Available: true, Preloaded: true, Version: "2.28.3", Hypertable: true, Compressed: true},
		tsCatalog{ChunkInterval: def.ChunkInterval, Bars: true, Jobs: []tsJob{
			{ID: 1000, Proc: procCompression, Schedule: 12 * time.Hour, After: def.CompressAfter, Start: -1, End: -1},
			{ID: 1002, Proc: procRefresh, Schedule: barsRefreshSchedule, After: -1, Start: barsRefreshStart, End: barsRefreshEnd},
		}}
}

func TestTimescaleSQLFresh(t *testing.T) {
	def := DefaultConfig().Timescale
	fresh := sqlOf(timescaleSQL(def, tsState{Available: true, Preloaded: true, Version: "2.28.3"}, tsCatalog{}))
	want := []string{
		"SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '1 days', create_default_indexes => FALSE, migrate_data => TRUE, if_not_exists => TRUE)",
		"ALTER TABLE ticks SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')",
		"SELECT add_compression_policy('ticks', INTERVAL '7 days')",
		barsViewSQL,
		"SELECT add_continuous_aggregate_policy('bars_1m', start_offset => INTERVAL '1 hours', end_offset => INTERVAL '1 minutes', schedule_interval => INTERVAL '1 minutes')",
	}
	if !slices.Equal(fresh, want) {
		t.Fatalf("fresh plan:\n%s\nwant:\n%s", strings.Join(fresh, "\n"), strings.Join(want, "\n"))
	}
	for _, part := range []string{"timescaledb.continuous", "timescaledb.materialized_only = false",
		"time_bucket(INTERVAL '1 minute', ts) AS bucket", "first(price, ts) AS open", "max(price)       AS high",
		"min(price)       AS low", "last(price, ts)  AS close", "sum(size)        AS volume", "count(*)         AS trades",
		"GROUP BY bucket, symbol", "WITH NO DATA"} {
		if !strings.Contains(barsViewSQL, part) {
			t.Errorf("bars_1m view lacks %q:\n%s", part, barsViewSQL)
		}
	}
}

// TestTimescaleSQLChangesOnlyWhatDiffers is the reconcile table: each case
// starts from an up-to-date catalog, changes one thing, and lists the
// statements and warnings that must follow, and nothing else.
func TestTimescaleSQLChangesOnlyWhatDiffers(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*TimescaleConfig, *tsState, *tsCatalog)
		want  []string
		warns []string // substrings, one per statement with a warning
		notes []string
	}{
		{name: "up to date", edit: func(*TimescaleConfig, *tsState, *tsCatalog) {}},
		{name: "chunk interval", edit: func(c *TimescaleConfig, _ *tsState, _ *tsCatalog) { c.ChunkInterval = 6 * time.Hour },
			want:  []string{"SELECT set_chunk_time_interval('ticks', INTERVAL '6 hours')"},
			warns: []string{"from 24h0m0s to 6h0m0s"}},
		{name: "compress after", edit: func(c *TimescaleConfig, _ *tsState, _ *tsCatalog) { c.CompressAfter = 3 * 24 * time.Hour },
			want:  []string{"SELECT alter_job(1000, config => jsonb_set(config, '{compress_after}', to_jsonb('3 days'::text))) FROM timescaledb_information.jobs WHERE job_id = 1000"},
			warns: []string{"policy_compression job 1000 on ticks changes compress_after from 168h0m0s to 72h0m0s"}},
		{name: "compression off", edit: func(c *TimescaleConfig, _ *tsState, _ *tsCatalog) { c.CompressAfter = 0 },
			want:  []string{"SELECT remove_compression_policy('ticks')"},
			warns: []string{"policy_compression job 1000 on ticks (compress_after 168h0m0s) is removed"}},
		{name: "compression policy removed by hand", edit: func(_ *TimescaleConfig, _ *tsState, c *tsCatalog) { c.Jobs = c.Jobs[1:] },
			want: []string{"SELECT add_compression_policy('ticks', INTERVAL '7 days')"}},
		{name: "retention set", edit: func(c *TimescaleConfig, _ *tsState, _ *tsCatalog) { c.Retention = 90 * 24 * time.Hour },
			want: []string{"SELECT add_retention_policy('ticks', INTERVAL '90 days')"}},
		{name: "retention changed", edit: func(c *TimescaleConfig, _ *tsState, cat *tsCatalog) {
			c.Retention = 90 * 24 * time.Hour
			cat.Jobs = append(cat.Jobs, tsJob{ID: 1003, Proc: procRetention, After: 30 * 24 * time.Hour, Start: -1, End: -1})
		},
			want:  []string{"SELECT alter_job(1003, config => jsonb_set(config, '{drop_after}', to_jsonb('90 days'::text))) FROM timescaledb_information.jobs WHERE job_id = 1003"},
			warns: []string{"policy_retention job 1003 on ticks changes drop_after from 720h0m0s to 2160h0m0s"}},
		{name: "retention unset keeps a DBA's policy", edit: func(_ *TimescaleConfig, _ *tsState, cat *tsCatalog) {
			cat.Jobs = append(cat.Jobs, tsJob{ID: 1003, Proc: procRetention, After: 30 * 24 * time.Hour, Start: -1, End: -1})
		},
			notes: []string{"policy_retention job 1003 on ticks (drop_after 720h0m0s) is kept: MDS_TS_RETENTION is unset"}},
		{name: "compression disabled by hand", edit: func(_ *TimescaleConfig, st *tsState, _ *tsCatalog) { st.Compressed = false },
			want: []string{"ALTER TABLE ticks SET (timescaledb.compress, timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')"}},
		{name: "bars_1m materialized only", edit: func(_ *TimescaleConfig, _ *tsState, c *tsCatalog) { c.BarsMatOnly = true },
			want:  []string{"ALTER MATERIALIZED VIEW bars_1m SET (timescaledb.materialized_only = false)"},
			warns: []string{"real-time aggregation is turned back on"}},
		{name: "bars_1m refresh window", edit: func(_ *TimescaleConfig, _ *tsState, c *tsCatalog) { c.Jobs[1].Start = -1 },
			want: []string{"SELECT remove_continuous_aggregate_policy('bars_1m')",
				"SELECT add_continuous_aggregate_policy('bars_1m', start_offset => INTERVAL '1 hours', end_offset => INTERVAL '1 minutes', schedule_interval => INTERVAL '1 minutes')"},
			warns: []string{"bars_1m refresh policy job 1002 (start_offset NULL, end_offset 1m0s, every 1m0s) is replaced"}},
		{name: "bars_1m dropped", edit: func(_ *TimescaleConfig, _ *tsState, c *tsCatalog) { c.Bars, c.Jobs = false, c.Jobs[:1] },
			want: []string{barsViewSQL, "SELECT add_continuous_aggregate_policy('bars_1m', start_offset => INTERVAL '1 hours', end_offset => INTERVAL '1 minutes', schedule_interval => INTERVAL '1 minutes')"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig().Timescale
			st, cat := upToDate()
			c.edit(&cfg, &st, &cat)
			p := timescaleSQL(cfg, st, cat)
			if got := sqlOf(p); !slices.Equal(got, c.want) {
				t.Fatalf("statements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			var warns []string
			for _, s := range p.Steps {
				if s.Warn != "" {
					warns = append(warns, s.Warn)
				}
			}
			if len(warns) != len(c.warns) {
				t.Fatalf("warnings %q, want %d matching %q", warns, len(c.warns), c.warns)
			}
			for i, w := range c.warns {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %q does not say %q", warns[i], w)
				}
			}
			if len(p.Notes) != len(c.notes) {
				t.Fatalf("notes %q, want %d matching %q", p.Notes, len(c.notes), c.notes)
			}
			for i, n := range c.notes {
				if !strings.Contains(p.Notes[i], n) {
					t.Errorf("note %q does not say %q", p.Notes[i], n)
				}
			}
		})
	}
}

func TestTimescaleWarning(t *testing.T) {
	cases := []struct {
		st   tsState
		want string
	}{
		{tsState{}, "not available on this server"},
		{tsState{Available: true}, "installed on this server but not preloaded; the timescaledb library must be preloaded: add timescaledb to shared_preload_libraries"},
		{tsState{Available: true, Version: "2.28.3"}, "timescaledb 2.28.3 is installed in this database but not loaded by the server; the timescaledb library must be preloaded"},
		{tsState{Available: true, Preloaded: true}, "available but not created"},
		{tsState{Available: true, Preloaded: true, CreateErr: fmt.Errorf("x")}, "could not be created (x)"},
		{tsState{Available: true, Preloaded: true, Version: "2.28.3"}, "not a hypertable yet"},
		{tsState{Available: true, Preloaded: true, Version: "2.28.3", Hypertable: true}, ""},
	}
	for _, c := range cases {
		got := c.st.warning()
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("%+v: warning %q, want it to say %q", c.st, got, c.want)
		}
	}
}

// jobIDs lists the policy jobs on ticks and bars_1m as "proc=id".
func jobIDs(t *testing.T, db *pgx.Conn) []string {
	t.Helper()
	rows, err := db.Query(testCtx(t), `SELECT proc_name || '=' || job_id FROM timescaledb_information.jobs
		WHERE hypertable_name IN ('ticks', 'bars_1m') ORDER BY job_id`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestTimescale runs Migrate against a real TimescaleDB: the objects are
// created, a re-run changes nothing (same job ids, an empty dry run), a
// changed setting alters only its policy, and a retention policy a DBA
// added is kept while MDS_TS_RETENTION is unset.
func TestTimescale(t *testing.T) {
	url := timescaleDatabase(t)
	ctx := testCtx(t)
	s, _ := openStore(t, testConfig(url)) // migrates, creating the extension
	st := s.Status(ctx)
	if !st.Timescale || st.Warning != "" || st.Error != "" {
		t.Fatalf("status after Migrate = %+v", st)
	}
	db := connect(t, url)
	config := func(proc, key string) string {
		var v string
		if err := db.QueryRow(ctx, `SELECT coalesce(string_agg(config->>$2, ','), '')
			FROM timescaledb_information.jobs WHERE proc_name = $1 AND hypertable_name = 'ticks'`, proc, key).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := config(procCompression, "compress_after"); got != "7 days" {
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

	// An up-to-date database: the dry run lists nothing, a re-run keeps
	// every job (a removed and re-added policy would get a new id).
	jobs := jobIDs(t, db)
	if len(jobs) != 2 {
		t.Fatalf("jobs after the first Migrate: %q, want a compression and a refresh policy", jobs)
	}
	if plan, err := s.PlanMigrations(ctx); err != nil || len(plan) != 0 {
		t.Fatalf("dry run on an up-to-date database = %q, %v; want nothing", plan, err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := jobIDs(t, db); !slices.Equal(got, jobs) {
		t.Fatalf("a re-run changed the jobs: %q, then %q", jobs, got)
	}

	// A DBA adds a retention policy: kept while MDS_TS_RETENTION is unset.
	if _, err := db.Exec(ctx, `SELECT add_retention_policy('ticks', INTERVAL '400 days')`); err != nil {
		t.Fatal(err)
	}
	jobs = jobIDs(t, db)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := jobIDs(t, db); !slices.Equal(got, jobs) || config(procRetention, "drop_after") != "400 days" {
		t.Fatalf("with MDS_TS_RETENTION unset, the DBA's retention policy changed: jobs %q then %q, drop_after %q", jobs, got, config(procRetention, "drop_after"))
	}
	if plan, err := s.PlanMigrations(ctx); err != nil || len(plan) != 0 {
		t.Fatalf("dry run with a DBA's retention policy = %q, %v; want nothing", plan, err)
	}

	// Changed settings alter the policies in place, once.
	s.cfg.Timescale.CompressAfter = 3 * 24 * time.Hour
	s.cfg.Timescale.Retention = 30 * 24 * time.Hour
	plan, err := s.PlanMigrations(ctx)
	if err != nil || len(plan) != 4 || !strings.HasPrefix(plan[0], "-- warning: policy_compression job") {
		t.Fatalf("dry run of two changed settings = %q, %v", plan, err)
	}
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := jobIDs(t, db); !slices.Equal(got, jobs) {
		t.Fatalf("changed settings replaced jobs: %q, then %q", jobs, got)
	}
	if got, ret := config(procCompression, "compress_after"), config(procRetention, "drop_after"); got != "3 days" || ret != "30 days" {
		t.Fatalf("after the change: compress_after = %q, drop_after = %q", got, ret)
	}
	if plan, err := s.PlanMigrations(ctx); err != nil || len(plan) != 0 {
		t.Fatalf("dry run after applying the change = %q, %v; want nothing", plan, err)
	}
}
