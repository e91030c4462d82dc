package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/app"
)

func TestDefaultsValidateOnceTheDatabaseIsNamed(t *testing.T) {
	s, err := app.LoadSettings(map[string]string{"MDS_DATABASE_URL": "postgres://u@h/db"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Store.Group != "mds-processor" || s.Store.Workers != 4 {
		t.Fatalf("derived settings not filled: group %q workers %d", s.Store.Group, s.Store.Workers)
	}
	if _, err := app.LoadSettings(nil); err == nil || !strings.Contains(err.Error(), "MDS_DATABASE_URL") {
		t.Fatalf("missing database URL: error %v does not name MDS_DATABASE_URL", err)
	}
}

func TestDatabaseURLFallsBackToDATABASE_URL(t *testing.T) {
	s, err := app.LoadSettings(map[string]string{"DATABASE_URL": "postgres://u@h/fallback"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Store.DatabaseURL != "postgres://u@h/fallback" {
		t.Fatalf("got %q", s.Store.DatabaseURL)
	}
}

func TestBadSettingsAreNamed(t *testing.T) {
	for env, want := range map[string]string{
		"MDS_COORDINATOR_CAPACITY=-5":       "MDS_COORDINATOR_CAPACITY",
		"MDS_COORDINATOR_CAPACITY=lots":     "MDS_COORDINATOR_CAPACITY",
		"MDS_COORDINATOR_LOW_WATERMARK=900": "MDS_COORDINATOR_LOW_WATERMARK",
		"MDS_KAFKA_START_OFFSET=middle":     "MDS_KAFKA_START_OFFSET",
		"MDS_LOG_LEVEL=loud":                "MDS_LOG_LEVEL",
		"MDS_RETRY_INITIAL_BACKOFF_MS=fast": "MDS_RETRY_INITIAL_BACKOFF_MS",
		"MDS_FB_HTTP_TIMEOUT=-1":            "MDS_FB_HTTP_TIMEOUT",
	} {
		k, v, _ := strings.Cut(env, "=")
		_, err := app.LoadSettings(map[string]string{"MDS_DATABASE_URL": "postgres://h/db", "MDS_COORDINATOR_HIGH_WATERMARK": "800", k: v})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v does not name %s", env, err, want)
		}
	}
}

func TestPasswordFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte("s3cr3t-planted\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := app.LoadSettings(map[string]string{"MDS_DATABASE_URL": "postgres://app@db:5432/ticks", "MDS_DATABASE_PASSWORD_FILE": f})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(s.Store.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != "s3cr3t-planted" || cfg.User != "app" || cfg.Host != "db" {
		t.Fatalf("password not injected: user %q host %q", cfg.User, cfg.Host)
	}
	_, err = app.LoadSettings(map[string]string{"MDS_DATABASE_URL": "postgres://h/db", "MDS_DATABASE_PASSWORD_FILE": "/nonexistent/pw"})
	if err == nil || !strings.Contains(err.Error(), "MDS_DATABASE_PASSWORD_FILE") {
		t.Fatalf("missing password file: %v", err)
	}
}

func TestGraphValidates(t *testing.T) {
	s, err := app.LoadSettings(map[string]string{"MDS_DATABASE_URL": "postgres://u@127.0.0.1:1/db"})
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.ValidateApp(app.Module(context.Background(), s, zap.NewNop(), app.NewRegistry())); err != nil {
		t.Fatal(err)
	}
}

func TestMisspelledVariablesAreReported(t *testing.T) {
	s, err := app.LoadSettings(map[string]string{"MDS_DATABASE_URL": "postgres://h/db", "MDS_COORDINATR_CAPACITY": "5", "MDS_TEST_DATABASE_URL": "x"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Ignored, ",") != "MDS_COORDINATR_CAPACITY" {
		t.Fatalf("ignored = %v", s.Ignored)
	}
}
