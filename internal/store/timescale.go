package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// The bars_1m refresh policy: every minute, re-aggregate the last hour up
// to one minute ago; real-time aggregation (materialized_only = false)
// serves the newest minute from ticks directly. Older buckets that writes
// touch (backfill, late ticks) are refreshed by the BarsRefresher.
const (
	barsRefreshStart    = time.Hour
	barsRefreshEnd      = time.Minute
	barsRefreshSchedule = time.Minute
)

// tsState is what the database has of TimescaleDB.
type tsState struct {
	Available  bool   // the server offers the extension (its files are installed)
	Preloaded  bool   // the server preloads the library (shared_preload_libraries)
	Version    string // installed version; "" when not installed
	Hypertable bool   // ticks is a hypertable
	Compressed bool   // compression is enabled on ticks
	CreateErr  error  // why CREATE EXTENSION failed, when it did
}

// usable reports whether the hypertable statements can run.
func (st tsState) usable() bool { return st.Version != "" && st.Preloaded }

// warning names what is missing, or "" when nothing is.
func (st tsState) warning() string {
	const plain = "ticks is a plain PostgreSQL table: no hypertable, compression, retention or bars_1m"
	const preload = "the timescaledb library must be preloaded: add timescaledb to shared_preload_libraries in postgresql.conf and restart PostgreSQL, then run processor migrate"
	switch {
	case !st.Available:
		return "the timescaledb extension is not available on this server; " + plain
	case !st.Preloaded && st.Version != "":
		return "timescaledb " + st.Version + " is installed in this database but not loaded by the server; " + preload
	case !st.Preloaded:
		return "the timescaledb extension is installed on this server but not preloaded; " + preload + "; " + plain
	case st.Version == "" && st.CreateErr != nil:
		return fmt.Sprintf("the timescaledb extension is available but could not be created (%s); %s", sqlState(st.CreateErr), plain)
	case st.Version == "":
		return "the timescaledb extension is available but not created in this database (MDS_TS_CREATE_EXTENSION, or CREATE EXTENSION timescaledb as a privileged role, then processor migrate); " + plain
	case !st.Hypertable:
		return "timescaledb " + st.Version + " is installed but ticks is not a hypertable yet: run processor migrate"
	}
	return ""
}

