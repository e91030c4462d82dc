package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
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
		{"write timeout", func(c *Config) { c.WriteTimeout = 0 }, "MDS_DB_WRITE_TIMEOUT"},
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

func TestBeginSQLSetsTheServerTimeouts(t *testing.T) {
	cfg := testConfig("postgres://u:p@localhost/db")
	cfg.WriteTimeout = 10 * time.Second
	want := "BEGIN; SET LOCAL statement_timeout = 8000; SET LOCAL lock_timeout = 8000"
	if got := cfg.beginSQL(); got != want {
		t.Errorf("beginSQL() = %q, want %q", got, want)
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

// TestConfigPrintsRedacted prints and encodes a Config, and a struct
// holding one, every way a careless caller could.
func TestConfigPrintsRedacted(t *testing.T) {
	const pw = "Pr1nt-s3cret"
	cfg := DefaultConfig()
	cfg.DatabaseURL = "postgres://mds:" + pw + "@db.example:5432/ticks?sslmode=require"
	holder := struct {
		Store Config
		Ptr   *Config
	}{cfg, &cfg}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%10.3v"} {
		out = append(out, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, holder), fmt.Sprintf(verb, &cfg))
	}
	b, err := json.Marshal(holder)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(b))
	core, logs := observer.New(zapcore.DebugLevel)
	zap.New(core).Info("config", zap.Any("cfg", cfg), zap.Any("holder", holder))
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	for _, e := range logs.All() {
		buf, err := enc.EncodeEntry(e.Entry, e.Context)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.String())
	}
	for _, o := range out {
		if strings.Contains(o, pw) || strings.Contains(o, fmt.Sprintf("%x", pw)) {
			t.Errorf("password printed: %s", o)
		}
	}
	if s := fmt.Sprintf("%+v", holder); !strings.Contains(s, "DatabaseURL:postgres://mds:[redacted]@db.example:5432/ticks") ||
		!strings.Contains(s, "AutoMigrate:true") {
		t.Errorf("%%+v should show the redacted URL and the other fields: %s", s)
	}
}

func TestValidateRefusesDSNWithUnlocatablePassword(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Group = "g"
	cfg.DatabaseURL = "postgres://mds:pa/ss@word@h/db"
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "MDS_DATABASE_URL is malformed") {
		t.Fatalf("Validate: %v", err)
	}
	if strings.Contains(err.Error(), "ss@word") {
		t.Errorf("the error quotes the password: %v", err)
	}
}
