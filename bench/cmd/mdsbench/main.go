// Command mdsbench measures the processor against the limits of what it
// sits between, in one run, on one machine, with the same rows and the same
// table shape (`make bench`):
//
//  1. it starts a throwaway PostgreSQL (package pgtemp) and an embedded Kafka
//     broker (kfake) in this process (or, with -kafka real, an Apache Kafka
//     4.4 broker in its own process, package integration/kafka), creates the schema once with
//     `processor migrate` into a template database, and produces N ticks
//     (unique seq, key = symbol) to the ticks topic;
//  2. database ceiling: the same rows, decoded from the same records, sent
//     with pgx CopyFrom straight into an empty ticks table of a fresh
//     database, over 1 and over 2 connections (rows split); the best counts;
//  3. consume ceiling: a franz-go group consumer that reads and decodes every
//     record (tick.Decoder) and writes nothing;
//  4. processor end to end: the processor (built from ./cmd/processor, or
//     -processor) as a subprocess with default settings, from an empty
//     table until every record's offset is committed in mds_offsets; its
//     CPU time (/proc/<pid>/stat) and peak RSS (VmHWM); then exactly N rows,
//     no duplicate seq and no dead letters are checked;
//  5. latency: a fresh database and topic, the processor running, a paced
//     producer at a fixed rate; each tick's latency is the time its offset
//     became visible in mds_offsets (polled every few milliseconds) minus
//     the time it was produced;
//  6. peak memory (only with -big-records): a backlog of large records
//     (1 MiB by default, too_large for the processor's defaults) on a topic
//     of its own, the processor at default settings until every offset is
//     committed; its peak RSS (VmHWM) and the highest queue bytes it
//     reported;
//  7. a table on stdout and the same as JSON (-out).
//
// The method, its error bounds and how to read the output are in
// bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/market-data-store/mds/internal/tick"
)

// options are the command-line flags.
type options struct {
	n               int
	partitions      int
	symbols         int
	latencyRate     int
	latencyDuration time.Duration
	pollInterval    time.Duration
	durable         bool
	compression     string
	processor       string
	out             string
	timeout         time.Duration
	phaseTimeout    time.Duration
	set             envList
	skipDB          bool
	skipConsume     bool
	skipProcessor   bool
	skipLatency     bool
	pprofDir        string
	pprofSeconds    int
	rounds          int
	bigRecords      int
	bigRecordBytes  int
	kafka           string
}

// envList collects repeated -set KEY=VALUE flags.
type envList []string