// sqlState renders err for an operator: SQLSTATE and message for a server
// error, the error text otherwise.
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code + ": " + pgErr.Message
	}
	return err.Error()
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// detectTimescale reads the extension state of the current database. The
// library is preloaded exactly when its loader has defined the
// timescaledb.bgw_launcher_poll_time setting, which pg_settings shows to
// every role (shared_preload_libraries itself is readable by superusers
// only). Without the preload, nothing of the extension is called: that
// would end the session with FATAL "must be preloaded".
func detectTimescale(ctx context.Context, q queryer) (tsState, error) {
	var st tsState
	err := q.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
		EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.bgw_launcher_poll_time'),
		coalesce((SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), '')`,
	).Scan(&st.Available, &st.Preloaded, &st.Version)
	if err != nil || !st.usable() {
		return st, err
	}
	err = q.QueryRow(ctx, `SELECT
		count(*) > 0, coalesce(bool_or(compression_enabled), false)
		FROM timescaledb_information.hypertables
		WHERE hypertable_schema = current_schema() AND hypertable_name = 'ticks'`,
	).Scan(&st.Hypertable, &st.Compressed)
	return st, err
}

// tsCatalog is what the TimescaleDB catalog holds of our objects, beyond
// tsState: the settings Migrate compares with the desired ones.
type tsCatalog struct {
	ChunkInterval time.Duration // of ticks.ts; 0 when ticks is no hypertable
	Bars          bool          // bars_1m exists
	BarsMatOnly   bool          // bars_1m has materialized_only = true
	Jobs          []tsJob       // policies on ticks and bars_1m
}

// tsJob is one policy job. After is compress_after or drop_after; Start
// and End are the refresh window offsets (-1: NULL, unbounded).
type tsJob struct {
	ID         int64
	Proc       string
	Schedule   time.Duration
	After      time.Duration
	Start, End time.Duration
}

// The policy procedures.
const (
	procCompression = "policy_compression"
	procRetention   = "policy_retention"
	procRefresh     = "policy_refresh_continuous_aggregate"
)

// readCatalog reads the catalog of an installed, preloaded TimescaleDB.
// Intervals are read in microseconds (a month counts 30 days).
func readCatalog(ctx context.Context, q querier, st tsState) (tsCatalog, error) {
	var c tsCatalog
	if st.Hypertable {
		if err := q.QueryRow(ctx, `SELECT coalesce((extract(epoch FROM time_interval) * 1e6)::bigint, 0)
			FROM timescaledb_information.dimensions
			WHERE hypertable_schema = current_schema() AND hypertable_name = 'ticks' AND column_name = 'ts'`,
		).Scan(&c.ChunkInterval); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return c, fmt.Errorf("reading the chunk interval: %w", err)
		}
		c.ChunkInterval *= time.Microsecond
	}
	err := q.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(materialized_only), false)
		FROM timescaledb_information.continuous_aggregates
		WHERE view_schema = current_schema() AND view_name = 'bars_1m'`).Scan(&c.Bars, &c.BarsMatOnly)
	if err != nil {
		return c, fmt.Errorf("reading bars_1m: %w", err)
	}
	rows, err := q.Query(ctx, `SELECT job_id, proc_name,
		(extract(epoch FROM schedule_interval) * 1e6)::bigint,
		coalesce((extract(epoch FROM coalesce(config->>'compress_after', config->>'drop_after')::interval) * 1e6)::bigint, -1),
		coalesce((extract(epoch FROM (config->>'start_offset')::interval) * 1e6)::bigint, -1),
		coalesce((extract(epoch FROM (config->>'end_offset')::interval) * 1e6)::bigint, -1)
		FROM timescaledb_information.jobs
		WHERE hypertable_schema = current_schema() AND hypertable_name IN ('ticks', 'bars_1m')
		  AND proc_name IN ($1, $2, $3)
		ORDER BY job_id`, procCompression, procRetention, procRefresh)
	if err != nil {
		return c, fmt.Errorf("reading policies: %w", err)
	}
	var j tsJob
	_, err = pgx.ForEachRow(rows, []any{&j.ID, &j.Proc, &j.Schedule, &j.After, &j.Start, &j.End}, func() error {
		for _, d := range []*time.Duration{&j.Schedule, &j.After, &j.Start, &j.End} {
			if *d > 0 {
				*d *= time.Microsecond
			}
		}
		c.Jobs = append(c.Jobs, j)
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("reading policies: %w", err)
	}
	return c, nil
}

// step is one statement of the reconcile plan. Warn, when set, tells the
// operator what the statement changes that someone may have set by hand.
type step struct {
	SQL  string
	Warn string
}

// tsPlan is what reconciling needs: the statements, in order, and notes
// about settings left alone on purpose (logged, not executed).
type tsPlan struct {
	Steps []step
	Notes []string
}

