package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/market-data-store/mds/internal/pgtest"
)

func TestConfigValidate(t *testing.T) {
	valid := testConfig("postgres://u:p@localhost/db")
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"no url", func(c *Config) { c.DatabaseURL = "" }, "MDS_DATABASE_URL"},
		{"negative pool", func(c *Config) { c.MaxConns = -1 }, "MDS_DB_MAX_CONNS"},
		{"no group", func(c *Config) { c.Group = "" }, "MDS_KAFKA_GROUP"},
		{"tiny chunks", func(c *Config) { c.Timescale.ChunkInterval = time.Second }, "MDS_TS_CHUNK_INTERVAL"},
		{"negative compression", func(c *Config) { c.Timescale.CompressAfter = -time.Hour }, "MDS_TS_COMPRESS_AFTER"},
		{"negative retention", func(c *Config) { c.Timescale.Retention = -time.Hour }, "MDS_TS_RETENTION"},
		{"retention inside the bars window", func(c *Config) { c.Timescale.Retention = time.Minute }, "MDS_TS_RETENTION"},
	}
	for _, c := range cases {
		cfg := valid
		c.mut(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want it to name %s", c.name, err, c.want)
		}
	}
}

func TestPoolSize(t *testing.T) {
	cfg := DefaultConfig()
	if got := cfg.maxConns(); got != 8 {
		t.Errorf("default pool = %d, want 8", got)
	}
	cfg.Workers = 4
	if got := cfg.maxConns(); got != 6 {
		t.Errorf("pool for 4 workers = %d, want 6", got)
	}
	cfg.MaxConns = 3
	if got := cfg.maxConns(); got != 3 {
		t.Errorf("explicit pool = %d, want 3", got)
	}
}

// TestPasswordStaysOutOfLogsAndErrors opens with a DSN that carries a
// password, then with a malformed one, and looks for the password in
// everything the store said.
func TestPasswordStaysOutOfLogsAndErrors(t *testing.T) {
	const pw = "s3cret-Pa55"
	core, logs := observer.New(zap.DebugLevel)
	ctx := testCtx(t)

	cfg := testConfig("postgres://mds:" + pw + "@127.0.0.1:1/nodb?connect_timeout=1")
	cfg.AutoMigrate = true // makes Open connect, and fail
	_, err := Open(ctx, cfg, zap.New(core), prometheus.NewRegistry())
	if err == nil {
		t.Fatal("Open of an unreachable database succeeded")
	}
	if !IsTemporary(err) {
		t.Errorf("unreachable database: %v is not temporary", err)
	}
	errs := []error{err}

	cfg.DatabaseURL = "postgres://mds:" + pw + "@127.0.0.1:port/db"
	_, err = Open(ctx, cfg, zap.New(core), prometheus.NewRegistry())
	if err == nil {
		t.Fatal("Open of a malformed DSN succeeded")
	}
	errs = append(errs, err)

	for _, err := range errs {
		if strings.Contains(err.Error(), pw) {
			t.Errorf("error shows the password: %v", err)
		}
	}
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += fmt.Sprintf(" %s=%v", k, v)
		}
		if strings.Contains(line, pw) {
			t.Errorf("log shows the password: %s", line)
		}
	}
	if logs.Len() == 0 {
		t.Error("the test looked at no log lines")
	}
}

func TestOpenRegistersMetricsOnce(t *testing.T) {
	url := pgtest.NewDatabase(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(url)
	cfg.AutoMigrate = false
	s, err := Open(context.Background(), cfg, zap.NewNop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(context.Background(), cfg, zap.NewNop(), reg); err == nil {
		t.Fatal("a second Store on the same registry must fail, not share counters silently")
	}
}

// TestCloseStopsEverything checks that a Store leaves no goroutine behind
// once Close returns (pgxpool's health check included).
func TestCloseStopsEverything(t *testing.T) {
	before := goleak.IgnoreCurrent()
	url := pgtest.NewDatabase(t)
	s, err := Open(testCtx(t), testConfig(url), zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(testCtx(t), batch(chunk("ticks", 0, -1, 10, "A"))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	goleak.VerifyNone(t, before)
}
