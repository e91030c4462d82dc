package feedback

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/secret"
)

// Config configures the upstream level and the ways feedback leaves the
// process. Whether anything is published at all is the coordinator's
// MDS_FB_ENABLE_FEEDBACK.
type Config struct {
	// Topic is the compacted feedback topic, keyed by coordinator id.
	Topic string `env:"MDS_FEEDBACK_TOPIC" help:"Kafka topic the backpressure level is published on (compacted, key = coordinator id)"`
	// MinDwell is the shortest time the upstream level is held once
	// entered, so that it never changes faster than producers can follow
	// (they hear of a change within a fetch, and a heartbeat interval at
	// worst).
	MinDwell time.Duration `env:"MDS_FB_MIN_DWELL" help:"shortest time the level published to producers is held before it changes (bare number: seconds)"`
	// LagAgeSoft makes the upstream level SOFT while the oldest record not
	// yet written is older than this, so that a long replay slows
	// producers before Kafka retention overtakes it; 0 never does.
	// Choose it well below the topic's retention.ms.
	LagAgeSoft time.Duration `env:"MDS_FB_LAG_AGE_SOFT" help:"SOFT upstream while the oldest unwritten record is older than this, to protect retention (0: never; bare number: seconds)"`

	TopicSettings TopicConfig
	// HeartbeatInterval is how often the current level is re-published on
	// the topic and to the webhook, so that a producer that starts late or
	// missed an event learns the level within one interval. Every event
	// carries it (heartbeat_interval), and followers keep counting a
	// coordinator for at least three intervals.
	HeartbeatInterval time.Duration `env:"MDS_FB_HEARTBEAT_INTERVAL" help:"re-publish the current level this often, on the topic and to the webhook (bare number: seconds)"`

	Webhook WebhookConfig
}

// TopicConfig is how the feedback topic is created when it is missing. An
// existing topic is left as it is (a topic that is not compacted is
// reported at start). The topic is always created with one partition,
// cleanup.policy=compact and min.cleanable.dirty.ratio=0.1, so that
// compaction keeps about one event per coordinator and a follower that
// starts reads minutes of heartbeats, not the topic's history.
type TopicConfig struct {
	// ReplicationFactor of the topic; -1 takes the broker's
	// default.replication.factor.
	ReplicationFactor int `env:"MDS_FB_TOPIC_REPLICATION_FACTOR" help:"replication factor of the feedback topic when it is created (-1: the broker's default)"`
	// MinInsyncReplicas of the topic; 0 takes the broker's
	// min.insync.replicas.
	MinInsyncReplicas int `env:"MDS_FB_TOPIC_MIN_INSYNC_REPLICAS" help:"min.insync.replicas of the feedback topic when it is created (0: the broker's default)"`
	// Segment is segment.ms: the active segment is never compacted, so
	// this bounds how much history a new follower reads.
	Segment time.Duration `env:"MDS_FB_TOPIC_SEGMENT" help:"segment.ms of the feedback topic when it is created: bounds the heartbeats a starting follower reads (bare number: seconds)"`
}

// WebhookConfig configures the HTTP webhook, named as in the original
// service.
type WebhookConfig struct {
	Enabled  bool   `env:"MDS_FB_ENABLE_HTTP_BROADCAST" help:"POST every level change, and the current level every MDS_FB_HEARTBEAT_INTERVAL, to MDS_FB_HTTP_ENDPOINT"`
	Endpoint string `env:"MDS_FB_HTTP_ENDPOINT" help:"webhook URL (http or https)"`
	// Timeout bounds one attempt, response included.
	Timeout time.Duration `env:"MDS_FB_HTTP_TIMEOUT" help:"timeout of one webhook attempt (bare number: seconds)"`
	// MaxRetries is the number of attempts after the first one.
	MaxRetries int `env:"MDS_FB_HTTP_MAX_RETRIES" help:"webhook retries after the first attempt (0-10)"`
	// Backoff is the base of the exponential backoff (internal/retry):
	// retry n waits Backoff×2^(n-1), at most MaxBackoff, jittered within
	// ±50 %.
	Backoff time.Duration `env:"MDS_FB_HTTP_BACKOFF" help:"base wait before the first webhook retry, doubled for each further retry (bare number: seconds)"`
	// Token, when set, is sent as "Authorization: Bearer <token>".
	Token     secret.Secret `env:"MDS_FB_HTTP_TOKEN" help:"bearer token sent to the webhook"`
	TokenFile string        `env:"MDS_FB_HTTP_TOKEN_FILE" help:"file holding the webhook bearer token (instead of MDS_FB_HTTP_TOKEN)"`
	// HMACSecret, when set, signs each body: header
	// "X-MDS-Signature: sha256=<hex of HMAC-SHA256(secret, body)>".
	HMACSecret     secret.Secret `env:"MDS_FB_HTTP_HMAC_SECRET" help:"key of the X-MDS-Signature HMAC-SHA256 of the webhook body"`
	HMACSecretFile string        `env:"MDS_FB_HTTP_HMAC_SECRET_FILE" help:"file holding the webhook HMAC key (instead of MDS_FB_HTTP_HMAC_SECRET)"`
}