// timescaleSQL compares the desired settings with what the catalog holds
// and returns only the statements that change something; on a database
// already in line with cfg it returns none. Policies whose setting
// differs are altered in place (alter_job keeps the job id and its
// statistics), a bars_1m policy with another window is replaced. A
// retention policy is managed only when MDS_TS_RETENTION is set: an unset
// one leaves an existing policy (a DBA's) in place, with a note naming it.
// MDS_TS_COMPRESS_AFTER=0 removes the compression policy with a warning
// naming it.
func timescaleSQL(cfg TimescaleConfig, st tsState, cat tsCatalog) tsPlan {
	var p tsPlan
	add := func(sql, warn string) { p.Steps = append(p.Steps, step{SQL: sql, Warn: warn}) }
	if !st.Hypertable {
		add(fmt.Sprintf("SELECT create_hypertable('ticks', 'ts', chunk_time_interval => %s, "+
			"create_default_indexes => FALSE, migrate_data => TRUE, if_not_exists => TRUE)", interval(cfg.ChunkInterval)), "")
	} else if cat.ChunkInterval != cfg.ChunkInterval {
		add(fmt.Sprintf("SELECT set_chunk_time_interval('ticks', %s)", interval(cfg.ChunkInterval)),
			fmt.Sprintf("chunk interval of ticks changes from %v to %v (for chunks created from now on)", cat.ChunkInterval, cfg.ChunkInterval))
	}

	if cfg.CompressAfter > 0 && !st.Compressed {
		add("ALTER TABLE ticks SET (timescaledb.compress, "+
			"timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')", "")
	}
	policy(&p, cat.Jobs, procCompression, "compress_after", cfg.CompressAfter, true,
		fmt.Sprintf("SELECT add_compression_policy('ticks', %s)", interval(cfg.CompressAfter)),
		"SELECT remove_compression_policy('ticks')")
	policy(&p, cat.Jobs, procRetention, "drop_after", cfg.Retention, false,
		fmt.Sprintf("SELECT add_retention_policy('ticks', %s)", interval(cfg.Retention)), "")

	if !cat.Bars {
		add(barsViewSQL, "")
	} else if cat.BarsMatOnly {
		add("ALTER MATERIALIZED VIEW bars_1m SET (timescaledb.materialized_only = false)",
			"bars_1m had materialized_only = true: real-time aggregation is turned back on")
	}
	addRefresh := fmt.Sprintf("SELECT add_continuous_aggregate_policy('bars_1m', start_offset => %s, end_offset => %s, schedule_interval => %s)",
		interval(barsRefreshStart), interval(barsRefreshEnd), interval(barsRefreshSchedule))
	var refresh []tsJob
	for _, j := range cat.Jobs {
		if j.Proc == procRefresh {
			refresh = append(refresh, j)
		}
	}
	switch {
	case len(refresh) == 0:
		add(addRefresh, "")
	case refresh[0].Start != barsRefreshStart || refresh[0].End != barsRefreshEnd || refresh[0].Schedule != barsRefreshSchedule:
		j := refresh[0]
		add("SELECT remove_continuous_aggregate_policy('bars_1m')",
			fmt.Sprintf("bars_1m refresh policy job %d (start_offset %s, end_offset %s, every %v) is replaced by start_offset %v, end_offset %v, every %v",
				j.ID, offset(j.Start), offset(j.End), j.Schedule, barsRefreshStart, barsRefreshEnd, barsRefreshSchedule))
		add(addRefresh, "")
	}
	return p
}

// policy plans the compression or retention policy (proc) to match want,
// given the jobs of the catalog. TimescaleDB allows one of each per
// hypertable. A policy whose setting (key) differs is altered in place.
// want == 0 removes an existing policy with a warning when managed (remove
// is its statement), and keeps it with a note otherwise.
func policy(p *tsPlan, jobs []tsJob, proc, key string, want time.Duration, managed bool, addSQL, removeSQL string) {
	var have *tsJob
	for i := range jobs {
		if jobs[i].Proc == proc {
			have = &jobs[i]
			break
		}
	}
	switch {
	case have == nil && want > 0:
		p.Steps = append(p.Steps, step{SQL: addSQL})
	case have == nil || have.After == want:
	case want > 0:
		p.Steps = append(p.Steps, step{
			SQL: fmt.Sprintf("SELECT alter_job(%d, config => jsonb_set(config, '{%s}', to_jsonb(%s::text))) FROM timescaledb_information.jobs WHERE job_id = %d",
				have.ID, key, quoteInterval(want), have.ID),
			Warn: fmt.Sprintf("%s job %d on ticks changes %s from %v to %v", proc, have.ID, key, have.After, want),
		})
	case managed:
		p.Steps = append(p.Steps, step{SQL: removeSQL,
			Warn: fmt.Sprintf("%s job %d on ticks (%s %v) is removed: the setting turns it off", proc, have.ID, key, have.After)})
	default:
		p.Notes = append(p.Notes, fmt.Sprintf("%s job %d on ticks (%s %v) is kept: MDS_TS_RETENTION is unset, so the policy is not managed; set it to manage the policy, or remove it with SELECT remove_retention_policy('ticks')",
			proc, have.ID, key, have.After))
	}
}

const barsViewSQL = `CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS bucket,
       symbol,
       first(price, ts) AS open,
       max(price)       AS high,
       min(price)       AS low,
       last(price, ts)  AS close,
       sum(size)        AS volume,
       count(*)         AS trades
FROM ticks
GROUP BY bucket, symbol
WITH NO DATA`

// offset renders a refresh window offset, -1 being NULL.
func offset(d time.Duration) string {
	if d < 0 {
		return "NULL"
	}
	return d.String()
}

