package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"go.uber.org/zap"
)

//go:embed migrations/*.sql
var embedded embed.FS

// migrations is the embedded migrations folder, as goose reads it.
var migrations = func() fs.FS {
	sub, err := fs.Sub(embedded, "migrations")
	if err != nil {
		panic(err) // the path is a constant
	}
	return sub
}()

// migrateLockID is the PostgreSQL advisory lock that serializes schema work
// (goose migrations, then the TimescaleDB reconcile step) across every
// instance migrating the same database. It is our own, not goose's default,
// so that another goose user of the database does not wait on us.
const migrateLockID int64 = 0x6d64735f736368 // "mds_sch"

// schemaVersion reads the goose version, 0 before the first migration. (It
// does not use goose, whose reads create the version table.)
func schemaVersion(ctx context.Context, q queryer) (int64, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('goose_db_version') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		return 0, err
	}
	var v int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(version_id), 0) FROM goose_db_version`).Scan(&v)
	return v, err
}

// latestMigration is the newest embedded version.
func latestMigration() int64 {
	names, err := fs.Glob(migrations, "*.sql")
	if err != nil || len(names) == 0 {
		return 0
	}
	v, err := goose.NumericComponent(names[len(names)-1])
	if err != nil {
		return 0
	}
	return v
}

// provider returns a goose provider on the store's pool, without a locker
// of its own: Migrate takes the migration lock before it calls goose.
// Closing the *sql.DB leaves the pool open.
func (s *Store) provider() (*goose.Provider, func(), error) {
	db := stdlib.OpenDBFromPool(s.pool)
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations,
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("loading migrations: %w", err)
	}
	return p, func() { db.Close() }, nil
}

// lockSchema opens a connection of its own (beside the pool, so that a
// pool of one connection cannot deadlock) and takes the migration lock on
// it, waiting for as long as ctx allows. Every instance takes it before
// anything reads or creates goose_db_version, so instances starting
// together migrate one after the other and the later ones find nothing to
// do. Closing the connection releases the lock.
func (s *Store) lockSchema(ctx context.Context) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting for the migration lock: %w", err)
	}
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLockID); err != nil {
		closeConn(c)
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	return c, nil
}

// closeConn closes c, which ends its session and so releases its locks,
// even when ctx is done.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// Migrate brings the database to the schema of this binary: the embedded
// goose migrations, then the TimescaleDB settings (see reconcileTimescale).
// It holds the migration lock from before its first look at the schema to
// the end. It is idempotent and safe to run from several instances at
// once; a re-run changes nothing. Without TimescaleDB it logs a warning
// naming what is missing and succeeds.
func (s *Store) Migrate(ctx context.Context) error {
	lock, err := s.lockSchema(ctx)
	if err != nil {
		return err
	}
	defer closeConn(lock)
	p, done, err := s.provider()
	if err != nil {
		return err
	}
	defer done()
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	for _, r := range results {
		s.log.Info("migration applied", zap.Int64("version", r.Source.Version),
			zap.String("file", r.Source.Path), zap.Duration("duration", r.Duration))
	}
	version, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	s.log.Info("schema ready", zap.Int64("version", version), zap.Int("applied", len(results)))
	return s.reconcileTimescale(ctx, lock)
}

// PlanMigrations lists what Migrate would do, without changing the
// database: one line per pending goose migration, then the TimescaleDB
// statements (or a comment line saying why there are none).
func (s *Store) PlanMigrations(ctx context.Context) ([]string, error) {
	var plan []string
	version, err := schemaVersion(ctx, s.pool)
	if err != nil {
		return nil, fmt.Errorf("reading schema version: %w", err)
	}
	p, done, err := s.provider()
	if err != nil {
		return nil, err
	}
	defer done()
	var pending []*goose.Source
	if version == 0 {
		// No goose table yet: everything is pending. (goose's own Status
		// would create the table, which a dry run must not.)
		pending = p.ListSources()
	} else {
		statuses, err := p.Status(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading migration status: %w", err)
		}
		for _, st := range statuses {
			if st.State == goose.StatePending {
				pending = append(pending, st.Source)
			}
		}
	}
	for _, src := range pending {
		plan = append(plan, fmt.Sprintf("-- migration %d: %s", src.Version, src.Path))
	}
	ts, err := s.planTimescale(ctx)
	if err != nil {
		return nil, err
	}
	return append(plan, ts...), nil
}
