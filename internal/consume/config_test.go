package consume

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultConfigIsValid(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	for _, tc := range []struct {
		env    string
		mutate func(*Config)
	}{
		{"MDS_KAFKA_TOPICS", func(c *Config) { c.Topics = nil }},
		{"MDS_KAFKA_TOPICS", func(c *Config) { c.Topics = []string{"a", ""} }},
		{"MDS_KAFKA_GROUP", func(c *Config) { c.Group = "" }},
		{"MDS_KAFKA_GROUP_PROTOCOL", func(c *Config) { c.GroupProtocol = "eager" }},
		{"MDS_KAFKA_INSTANCE_ID", func(c *Config) { c.GroupProtocol, c.InstanceID = ProtocolConsumer, "pod-0" }},
		{"MDS_KAFKA_START_OFFSET", func(c *Config) { c.StartOffset = "beginning" }},
		{"MDS_KAFKA_SESSION_TIMEOUT", func(c *Config) { c.SessionTimeout = 0 }},
		{"MDS_KAFKA_REBALANCE_TIMEOUT", func(c *Config) { c.RebalanceTimeout = -time.Second }},
		{"MDS_KAFKA_HEARTBEAT_INTERVAL", func(c *Config) { c.HeartbeatInterval = 20 * time.Second }},
		{"MDS_KAFKA_FETCH_MAX_WAIT", func(c *Config) { c.FetchMaxWait = 5 * time.Second }},
		{"MDS_KAFKA_FETCH_MAX_BYTES", func(c *Config) { c.FetchMaxBytes = 0 }},
		{"MDS_KAFKA_FETCH_MAX_PARTITION_BYTES", func(c *Config) { c.FetchMaxPartBytes = c.FetchMaxBytes + 1 }},
		{"MDS_KAFKA_REVOKE_TIMEOUT", func(c *Config) { c.RevokeTimeout = c.RebalanceTimeout }},
	} {
		t.Run(tc.env, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.env) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.env)
			}
		})
	}
}