func (e *envList) String() string { return strings.Join(*e, " ") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || !strings.HasPrefix(k, "MDS_") {
		return fmt.Errorf("want MDS_NAME=value, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("mdsbench", flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 1_000_000, "ticks to pre-produce for the throughput phases")
	fs.IntVar(&o.partitions, "partitions", 12, "partitions of each topic")
	fs.IntVar(&o.symbols, "symbols", 100, "distinct symbols (record keys)")
	fs.IntVar(&o.latencyRate, "latency-rate", 50_000, "offered load of the latency phase, ticks/s")
	fs.DurationVar(&o.latencyDuration, "latency-duration", 20*time.Second, "length of the latency phase")
	fs.DurationVar(&o.pollInterval, "poll-interval", 5*time.Millisecond, "how often mds_offsets is polled to time commits")
	fs.BoolVar(&o.durable, "durable", true, "run PostgreSQL with fsync and synchronous_commit on (as in production)")
	fs.StringVar(&o.compression, "compression", "snappy", "producer batch compression: snappy (franz-go's default), lz4, zstd, gzip or none")
	fs.StringVar(&o.processor, "processor", "", "processor binary to run (default: build ./cmd/processor into a temporary directory)")
	fs.StringVar(&o.out, "out", "bench/results/latest.json", "JSON result file (empty: none)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on the whole run")
	fs.DurationVar(&o.phaseTimeout, "phase-timeout", 5*time.Minute, "bound on each waiting step (all rows committed, group joined, ...)")
	fs.Var(&o.set, "set", "extra processor setting MDS_NAME=value (repeatable), to measure a non-default setting")
	fs.IntVar(&o.rounds, "rounds", 1, "times to repeat the ceilings and the processor run; the best of each counts")
	fs.BoolVar(&o.skipDB, "skip-db", false, "skip the database ceiling")
	fs.BoolVar(&o.skipConsume, "skip-consume", false, "skip the consume ceiling (the database ceiling then decodes the records itself)")
	fs.BoolVar(&o.skipProcessor, "skip-processor", false, "skip the processor end-to-end run")
	fs.BoolVar(&o.skipLatency, "skip-latency", false, "skip the latency phase")
	fs.IntVar(&o.bigRecords, "big-records", 0, "records of the peak-memory phase (0: skip it); every one is a too_large dead letter at default settings")
	fs.IntVar(&o.bigRecordBytes, "big-record-bytes", 1<<20, "value size of each record of the peak-memory phase")
	fs.StringVar(&o.pprofDir, "pprof", "", "run the processor with MDS_HTTP_PPROF=true and save its CPU and allocation profiles of each phase into this directory")
	fs.IntVar(&o.pprofSeconds, "pprof-seconds", 30, "length of the end-to-end CPU profile (from the processor start)")
	fs.StringVar(&o.kafka, "kafka", "kfake", "broker: kfake (in this process) or real (Apache Kafka 4.4 from Maven Central in its own process, package integration/kafka; needs java and mvn)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case o.n <= 0:
		return o, fmt.Errorf("-n must be > 0")
	case o.partitions <= 0:
		return o, fmt.Errorf("-partitions must be > 0")
	case o.symbols <= 0:
		return o, fmt.Errorf("-symbols must be > 0")
	case o.latencyRate <= 0 || o.latencyDuration <= 0:
		return o, fmt.Errorf("-latency-rate and -latency-duration must be > 0")
	case o.rounds <= 0:
		return o, fmt.Errorf("-rounds must be > 0")
	case o.pollInterval <= 0:
		return o, fmt.Errorf("-poll-interval must be > 0")
	case o.bigRecords < 0 || o.bigRecordBytes < 1024:
		return o, fmt.Errorf("-big-records must be >= 0 and -big-record-bytes >= 1024")
	case o.kafka != "kfake" && o.kafka != "real":
		return o, fmt.Errorf("-kafka must be kfake or real, not %q", o.kafka)
	}
	if _, err := compressionCodec(o.compression); err != nil {
		return o, err
	}
	return o, nil
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mdsbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	err = run(ctx, o)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mdsbench:", err)
		os.Exit(1)
	}
}

// runRound runs the ceilings and the processor end to end once, keeping
// the best of each in res.
func runRound(ctx context.Context, env *benchEnv, o options, round int, res *result) error {
	// The consume ceiling also yields the decoded rows the database
	// ceiling copies, so it runs when either is wanted.
	var ticks []tick.Tick
	rr := roundResult{Round: round}
	if !o.skipConsume || !o.skipDB {
		c, rows, err := consumeCeiling(ctx, env, o, fmt.Sprintf("bench-consume-%d", round))
		if err != nil {
			return fmt.Errorf("consume ceiling: %w", err)
		}
		if !o.skipConsume {
			rr.ConsumeRowsPerSec = c.RowsPerSec
			if res.ConsumeCeiling == nil || c.RowsPerSec > res.ConsumeCeiling.RowsPerSec {
				res.ConsumeCeiling = &c
			}
		}
		ticks = rows
	}
	if !o.skipDB {
		c, err := dbCeiling(ctx, env, o, ticks)
		if err != nil {
			return fmt.Errorf("database ceiling: %w", err)
		}
		rr.DBRowsPerSec = c.RowsPerSec
		if res.DBCeiling == nil || c.RowsPerSec > res.DBCeiling.RowsPerSec {
			res.DBCeiling = &c
		}
	}
	ticks = nil // about 100 MB the processor should not compete with
	if !o.skipProcessor {
		e, err := endToEnd(ctx, env, o, round)
		if err != nil {
			return fmt.Errorf("processor end to end: %w", err)
		}
		rr.ProcessorRowsPerSec, rr.ProcessorCPUPerM, rr.ProcessorPeakRSSMB = e.RowsPerSec, e.CPUPerM, e.PeakRSSMB
		if res.Processor == nil || e.RowsPerSec > res.Processor.RowsPerSec {
			res.Processor = &e
		}
	}
	res.Rounds = append(res.Rounds, rr)
	return nil
}

// progress prints one line with the time since the start of the run.
var start = time.Now()

func progress(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options) error {
	res := &result{Date: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(), Settings: settingsOf(o)}
	progress("mdsbench: %d ticks, %d partitions, %d symbols; machine: %d CPUs, %s", o.n, o.partitions, o.symbols, res.Machine.NumCPU, res.Machine.GoVersion)

	env, err := startEnv(ctx, o)
	if err != nil {
		return err
	}
	defer env.close()

	p, err := produceBulk(ctx, env, o)
	if err != nil {
		return err
	}
	res.Produce = p

	// Each round measures the ceilings and the processor back to back; the
	// best of each over the rounds counts, since on a shared machine the
	// best run is the least disturbed one.
	for round := 1; round <= o.rounds; round++ {
		if o.rounds > 1 {
			progress("round %d of %d", round, o.rounds)
		}
		if err := runRound(ctx, env, o, round, res); err != nil {
			return err
		}
	}
	if o.bigRecords > 0 {
		b, err := bigRecords(ctx, env, o)
		if err != nil {
			return fmt.Errorf("peak memory: %w", err)
		}
		res.BigRecords = &b
	}
	if !o.skipLatency {
		l, err := latency(ctx, env, o)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		res.Latency = &l
	}
	res.judge()
	res.print(os.Stdout)
	if o.out != "" {
		if err := res.write(o.out); err != nil {
			return err
		}
		progress("wrote %s", o.out)
	}
	return nil
}
