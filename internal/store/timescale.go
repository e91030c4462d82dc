package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// The bars_1m refresh policy: every minute, re-aggregate the last hour up
// to one minute ago; real-time aggregation (materialized_only = false)
// serves the newest minute from ticks directly.
const (
	barsRefreshStart    = time.Hour
	barsRefreshEnd      = time.Minute
	barsRefreshSchedule = time.Minute
)

// tsState is what the database has of TimescaleDB.
type tsState struct {
	Available  bool   // the server offers the extension
	Version    string // installed version; "" when not installed
	Hypertable bool   // ticks is a hypertable
	Compressed bool   // compression is enabled on ticks
	CreateErr  error  // why CREATE EXTENSION failed, when it did
}

// warning names what is missing, or "" when nothing is.
func (st tsState) warning() string {
	const plain = "ticks is a plain PostgreSQL table: no hypertable, compression, retention or bars_1m"
	switch {
	case !st.Available:
		return "the timescaledb extension is not available on this server; " + plain
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

// detectTimescale reads the extension state of the current database.
func detectTimescale(ctx context.Context, q queryer) (tsState, error) {
	var st tsState
	err := q.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'),
		coalesce((SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), '')`,
	).Scan(&st.Available, &st.Version)
	if err != nil || st.Version == "" {
		return st, err
	}
	err = q.QueryRow(ctx, `SELECT
		count(*) > 0, coalesce(bool_or(compression_enabled), false)
		FROM timescaledb_information.hypertables
		WHERE hypertable_schema = current_schema() AND hypertable_name = 'ticks'`,
	).Scan(&st.Hypertable, &st.Compressed)
	return st, err
}

// timescaleSQL returns the statements that bring an installed TimescaleDB
// in line with cfg, given what st found. Each statement is idempotent on
// its own. Policies are removed and added again, so a changed setting takes
// effect and a removed one (0) drops its policy.
func timescaleSQL(cfg TimescaleConfig, st tsState) []string {
	var q []string
	if !st.Hypertable {
		q = append(q, fmt.Sprintf("SELECT create_hypertable('ticks', 'ts', chunk_time_interval => %s, "+
			"create_default_indexes => FALSE, migrate_data => TRUE, if_not_exists => TRUE)", interval(cfg.ChunkInterval)))
	}
	q = append(q, fmt.Sprintf("SELECT set_chunk_time_interval('ticks', %s)", interval(cfg.ChunkInterval)))

	if cfg.CompressAfter > 0 && !st.Compressed {
		q = append(q, "ALTER TABLE ticks SET (timescaledb.compress, "+
			"timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')")
	}
	q = append(q, "SELECT remove_compression_policy('ticks', if_exists => TRUE)")
	if cfg.CompressAfter > 0 {
		q = append(q, fmt.Sprintf("SELECT add_compression_policy('ticks', %s)", interval(cfg.CompressAfter)))
	}

	q = append(q, "SELECT remove_retention_policy('ticks', if_exists => TRUE)")
	if cfg.Retention > 0 {
		q = append(q, fmt.Sprintf("SELECT add_retention_policy('ticks', %s)", interval(cfg.Retention)))
	}

	q = append(q, `CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1m
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
WITH NO DATA`,
		"SELECT remove_continuous_aggregate_policy('bars_1m', if_exists => TRUE)",
		fmt.Sprintf("SELECT add_continuous_aggregate_policy('bars_1m', start_offset => %s, end_offset => %s, schedule_interval => %s)",
			interval(barsRefreshStart), interval(barsRefreshEnd), interval(barsRefreshSchedule)),
	)
	return q
}

// interval renders d as an SQL interval literal in the largest whole unit.
func interval(d time.Duration) string {
	units := []struct {
		d    time.Duration
		name string
	}{{24 * time.Hour, "days"}, {time.Hour, "hours"}, {time.Minute, "minutes"}, {time.Second, "seconds"}}
	for _, u := range units {
		if d%u.d == 0 {
			return fmt.Sprintf("INTERVAL '%d %s'", d/u.d, u.name)
		}
	}
	return fmt.Sprintf("INTERVAL '%d microseconds'", d/time.Microsecond)
}

// reconcileTimescale applies the TimescaleDB settings after the goose
// migrations. They depend on settings and on the extension, so they are not
// goose versions: they are recomputed and applied on every Migrate. The
// work holds the migration advisory lock on one connection, so concurrent
// instances take turns (CREATE EXTENSION IF NOT EXISTS is not safe to race).
// Without the extension it logs the warning and returns nil.
func (s *Store) reconcileTimescale(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquiring connection: %w", err)
	}
	defer c.Release()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		return fmt.Errorf("taking migration lock: %w", err)
	}
	defer unlock(ctx, c)

	st, err := s.ensureExtension(ctx, c)
	if err != nil {
		return err
	}
	if st.Version == "" {
		s.log.Warn("timescaledb missing", zap.String("warning", st.warning()))
		return nil
	}
	for _, q := range timescaleSQL(s.cfg.Timescale, st) {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("applying timescaledb settings (%.60s): %w", q, err)
		}
	}
	s.log.Info("timescaledb settings applied", zap.String("timescaledb", st.Version),
		zap.Duration("chunk_interval", s.cfg.Timescale.ChunkInterval),
		zap.Duration("compress_after", s.cfg.Timescale.CompressAfter),
		zap.Duration("retention", s.cfg.Timescale.Retention))
	return nil
}

// ensureExtension detects TimescaleDB and creates it when the server offers
// it and the settings allow. A refusal (no privilege, library not preloaded)
// is recorded in the state, not returned; a connection failure is returned.
func (s *Store) ensureExtension(ctx context.Context, c *pgxpool.Conn) (tsState, error) {
	st, err := detectTimescale(ctx, c)
	if err != nil {
		return st, fmt.Errorf("detecting timescaledb: %w", err)
	}
	if !st.Available || st.Version != "" || !s.cfg.Timescale.CreateExtension {
		return st, nil
	}
	if _, err := c.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS timescaledb"); err != nil {
		if IsTemporary(err) {
			return st, fmt.Errorf("creating timescaledb extension: %w", err)
		}
		st.CreateErr = err
		return st, nil
	}
	st, err = detectTimescale(ctx, c)
	if err != nil {
		return st, fmt.Errorf("detecting timescaledb: %w", err)
	}
	return st, nil
}

// unlock releases the migration lock. If that fails the connection is
// closed, which releases the lock too, rather than going back to the pool
// still holding it.
func unlock(ctx context.Context, c *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock($1)", migrateLockID); err != nil {
		_ = c.Conn().Close(ctx)
	}
}

// planTimescale is the dry-run form of reconcileTimescale.
func (s *Store) planTimescale(ctx context.Context) ([]string, error) {
	st, err := detectTimescale(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("detecting timescaledb: %w", err)
	}
	switch {
	case st.Available && st.Version == "" && s.cfg.Timescale.CreateExtension:
		// Plan as if the extension were created; the hypertable is new.
		return append([]string{"CREATE EXTENSION IF NOT EXISTS timescaledb"}, timescaleSQL(s.cfg.Timescale, tsState{Available: true})...), nil
	case st.Version == "":
		return []string{"-- no timescaledb: " + st.warning()}, nil
	}
	return timescaleSQL(s.cfg.Timescale, st), nil
}
