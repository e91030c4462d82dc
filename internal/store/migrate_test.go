package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/pgtest"
)

// TestMigrateFreshThenRerunIsNoOp runs on whatever the test server is:
// with TimescaleDB preloaded the plans include the hypertable and a
// migrated database plans nothing; without it they say why there is none.
func TestMigrateFreshThenRerunIsNoOp(t *testing.T) {
	url := pgtest.NewDatabase(t)
	timescale := preloads(t, url)
	t.Logf("timescaledb preloaded: %v", timescale)
	cfg := testConfig(url)
	cfg.AutoMigrate = false
	s, _ := openStore(t, cfg)
	ctx := testCtx(t)
	db := connect(t, url)

	plan, err := s.PlanMigrations(ctx)
	if err != nil {
		t.Fatalf("PlanMigrations: %v", err)
	}
	last := "-- no timescaledb"
	if timescale {
		last = "SELECT add_continuous_aggregate_policy('bars_1m'"
	}
	if len(plan) < 2 || plan[0] != "-- migration 1: 00001_schema.sql" || !strings.HasPrefix(plan[len(plan)-1], last) {
		t.Fatalf("plan of a fresh database = %q", plan)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n != 0 {
		t.Fatalf("the dry run created %d tables", n)
	}
	if st := s.Status(ctx); st.SchemaVersion != 0 || st.SchemaLatest != latestMigration() || !strings.Contains(st.Warning, "run processor migrate") {
		t.Fatalf("status before migrating = %+v", st)
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	for _, table := range []string{"ticks", "mds_offsets", "mds_dead_letters"} {
		if n := queryInt(t, db, `SELECT count(*) FROM pg_tables WHERE tablename = $1`, table); n != 1 {
			t.Fatalf("table %s missing after Migrate", table)
		}
	}
	if n := queryInt(t, db, `SELECT count(*) FROM pg_indexes WHERE tablename = 'ticks' AND indexname = 'ticks_symbol_ts_idx'`); n != 1 {
		t.Fatal("index ticks_symbol_ts_idx missing")
	}
	rows := queryInt(t, db, `SELECT count(*) FROM goose_db_version`)

	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM goose_db_version`); n != rows {
		t.Fatalf("second Migrate changed goose_db_version: %d rows, then %d", rows, n)
	}
	plan, err = s.PlanMigrations(ctx)
	if err != nil {
		t.Fatalf("PlanMigrations: %v", err)
	}
	st := s.Status(ctx)
	if timescale {
		if len(plan) != 0 {
			t.Fatalf("plan of a migrated database = %q, want nothing", plan)
		}
		if st.SchemaVersion != latestMigration() || !st.Timescale || st.Error != "" || st.Warning != "" {
			t.Fatalf("status = %+v", st)
		}
		return
	}
	if len(plan) != 1 || !strings.HasPrefix(plan[0], "-- no timescaledb") {
		t.Fatalf("plan of a migrated database = %q", plan)
	}
	if st.SchemaVersion != latestMigration() || st.Timescale || st.Error != "" || !strings.Contains(st.Warning, "timescaledb") {
		t.Fatalf("status = %+v", st)
	}
}

// TestMigrateConcurrently starts three migrations of one fresh database at
// once, on a cluster of its own (preloading TimescaleDB where installed)
// whose server log it then reads: the migration lock is taken before
// anything touches the schema, so the server logged no ERROR (goose's
// version table created twice, CREATE EXTENSION racing) and every step ran
// once.
func TestMigrateConcurrently(t *testing.T) {
	ctx := testCtx(t)
	// The backend type in each log line tells our sessions from TimescaleDB's
	// background jobs.
	c, err := pgtemp.Start(ctx, pgtemp.Options{Settings: map[string]string{"log_line_prefix": "%m [%p] %b "}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	t.Logf("cluster of its own, timescaledb preloaded: %v", c.Timescale)
	url, err := c.CreateDatabase(ctx, "migrate_concurrently")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(c.Dir(), "postgres.log")
	before, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(url)
	cfg.AutoMigrate = false
	var stores []*Store
	for range 3 {
		s, _ := openStore(t, cfg)
		stores = append(stores, s)
	}
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() { errs[i] = s.Migrate(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate %d: %v", i, err)
		}
	}
	db := connect(t, url)
	if n := queryInt(t, db, `SELECT count(*) FROM goose_db_version WHERE version_id = 1`); n != 1 {
		t.Fatalf("migration 1 recorded %d times", n)
	}
	if c.Timescale {
		if n := queryInt(t, db, `SELECT count(*) FROM timescaledb_information.jobs WHERE hypertable_name IN ('ticks', 'bars_1m')`); n != 2 {
			t.Fatalf("%d policies after concurrent migrations, want 2", n)
		}
	}
	// The server writes an error to its log before it answers the client,
	// so every error of the migrations is in the log by now.
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var errors []string
	for _, line := range strings.Split(string(log[before.Size():]), "\n") {
		if strings.Contains(line, " client backend ") && (strings.Contains(line, "ERROR:") || strings.Contains(line, "FATAL:")) {
			errors = append(errors, line)
		}
	}
	if len(errors) > 0 {
		t.Fatalf("the server logged errors during concurrent migrations:\n%s", strings.Join(errors, "\n"))
	}
}

// TestTimescaleNotPreloaded runs Migrate where the TimescaleDB library is
// installed but the server does not preload it (a cluster of its own,
// started with MDS_PG_NO_TIMESCALE=1). CREATE EXTENSION would end the
// session with FATAL, so nothing of TimescaleDB is planned or tried, and the
// log line, Status and the dry run all name the cause and the fix.
func TestTimescaleNotPreloaded(t *testing.T) {
	t.Setenv(pgtemp.EnvNoTimescale, "1")
	ctx := testCtx(t)
	c, err := pgtemp.Start(ctx, pgtemp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	url, err := c.CreateDatabase(ctx, "not_preloaded")
	if err != nil {
		t.Fatal(err)
	}
	st, err := detectTimescale(ctx, connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Available {
		t.Skip("TimescaleDB is not installed for this server, so it cannot be installed-but-not-preloaded here")
	}
	cfg := testConfig(url)
	cfg.AutoMigrate = false
	s, _ := openStore(t, cfg)
	const cause = "must be preloaded: add timescaledb to shared_preload_libraries"
	plan, err := s.PlanMigrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range plan {
		if strings.Contains(q, "timescaledb") && !strings.HasPrefix(q, "-- no timescaledb") || strings.Contains(q, "create_hypertable") {
			t.Errorf("the dry run plans %q, which cannot run without the preload", q)
		}
	}
	if !strings.Contains(plan[len(plan)-1], cause) {
		t.Errorf("the dry run does not name the cause: %q", plan)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if got := s.Status(ctx); got.Timescale || got.Error != "" || !strings.Contains(got.Warning, cause) {
		t.Fatalf("Status = %+v, want a warning naming the cause", got)
	}
	if n := queryInt(t, connect(t, url), `SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'`); n != 0 {
		t.Fatal("the extension was created without the preload")
	}
}

// TestStatusKeepsTheCreateError checks that a CREATE EXTENSION refused for
// lack of privilege is what Status says, not a guess.
func TestStatusKeepsTheCreateError(t *testing.T) {
	url := timescaleDatabase(t)
	ctx := testCtx(t)
	db := connect(t, url)
	role := fmt.Sprintf("mds_plain_%d", time.Now().UnixNano())
	for _, q := range []string{
		"CREATE ROLE " + role + " LOGIN",
		"GRANT CREATE, USAGE ON SCHEMA public TO " + role,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = db.Exec(ctx, "DROP OWNED BY "+role)
		_, _ = db.Exec(ctx, "DROP ROLE "+role)
	})
	userURL := strings.Replace(url, "postgres://postgres@", "postgres://"+role+"@", 1)
	if userURL == url {
		t.Skipf("cannot switch the role in this URL form")
	}
	s, _ := openStore(t, testConfig(userURL))
	st := s.Status(ctx)
	if st.Timescale || !strings.Contains(st.Warning, "could not be created (42501") {
		t.Fatalf("Status = %+v, want the refused CREATE EXTENSION (42501) named", st)
	}
}
