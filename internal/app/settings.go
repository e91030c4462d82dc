package app

import (
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/market-data-store/mds/internal/config"
	"github.com/market-data-store/mds/internal/consume"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/feedback"
	"github.com/market-data-store/mds/internal/kafkaconf"
	"github.com/market-data-store/mds/internal/secret"
	"github.com/market-data-store/mds/internal/store"
	"github.com/market-data-store/mds/internal/tick"
)

// Settings is every setting of the processor, one plain Config per package.
type Settings struct {
	Log         LogConfig
	HTTP        HTTPConfig
	Kafka       kafkaconf.Config
	Consume     consume.Config
	Coordinator coordinator.Config
	Store       store.Config
	Feedback    feedback.Config
	Limits      tick.Limits

	// Ignored lists the MDS_* variables that are set but are no setting,
	// most likely misspelled; Run warns about them.
	Ignored []string

	// PasswordFile, when set, supplies the database password, so that it
	// need not sit in an environment variable.
	PasswordFile string `env:"MDS_DATABASE_PASSWORD_FILE" help:"file holding the database password (e.g. a mounted Kubernetes secret); the URL must then hold none"`
}

// toolVariables are MDS_ variables of the tools around the service (tests,
// tickgen, the benchmark, deployment checks), not settings of the processor.
var toolVariables = []string{"MDS_TEST_", "MDS_IT_", "MDS_TICKGEN_", "MDS_PG_BINDIR", "MDS_TOOLS_DIR", "MDS_SECRETSCAN_"}

// LogConfig configures the zap logger.
type LogConfig struct {
	Level  string `env:"MDS_LOG_LEVEL" help:"log level: debug, info, warn, error"`
	Format string `env:"MDS_LOG_FORMAT" help:"log format: json, or console (the default of processor dev)"`
}

// HTTPConfig configures the metrics and health server.
type HTTPConfig struct {
	Addr  string `env:"MDS_HTTP_ADDR" help:"listen address of /metrics, /healthz and /readyz (empty disables)"`
	Pprof bool   `env:"MDS_HTTP_PPROF" help:"also serve Go's /debug/pprof/ profiles on MDS_HTTP_ADDR (keep that address private)"`
}

// DefaultSettings returns every package's documented defaults.
func DefaultSettings() Settings {
	return Settings{
		Log:         LogConfig{Level: "info", Format: "json"},
		HTTP:        HTTPConfig{Addr: ":9090"},
		Kafka:       kafkaconf.DefaultConfig(),
		Consume:     consume.DefaultConfig(),
		Coordinator: coordinator.DefaultConfig(),
		Store:       store.DefaultConfig(),
		Feedback:    feedback.DefaultConfig(),
		Limits:      tick.DefaultLimits(),
	}
}

// LoadSettings reads the environment over the defaults and validates the
// result. Every problem is reported at once, each naming its variable.
func LoadSettings(environ map[string]string) (Settings, error) {
	s := DefaultSettings()
	if err := config.Load(&s, environ); err != nil {
		return s, err
	}
	s.Ignored = config.Unknown(environ, config.Settings(&s), "MDS_", toolVariables...)
	if s.Store.DatabaseURL == "" {
		s.Store.DatabaseURL = strings.TrimSpace(environ["DATABASE_URL"])
	}
	if s.PasswordFile != "" && s.Store.DatabaseURL != "" {
		pw, err := secret.FromFile(s.PasswordFile)
		if err != nil {
			return s, fmt.Errorf("MDS_DATABASE_PASSWORD_FILE: %w", err)
		}
		dsn, err := secret.WithPassword(s.Store.DatabaseURL, pw)
		if err != nil {
			return s, fmt.Errorf("MDS_DATABASE_URL: %w", err)
		}
		s.Store.DatabaseURL = dsn
	}
	s.derive()
	return s, s.Validate()
}

// derive fills the settings one package takes from another's.
func (s *Settings) derive() {
	s.Store.Group = s.Consume.Group
	s.Store.Topics = s.Consume.Topics
	s.Store.Workers = s.Coordinator.Workers
}

// Validate checks every package's settings.
func (s Settings) Validate() error {
	var errs []error
	switch strings.ToLower(s.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("MDS_LOG_LEVEL must be debug, info, warn or error, not %q", s.Log.Level))
	}
	if s.Log.Format != "json" && s.Log.Format != "console" {
		errs = append(errs, fmt.Errorf("MDS_LOG_FORMAT must be json or console, not %q", s.Log.Format))
	}
	for _, v := range []interface{ Validate() error }{s.Kafka, s.Consume, s.Coordinator, s.Store, s.Feedback, s.Limits} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NewLogger builds the process logger.
func NewLogger(c LogConfig) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(strings.ToLower(c.Level))); err != nil {
		return nil, fmt.Errorf("MDS_LOG_LEVEL: %w", err)
	}
	zc := zap.NewProductionConfig()
	if c.Format == "console" {
		zc = zap.NewDevelopmentConfig()
		zc.DisableStacktrace = true
	}
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.OutputPaths, zc.ErrorOutputPaths = []string{"stderr"}, []string{"stderr"}
	return zc.Build()
}
