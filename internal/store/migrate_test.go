package store

import (
	"strings"
	"sync"
	"testing"

	"github.com/market-data-store/mds/internal/pgtest"
)

func TestMigrateFreshThenRerunIsNoOp(t *testing.T) {
	url := pgtest.NewDatabase(t)
	cfg := testConfig(url)
	cfg.AutoMigrate = false
	s, _ := openStore(t, cfg)
	ctx := testCtx(t)
	db := connect(t, url)

	plan, err := s.PlanMigrations(ctx)
	if err != nil {
		t.Fatalf("PlanMigrations: %v", err)
	}
	if len(plan) < 2 || plan[0] != "-- migration 1: 00001_schema.sql" || !strings.HasPrefix(plan[len(plan)-1], "-- no timescaledb") {
		t.Fatalf("plan of a fresh database = %q", plan)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`); n != 0 {
		t.Fatalf("the dry run created %d tables", n)
	}
	if st := s.Status(ctx); st.SchemaVersion != 0 || st.SchemaLatest != 1 || !strings.Contains(st.Warning, "run processor migrate") {
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
	if len(plan) != 1 || !strings.HasPrefix(plan[0], "-- no timescaledb") {
		t.Fatalf("plan of a migrated database = %q", plan)
	}
	st := s.Status(ctx)
	if st.SchemaVersion != 1 || st.Timescale || st.Error != "" ||
		!strings.Contains(st.Warning, "timescaledb extension is not available") {
		t.Fatalf("status = %+v", st)
	}
}

func TestMigrateConcurrently(t *testing.T) {
	url := pgtest.NewDatabase(t)
	cfg := testConfig(url)
	cfg.AutoMigrate = false
	var stores []*Store
	for range 3 {
		s, _ := openStore(t, cfg)
		stores = append(stores, s)
	}
	ctx := testCtx(t)
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
}