// MaxBackoff caps one wait between webhook attempts.
const MaxBackoff = 30 * time.Second

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Topic:             backpressure.DefaultTopic,
		HeartbeatInterval: backpressure.DefaultHeartbeat,
		MinDwell:          5 * time.Second,
		LagAgeSoft:        6 * time.Hour,
		TopicSettings:     TopicConfig{ReplicationFactor: -1, Segment: 10 * time.Minute},
		Webhook: WebhookConfig{
			Timeout:    2500 * time.Millisecond,
			MaxRetries: 3,
			Backoff:    500 * time.Millisecond,
		},
	}
}

// Validate reports settings that cannot work, naming the variable.
func (c Config) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("MDS_FEEDBACK_TOPIC must not be empty"))
	}
	if c.HeartbeatInterval <= 0 {
		errs = append(errs, errors.New("MDS_FB_HEARTBEAT_INTERVAL must be > 0"))
	}
	if c.MinDwell < 0 {
		errs = append(errs, errors.New("MDS_FB_MIN_DWELL must be >= 0"))
	}
	if c.LagAgeSoft < 0 {
		errs = append(errs, errors.New("MDS_FB_LAG_AGE_SOFT must be >= 0"))
	}
	if t := c.TopicSettings; t.ReplicationFactor == 0 || t.ReplicationFactor < -1 || t.ReplicationFactor > math.MaxInt16 {
		errs = append(errs, fmt.Errorf("MDS_FB_TOPIC_REPLICATION_FACTOR must be -1 (broker default) or between 1 and %d, not %d", math.MaxInt16, t.ReplicationFactor))
	}
	if c.TopicSettings.MinInsyncReplicas < 0 {
		errs = append(errs, errors.New("MDS_FB_TOPIC_MIN_INSYNC_REPLICAS must be >= 0"))
	}
	if c.TopicSettings.Segment < time.Second {
		errs = append(errs, errors.New("MDS_FB_TOPIC_SEGMENT must be at least 1s"))
	}
	return errors.Join(append(errs, c.Webhook.Validate())...)
}

// Validate reports webhook settings that cannot work, naming the variable.
// A disabled webhook is not checked.
func (c WebhookConfig) Validate() error {
	if !c.Enabled {
		return nil
	}
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("MDS_FB_HTTP_ENDPOINT must be set when MDS_FB_ENABLE_HTTP_BROADCAST is true"))
	} else if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL is not quoted: it may carry credentials.
		errs = append(errs, errors.New("MDS_FB_HTTP_ENDPOINT must be an http:// or https:// URL with a host"))
	}
	if c.Timeout <= 0 {
		errs = append(errs, errors.New("MDS_FB_HTTP_TIMEOUT must be > 0"))
	}
	if c.MaxRetries < 0 || c.MaxRetries > 10 {
		errs = append(errs, fmt.Errorf("MDS_FB_HTTP_MAX_RETRIES must be between 0 and 10, not %d", c.MaxRetries))
	}
	if c.Backoff <= 0 {
		errs = append(errs, errors.New("MDS_FB_HTTP_BACKOFF must be > 0"))
	}
	if !c.Token.IsZero() && c.TokenFile != "" {
		errs = append(errs, errors.New("set MDS_FB_HTTP_TOKEN or MDS_FB_HTTP_TOKEN_FILE, not both"))
	}
	if !c.HMACSecret.IsZero() && c.HMACSecretFile != "" {
		errs = append(errs, errors.New("set MDS_FB_HTTP_HMAC_SECRET or MDS_FB_HTTP_HMAC_SECRET_FILE, not both"))
	}
	return errors.Join(errs...)
}
