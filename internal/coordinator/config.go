package coordinator

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/market-data-store/mds/internal/retry"
)

// Config configures a Coordinator. Capacity, watermarks and batch size
// count ticks: every record of a chunk, dead letters included.
type Config struct {
	// ID names this coordinator in feedback events (the record key on the
	// feedback topic) and in the coordinator_id label of
	// mds_feedback_events_total. It must be unique among the processes
	// publishing on one feedback topic: a stopping process publishes a
	// tombstone for its key, which would erase another's level. The
	// default, the host name and the process id ("host-4242"), is unique
	// even with several processes on one host; a deployment may set a
	// stable unique name instead, such as the pod name.
	ID string `env:"MDS_COORDINATOR_ID" docdefault:"host name-process id" help:"coordinator id in feedback events (feedback topic key; unique per process) and the coordinator_id label"`
	// Capacity bounds the ticks queued and not yet taken by a worker.
	// Submit blocks above it. The default is 50000, not the original
	// service's 10000: a partition has at most one batch in flight, so
	// the queue must hold the next batches of the other partitions while
	// writes are under way. Measured by make bench on 2 cores (backlog of
	// 1M ticks, 12 partitions): 10000 kept about one write in flight and
	// paused the partitions about 100 times (146k rows/s, 2.6 CPU s per
	// million ticks, 52 MB); 50000 keeps two to three in flight (273k
	// rows/s, 2.0 CPU s, 81 MB).
	Capacity int `env:"MDS_COORDINATOR_CAPACITY" help:"queue capacity in ticks; Submit blocks when full"`
	// CapacityBytes bounds the memory of the queued chunks
	// (tick.Chunk.Bytes: records, raw keys and values, dead letters), as
	// Capacity bounds their ticks: Submit blocks, and the level rises,
	// with whichever is fuller (the watermarks apply to both in
	// proportion). A batch holds at most the same share of it as BatchSize
	// of Capacity, so the coordinator holds at most about CapacityBytes ×
	// (1 + Workers × BatchSize / Capacity), 90 MiB with the defaults. The
	// default, 64 MiB, is never reached by ordinary ticks (50,000 queued
	// ticks of 170 bytes take about 17 MB) and keeps a backlog of 1 MiB
	// records, with franz-go's fetch buffers and the Go runtime, under the
	// 512 MiB memory limit of the deployment (see bench/cmd/rssbench).
	CapacityBytes int `env:"MDS_COORDINATOR_CAPACITY_BYTES" help:"queue capacity in bytes of records held; Submit blocks and the level rises with whichever of ticks and bytes is fuller"`
	// HighWatermark is the queue size at which the level becomes HARD.
	// 0 means 80% of Capacity.
	HighWatermark int `env:"MDS_COORDINATOR_HIGH_WATERMARK" help:"queue size that raises HARD (0: 80% of capacity)"`
	// LowWatermark is the queue size at or below which the level is OK.
	// 0 means 50% of Capacity.
	LowWatermark int `env:"MDS_COORDINATOR_LOW_WATERMARK" help:"queue size at or below which the level is OK (0: 50% of capacity)"`
	// Workers is the number of concurrent writers, each holding at most one
	// batch (and, in the store, one connection).
	Workers int `env:"MDS_COORDINATOR_WORKERS" help:"concurrent batch writers"`
	// BatchSize is the number of ticks at which a worker writes without
	// waiting for FlushInterval. It must not exceed Capacity. The default,
	// 5000, is a tenth of the default capacity: one COPY of 5000 rows
	// amortises the commit and the offset update to well under a
	// microsecond per row, and 4 workers hold at most 20000 ticks (a few
	// MB) in flight. Measured: 10000 gains about 5 % of throughput in a
	// backlog but raises p99 latency at 50,000 ticks/s from 170 to 255 ms.
	BatchSize int `env:"MDS_COORDINATOR_BATCH_SIZE" help:"ticks per write transaction"`
	// FlushInterval is the longest a queued tick waits for a batch to fill.
	FlushInterval time.Duration `env:"MDS_COORDINATOR_FLUSH_INTERVAL" help:"write a partial batch once its oldest tick waited this long"`
	// DrainTimeout bounds Drain at shutdown.
	DrainTimeout time.Duration `env:"MDS_COORDINATOR_DRAIN_TIMEOUT" help:"longest wait for the queue to be written at shutdown"`
	// EnableFeedback turns the feedback to producers on: the application
	// publishes the upstream level on the feedback topic (and the webhook
	// if enabled); when false nothing leaves the process. The coordinator
	// itself does not read it: the queue level, Current, the level
	// metrics and partition pausing (which the consumer drives from
	// Current) are the same either way.
	EnableFeedback bool `env:"MDS_FB_ENABLE_FEEDBACK" help:"publish the backpressure level to producers (feedback topic, webhook); partition pausing is queue-driven and stays on"`

	Retry   RetryConfig
	Breaker BreakerConfig
}

