package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Store owns the database: the connection pool, the schema, and every SQL
// statement of the service. Its methods are safe for concurrent use.
type Store struct {
	cfg  Config
	pool *pgxpool.Pool
	log  *zap.Logger
	m    *metrics
	bars *BarsRefresher
	// createErr is why the last CREATE EXTENSION timescaledb failed, for
	// Status; nil when it did not fail.
	createErr atomic.Pointer[error]
}

// Open creates the connection pool and registers the metrics on reg (which
// must not be nil; a command that serves no metrics can pass a fresh
// prometheus.NewRegistry()). When cfg.AutoMigrate is set it also runs
// Migrate, so a database that cannot be reached or migrated fails Open;
// otherwise connections are made on first use. The DSN never appears in
// logs or errors: Open logs host, port, database and user only.
func Open(ctx context.Context, cfg Config, log *zap.Logger, reg prometheus.Registerer) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		// The parse error quotes the connection string: leave it out.
		return nil, errors.New("parsing MDS_DATABASE_URL: malformed connection string")
	}
	pcfg.MaxConns = cfg.maxConns()
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("creating database pool: %w", err)
	}
	m, err := newMetrics(reg, pool, cfg.Topics)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("registering store metrics: %w", err)
	}
	s := &Store{cfg: cfg, pool: pool, log: log.Named("store"), m: m}
	s.bars = newBarsRefresher(pool, cfg.Timescale, s.log, m)
	cc := pcfg.ConnConfig
	s.log.Info("database pool",
		zap.String("host", cc.Host), zap.Uint16("port", cc.Port),
		zap.String("database", cc.Database), zap.String("user", cc.User),
		zap.Int32("max_conns", pcfg.MaxConns), zap.String("consumer_group", cfg.Group))
	if cfg.AutoMigrate {
		if err := s.Migrate(ctx); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close waits for connections in use to be released and closes the pool.
// The metrics stay registered.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging database: %w", err)
	}
	return nil
}

// Status is what /readyz shows about the database.
type Status struct {
	// SchemaVersion is the applied goose version (0: none);
	// SchemaLatest the newest version embedded in this binary.
	SchemaVersion int64 `json:"schema_version"`
	SchemaLatest  int64 `json:"schema_latest"`
	// Timescale is true when ticks is a hypertable of an installed
	// TimescaleDB, whose version is TimescaleVersion.
	Timescale        bool   `json:"timescale"`
	TimescaleVersion string `json:"timescale_version,omitempty"`
	// Warning names what is missing, in words for an operator.
	Warning string `json:"warning,omitempty"`
	// Error is set when the status could not be read.
	Error string `json:"error,omitempty"`
}

// Status reads the schema version and the TimescaleDB state. It never
// fails: a database that does not answer gives a Status with Error set.
func (s *Store) Status(ctx context.Context) Status {
	st := Status{SchemaLatest: latestMigration()}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		st.Error = fmt.Sprintf("acquiring connection: %v", err)
		return st
	}
	defer c.Release()
	if st.SchemaVersion, err = schemaVersion(ctx, c); err != nil {
		st.Error = fmt.Sprintf("reading schema version: %v", err)
		return st
	}
	ts, err := detectTimescale(ctx, c)
	if err != nil {
		st.Error = fmt.Sprintf("detecting timescaledb: %v", err)
		return st
	}
	if e := s.createErr.Load(); e != nil && ts.Version == "" {
		ts.CreateErr = *e
	}
	st.Timescale = ts.Hypertable && ts.usable()
	st.TimescaleVersion = ts.Version
	st.Warning = ts.warning()
	if st.SchemaVersion < st.SchemaLatest {
		st.Warning = join(fmt.Sprintf("schema version %d is behind %d: run processor migrate", st.SchemaVersion, st.SchemaLatest), st.Warning)
	}
	return st
}

func join(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}
