package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/market-data-store/mds/internal/secret"
)

// Config configures a Store.
type Config struct {
	// DatabaseURL is the PostgreSQL connection string. It holds a password:
	// the store never logs it nor puts it in an error, and printing or
	// encoding a Config shows it with the password redacted.
	DatabaseURL string `env:"MDS_DATABASE_URL" secret:"true" help:"PostgreSQL/TimescaleDB connection string (falls back to DATABASE_URL)"`
	// MaxConns caps the connection pool. 0 sizes it as Workers + 2: every
	// coordinator worker holds one connection for the whole of its write
	// transaction, and two more keep partition assignment (LoadOffsets),
	// /readyz and migrations from queueing behind busy workers. With
	// Workers unknown too, 0 means 8.
	MaxConns int `env:"MDS_DB_MAX_CONNS" help:"connection pool size (0: coordinator workers + 2)"`
	// AutoMigrate makes Open call Migrate: schema migrations, then the
	// TimescaleDB settings.
	AutoMigrate bool `env:"MDS_DB_AUTO_MIGRATE" help:"apply schema migrations at start"`
	// Group is the consumer group whose offsets this member writes. It is
	// set from MDS_KAFKA_GROUP by the integrator.
	Group string
	// Topics are the topics consumed, set from MDS_KAFKA_TOPICS by the
	// integrator, so that the gap metrics of each exist (at 0) from the
	// start and alerts can rely on them.
	Topics []string
	// Workers is the number of coordinator workers, set from
	// MDS_COORDINATOR_WORKERS by the integrator; it sizes the pool when
	// MaxConns is 0.
	Workers int
	// Timescale holds the TimescaleDB settings, applied by Migrate when the
	// extension is present.
	Timescale TimescaleConfig
}

// TimescaleConfig holds the settings of the ticks hypertable. They are
// reconciled on every Migrate, so changing one and restarting updates the
// database.
type TimescaleConfig struct {
	// ChunkInterval is the time range of one hypertable chunk. A change
	// applies to chunks created afterwards.
	ChunkInterval time.Duration `env:"MDS_TS_CHUNK_INTERVAL" help:"TimescaleDB chunk interval of the ticks hypertable"`
	// CompressAfter compresses chunks older than this. 0 (or empty) turns
	// the compression policy off.
	CompressAfter time.Duration `env:"MDS_TS_COMPRESS_AFTER" help:"compress ticks chunks older than this (0 or empty: no compression policy)"`
	// Retention drops chunks older than this. 0 (the default) keeps
	// everything.
	Retention time.Duration `env:"MDS_TS_RETENTION" help:"drop ticks chunks older than this (0: keep everything)"`
	// CreateExtension runs CREATE EXTENSION IF NOT EXISTS timescaledb when
	// the server offers the extension and the database lacks it. Without the
	// privilege the store carries on with plain tables and a warning.
	CreateExtension bool `env:"MDS_TS_CREATE_EXTENSION" help:"create the timescaledb extension when available and permitted"`
	// RefreshInterval is how often the service refreshes the bars_1m
	// buckets its writes touched (backfill, late ticks) and counts new
	// chunks.
	RefreshInterval time.Duration `env:"MDS_TS_REFRESH_INTERVAL" help:"how often bars_1m is refreshed over the time ranges written since the last refresh, and new chunks are counted"`
}

// DefaultConfig returns the documented defaults. DatabaseURL and Group
// still have to be set.
func DefaultConfig() Config {
	return Config{
		AutoMigrate: true,
		Timescale: TimescaleConfig{
			ChunkInterval:   24 * time.Hour,
			CompressAfter:   7 * 24 * time.Hour,
			CreateExtension: true,
			RefreshInterval: time.Minute,
		},
	}
}

// Validate reports every invalid setting, naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("MDS_DATABASE_URL (or DATABASE_URL) must be set"))
	} else if err := secret.CheckDSN(c.DatabaseURL); err != nil {
		// Where the driver would cut such a string, part of the password
		// could land in the host or database name, and so in logs.
		errs = append(errs, fmt.Errorf("MDS_DATABASE_URL is malformed (%v); percent-encode '@', '/' and ':' in a URL password", err))
	}
	if c.MaxConns < 0 {
		errs = append(errs, errors.New("MDS_DB_MAX_CONNS must be >= 0"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("MDS_KAFKA_GROUP must be set (store offsets are kept per consumer group)"))
	}
	if c.Workers < 0 {
		errs = append(errs, errors.New("MDS_COORDINATOR_WORKERS must be >= 0"))
	}
	ts := c.Timescale
	if ts.ChunkInterval < time.Minute {
		errs = append(errs, errors.New("MDS_TS_CHUNK_INTERVAL must be at least 1m"))
	}
	if ts.CompressAfter < 0 {
		errs = append(errs, errors.New("MDS_TS_COMPRESS_AFTER must be >= 0"))
	}
	if ts.Retention < 0 {
		errs = append(errs, errors.New("MDS_TS_RETENTION must be >= 0"))
	}
	if ts.RefreshInterval < 100*time.Millisecond {
		errs = append(errs, errors.New("MDS_TS_REFRESH_INTERVAL must be at least 100ms"))
	}
	if ts.Retention > 0 && ts.Retention < barsRefreshStart {
		errs = append(errs, errors.New("MDS_TS_RETENTION must be 0 or at least "+barsRefreshStart.String()+" (the bars_1m refresh window)"))
	}
	return errors.Join(errs...)
}

// redactedConfig is Config without its methods, for printing.
type redactedConfig Config

func (c Config) redacted() redactedConfig {
	r := redactedConfig(c)
	if r.DatabaseURL != "" {
		r.DatabaseURL = secret.RedactDSN(r.DatabaseURL)
	}
	return r
}

// Format prints c as fmt would print the struct, for every verb, with the
// password of DatabaseURL redacted; so do %v and %+v of any struct holding
// a Config (the processor's settings).
func (c Config) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.redacted())
}

// MarshalJSON encodes c with the password of DatabaseURL redacted, for
// encoding/json and zap's reflection encoder (zap.Any).
func (c Config) MarshalJSON() ([]byte, error) { return json.Marshal(c.redacted()) }

// maxConns is the effective pool size.
func (c Config) maxConns() int32 {
	switch {
	case c.MaxConns > 0:
		return int32(c.MaxConns)
	case c.Workers > 0:
		return int32(c.Workers + 2)
	default:
		return 8
	}
}