// RetryConfig is the retry schedule of one failing batch. A batch is
// retried until it commits (or its partitions go): the waits between its
// attempts are InitialBackoff, then Multiplier times longer each time up
// to MaxBackoff; with Jitter each wait is drawn within ±50% of that. So
// once the database answers again the batch commits within one wait, at
// most MaxBackoff (1.5 × with jitter).
type RetryConfig struct {
	// MaxAttempts is how many attempts of one batch fail before the
	// failure is logged as a warning; earlier ones log at debug level.
	// An error that cannot succeed (not temporary) is a warning at once.
	MaxAttempts    int           `env:"MDS_RETRY_MAX_ATTEMPTS" help:"failed attempts of a batch logged at debug level before a warning (retries never stop)"`
	InitialBackoff time.Duration `env:"MDS_RETRY_INITIAL_BACKOFF_MS" help:"first wait between attempts (bare number: milliseconds)"`
	MaxBackoff     time.Duration `env:"MDS_RETRY_MAX_BACKOFF_MS" help:"longest wait between attempts: writing resumes at most this long after the database does (bare number: milliseconds)"`
	Multiplier     float64       `env:"MDS_RETRY_BACKOFF_MULTIPLIER" help:"growth factor of the wait between attempts"`
	Jitter         bool          `env:"MDS_RETRY_JITTER" help:"randomise each wait within ±50%"`
}

// BreakerConfig keeps the settings of the original service's circuit
// breaker. There is no breaker any more: it made workers wait a fixed time
// after the database was back, and the retry waits already bound the load
// a failing database sees (one attempt per worker per wait). What is left
// is its signal: mds_coord_circuit_state is 1 ("open") while some batch
// has failed FailureThreshold consecutive attempts, 0 once none has.
type BreakerConfig struct {
	// FailureThreshold consecutive failed attempts of one batch set
	// mds_coord_circuit_state to 1.
	FailureThreshold int `env:"MDS_CB_FAILURE_THRESHOLD" help:"consecutive failed attempts of a batch after which mds_coord_circuit_state reads 1 (failing)"`
	// HalfOpenAfter is accepted so that existing configurations still
	// load, and has no effect: writing resumes as soon as the database
	// answers (see RetryConfig).
	HalfOpenAfter time.Duration `env:"MDS_CB_HALF_OPEN_AFTER_SEC" help:"no effect (kept so that existing configurations load): writing resumes within one retry wait of the database (bare number: seconds)"`
}

// DefaultConfig returns the documented defaults. ID is the host name (or
// "mds" if it cannot be read) and the process id: "host-4242".
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "mds"
	}
	return Config{
		ID:             fmt.Sprintf("%s-%d", host, os.Getpid()),
		Capacity:       50000,
		CapacityBytes:  64 << 20,
		Workers:        4,
		BatchSize:      5000,
		FlushInterval:  250 * time.Millisecond,
		DrainTimeout:   30 * time.Second,
		EnableFeedback: true,
		Retry: RetryConfig{
			MaxAttempts:    5,
			InitialBackoff: 50 * time.Millisecond,
			MaxBackoff:     2 * time.Second,
			Multiplier:     2.0,
			Jitter:         true,
		},
		Breaker: BreakerConfig{
			FailureThreshold: 5,
			HalfOpenAfter:    60 * time.Second,
		},
	}
}