// intervalText renders d as interval text in the largest whole unit.
func intervalText(d time.Duration) string {
	units := []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "days"}, {time.Hour, "hours"}, {time.Minute, "minutes"}, {time.Second, "seconds"}}
	for _, u := range units {
		if d%u.d == 0 {
			return fmt.Sprintf("%d %s", d/u.d, u.name)
		}
	}
	return fmt.Sprintf("%d microseconds", d/time.Microsecond)
}

// interval renders d as an SQL interval literal.
func interval(d time.Duration) string { return "INTERVAL " + quoteInterval(d) }

func quoteInterval(d time.Duration) string { return "'" + intervalText(d) + "'" }

// querier is what the reconcile steps need of a connection.
type querier interface {
	queryer
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// reconcileTimescale brings TimescaleDB in line with the settings, on c,
// which holds the migration lock. It changes only what differs from the
// catalog, so a re-run executes nothing. Without a usable extension it
// logs the warning and returns nil.
func (s *Store) reconcileTimescale(ctx context.Context, c querier) error {
	st, err := s.ensureExtension(ctx, c)
	if err != nil {
		return err
	}
	if !st.usable() {
		s.log.Warn("timescaledb missing", zap.String("warning", st.warning()))
		return nil
	}
	cat, err := readCatalog(ctx, c, st)
	if err != nil {
		return err
	}
	plan := timescaleSQL(s.cfg.Timescale, st, cat)
	for _, n := range plan.Notes {
		s.log.Info("timescaledb setting left alone", zap.String("note", n))
	}
	for _, q := range plan.Steps {
		if q.Warn != "" {
			s.log.Warn("changing a timescaledb setting", zap.String("change", q.Warn))
		}
		if _, err := c.Exec(ctx, q.SQL); err != nil {
			return fmt.Errorf("applying timescaledb settings (%.60s): %w", q.SQL, err)
		}
	}
	s.log.Info("timescaledb settings in place", zap.String("timescaledb", st.Version),
		zap.Int("statements", len(plan.Steps)),
		zap.Duration("chunk_interval", s.cfg.Timescale.ChunkInterval),
		zap.Duration("compress_after", s.cfg.Timescale.CompressAfter),
		zap.Duration("retention", s.cfg.Timescale.Retention))
	return nil
}

// ensureExtension detects TimescaleDB and creates it when the server offers
// and preloads it and the settings allow. A refusal (no privilege) is
// recorded in the state and kept for Status, not returned; a connection
// failure is returned.
func (s *Store) ensureExtension(ctx context.Context, c querier) (tsState, error) {
	st, err := detectTimescale(ctx, c)
	if err != nil {
		return st, fmt.Errorf("detecting timescaledb: %w", err)
	}
	if !st.Available || !st.Preloaded || st.Version != "" || !s.cfg.Timescale.CreateExtension {
		return st, nil
	}
	if _, err := c.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS timescaledb"); err != nil {
		if IsTemporary(err) {
			return st, fmt.Errorf("creating timescaledb extension: %w", err)
		}
		st.CreateErr = err
		s.createErr.Store(&st.CreateErr)
		return st, nil
	}
	s.createErr.Store(nil)
	st, err = detectTimescale(ctx, c)
	if err != nil {
		return st, fmt.Errorf("detecting timescaledb: %w", err)
	}
	return st, nil
}

// planTimescale is the dry-run form of reconcileTimescale.
func (s *Store) planTimescale(ctx context.Context) ([]string, error) {
	st, err := detectTimescale(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("detecting timescaledb: %w", err)
	}
	var plan tsPlan
	switch {
	case st.Available && st.Preloaded && st.Version == "" && s.cfg.Timescale.CreateExtension:
		// Plan as if the extension were created; the hypertable is new.
		plan = timescaleSQL(s.cfg.Timescale, tsState{Available: true, Preloaded: true}, tsCatalog{})
		plan.Steps = append([]step{{SQL: "CREATE EXTENSION IF NOT EXISTS timescaledb"}}, plan.Steps...)
	case !st.usable():
		return []string{"-- no timescaledb: " + st.warning()}, nil
	default:
		cat, err := readCatalog(ctx, s.pool, st)
		if err != nil {
			return nil, err
		}
		plan = timescaleSQL(s.cfg.Timescale, st, cat)
	}
	var out []string
	for _, q := range plan.Steps {
		if q.Warn != "" {
			out = append(out, "-- warning: "+q.Warn)
		}
		out = append(out, q.SQL)
	}
	return out, nil
}
