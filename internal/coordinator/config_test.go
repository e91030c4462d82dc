package coordinator

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestDefaultConfigIsValid(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if low, high := cfg.Watermarks(); low != 25000 || high != 40000 { // 50 % and 80 % of 50000
		t.Errorf("default watermarks %d/%d, want 25000/40000", low, high)
	}
	// Two processes on one host must not share a key on the feedback
	// topic: the default ends with the process id.
	if suffix := fmt.Sprintf("-%d", os.Getpid()); len(cfg.ID) <= len(suffix) || !strings.HasSuffix(cfg.ID, suffix) {
		t.Errorf("default ID %q, want the host name followed by %q", cfg.ID, suffix)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"capacity", func(c *Config) { c.Capacity = 0 }, "MDS_COORDINATOR_CAPACITY must be > 0"},
		{"low >= high", func(c *Config) { c.LowWatermark, c.HighWatermark = 80, 80 }, "MDS_COORDINATOR_LOW_WATERMARK (80) must be < MDS_COORDINATOR_HIGH_WATERMARK (80)"},
		{"low above default high", func(c *Config) { c.LowWatermark = 90 }, "MDS_COORDINATOR_LOW_WATERMARK (90) must be < MDS_COORDINATOR_HIGH_WATERMARK (80)"},
		{"high > capacity", func(c *Config) { c.HighWatermark = 101 }, "MDS_COORDINATOR_HIGH_WATERMARK (101) must be <= MDS_COORDINATOR_CAPACITY (100)"},
		{"negative watermark", func(c *Config) { c.LowWatermark = -1 }, "MDS_COORDINATOR_LOW_WATERMARK must be >= 0"},
		{"bytes", func(c *Config) { c.CapacityBytes = 0 }, "MDS_COORDINATOR_CAPACITY_BYTES must be > 0"},
		{"workers", func(c *Config) { c.Workers = 0 }, "MDS_COORDINATOR_WORKERS must be > 0"},
		{"batch", func(c *Config) { c.BatchSize = 101 }, "MDS_COORDINATOR_BATCH_SIZE (101) must be <= MDS_COORDINATOR_CAPACITY (100)"},
		{"flush", func(c *Config) { c.FlushInterval = 0 }, "MDS_COORDINATOR_FLUSH_INTERVAL must be > 0"},
		{"drain", func(c *Config) { c.DrainTimeout = 0 }, "MDS_COORDINATOR_DRAIN_TIMEOUT must be > 0"},
		{"id", func(c *Config) { c.ID = "" }, "MDS_COORDINATOR_ID must not be empty"},
		{"attempts", func(c *Config) { c.Retry.MaxAttempts = 0 }, "MDS_RETRY_MAX_ATTEMPTS must be >= 1"},
		{"backoff", func(c *Config) { c.Retry.MaxBackoff = 0 }, "MDS_RETRY_MAX_BACKOFF_MS must be >= MDS_RETRY_INITIAL_BACKOFF_MS"},
		{"multiplier", func(c *Config) { c.Retry.Multiplier = 0.5 }, "MDS_RETRY_BACKOFF_MULTIPLIER must be >= 1"},
		{"threshold", func(c *Config) { c.Breaker.FailureThreshold = 0 }, "MDS_CB_FAILURE_THRESHOLD must be >= 1"},
		{"half-open", func(c *Config) { c.Breaker.HalfOpenAfter = 0 }, "MDS_CB_HALF_OPEN_AFTER_SEC must be > 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want it to say %q", err, tc.want)
			}
		})
	}
}