// policy is the wait between attempts of a failing batch.
func (r RetryConfig) policy() retry.Policy {
	return retry.Policy{Initial: r.InitialBackoff, Max: r.MaxBackoff, Multiplier: r.Multiplier, Jitter: r.Jitter}
}

// batchBytes is the byte limit of one batch: the share of CapacityBytes
// that BatchSize is of Capacity (at least one byte).
func (c Config) batchBytes() int {
	return max(int(int64(c.CapacityBytes)*int64(c.BatchSize)/int64(c.Capacity)), 1)
}

// Watermarks returns the low and high watermarks in effect, resolving the
// 0 defaults (50% and 80% of Capacity).
func (c Config) Watermarks() (low, high int) {
	low, high = c.LowWatermark, c.HighWatermark
	if low == 0 {
		low = c.Capacity / 2
	}
	if high == 0 {
		high = c.Capacity * 8 / 10
	}
	return low, high
}

// Validate reports every invalid setting, naming its variable.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.ID != "", "MDS_COORDINATOR_ID must not be empty")
	check(c.Capacity > 0, "MDS_COORDINATOR_CAPACITY must be > 0")
	check(c.CapacityBytes > 0, "MDS_COORDINATOR_CAPACITY_BYTES must be > 0")
	check(c.HighWatermark >= 0, "MDS_COORDINATOR_HIGH_WATERMARK must be >= 0")
	check(c.LowWatermark >= 0, "MDS_COORDINATOR_LOW_WATERMARK must be >= 0")
	if low, high := c.Watermarks(); c.Capacity > 0 && c.HighWatermark >= 0 && c.LowWatermark >= 0 {
		check(low < high, "MDS_COORDINATOR_LOW_WATERMARK (%d) must be < MDS_COORDINATOR_HIGH_WATERMARK (%d)", low, high)
		check(high <= c.Capacity, "MDS_COORDINATOR_HIGH_WATERMARK (%d) must be <= MDS_COORDINATOR_CAPACITY (%d)", high, c.Capacity)
	}
	check(c.Workers > 0, "MDS_COORDINATOR_WORKERS must be > 0")
	check(c.BatchSize > 0, "MDS_COORDINATOR_BATCH_SIZE must be > 0")
	check(c.BatchSize <= c.Capacity, "MDS_COORDINATOR_BATCH_SIZE (%d) must be <= MDS_COORDINATOR_CAPACITY (%d)", c.BatchSize, c.Capacity)
	check(c.FlushInterval > 0, "MDS_COORDINATOR_FLUSH_INTERVAL must be > 0")
	check(c.DrainTimeout > 0, "MDS_COORDINATOR_DRAIN_TIMEOUT must be > 0")
	check(c.Retry.MaxAttempts >= 1, "MDS_RETRY_MAX_ATTEMPTS must be >= 1")
	check(c.Retry.InitialBackoff > 0, "MDS_RETRY_INITIAL_BACKOFF_MS must be > 0")
	check(c.Retry.MaxBackoff >= c.Retry.InitialBackoff, "MDS_RETRY_MAX_BACKOFF_MS must be >= MDS_RETRY_INITIAL_BACKOFF_MS")
	check(c.Retry.Multiplier >= 1, "MDS_RETRY_BACKOFF_MULTIPLIER must be >= 1")
	check(c.Breaker.FailureThreshold >= 1, "MDS_CB_FAILURE_THRESHOLD must be >= 1")
	check(c.Breaker.HalfOpenAfter > 0, "MDS_CB_HALF_OPEN_AFTER_SEC must be > 0")
	return errors.Join(errs...)
}
