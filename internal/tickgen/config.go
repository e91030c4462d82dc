package tickgen

import (
	"errors"
	"math"
	"time"

	"github.com/market-data-store/mds/backpressure"
)

// Config configures a Generator. The Kafka connection (brokers, TLS, SASL)
// is given to New as client options.
type Config struct {
	Topic string `env:"MDS_TICKGEN_TOPIC" help:"topic the ticks are produced to"`
	// Partitions, when > 0, creates Topic with that many partitions if it
	// does not exist; an existing topic is left as it is.
	Partitions int32 `env:"MDS_TICKGEN_PARTITIONS" help:"create the tick topic with this many partitions if missing (0: do not create)"`
	// Rate is the target ticks per second at level ok; the feedback scale
	// multiplies it when ObeyFeedback is set.
	Rate    float64 `env:"MDS_TICKGEN_RATE" help:"target ticks per second at level ok"`
	Symbols int     `env:"MDS_TICKGEN_SYMBOLS" help:"number of distinct symbols"`
	// Count and Duration stop the generator, whichever comes first; zero
	// means no limit.
	Count    int64         `env:"MDS_TICKGEN_COUNT" help:"stop after this many ticks (0: no limit)"`
	Duration time.Duration `env:"MDS_TICKGEN_DURATION" help:"stop after this long (0: no limit)"`
	// FeedbackTopic is followed to report the level, and to obey it.
	FeedbackTopic string `env:"MDS_FEEDBACK_TOPIC" help:"feedback topic to follow"`
	ObeyFeedback  bool   `env:"MDS_TICKGEN_OBEY_FEEDBACK" help:"scale the rate by the feedback level (ok 1, soft 0.5, hard 0)"`
	// Seed makes the symbols' prices and sizes reproducible.
	Seed uint64 `env:"MDS_TICKGEN_SEED" help:"random seed of prices, sizes and venues"`
	// ReportInterval is how often progress is reported.
	ReportInterval time.Duration `env:"MDS_TICKGEN_REPORT_INTERVAL" help:"print progress this often"`
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Topic:          "market.ticks",
		Partitions:     6,
		Rate:           1000,
		Symbols:        50,
		FeedbackTopic:  backpressure.DefaultTopic,
		ObeyFeedback:   true,
		Seed:           1,
		ReportInterval: time.Second,
	}
}

// Validate reports settings that cannot work, naming the variable.
func (c Config) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("MDS_TICKGEN_TOPIC must not be empty"))
	}
	if c.Partitions < 0 {
		errs = append(errs, errors.New("MDS_TICKGEN_PARTITIONS must be ≥ 0"))
	}
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, errors.New("MDS_TICKGEN_RATE must be a positive number"))
	}
	if c.Symbols < 1 || c.Symbols > 1_000_000 {
		errs = append(errs, errors.New("MDS_TICKGEN_SYMBOLS must be between 1 and 1000000"))
	}
	if c.Count < 0 {
		errs = append(errs, errors.New("MDS_TICKGEN_COUNT must be ≥ 0"))
	}
	if c.Duration < 0 {
		errs = append(errs, errors.New("MDS_TICKGEN_DURATION must be ≥ 0"))
	}
	if c.FeedbackTopic == "" {
		errs = append(errs, errors.New("MDS_FEEDBACK_TOPIC must not be empty"))
	}
	if c.ReportInterval <= 0 {
		errs = append(errs, errors.New("MDS_TICKGEN_REPORT_INTERVAL must be > 0"))
	}
	return errors.Join(errs...)
}
