// Command tickgen produces synthetic market ticks to Kafka at a target rate
// and, unless told otherwise, slows down as the store's feedback topic asks
// (ok: full rate, soft: half, hard: stop). Once a second it prints the rate
// Kafka acknowledged, the rate allowed and the current level.
//
//	tickgen --brokers localhost:9092 --rate 5000 --symbols 100 --duration 1m
//	tickgen --count 100000 --obey-feedback=false
//
// Every flag can also be set by the MDS_ variable shown in --help; TLS and
// SASL use the processor's MDS_KAFKA_TLS_* and MDS_KAFKA_SASL_* variables.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/config"
	"github.com/market-data-store/mds/internal/kafkaconf"
	"github.com/market-data-store/mds/internal/tickgen"
)

type cli struct {
	Brokers []string `help:"Kafka seed brokers." env:"MDS_KAFKA_BROKERS" default:"localhost:9092" sep:","`
	Gen     genFlags `embed:""`
}

// genFlags are tickgen.Config's fields with kong's tags (flag help and
// defaults from tickgen.DefaultConfig): the types convert into each other, so
// a field added to tickgen.Config does not compile until it has a flag.
type genFlags struct {
	Topic          string        `help:"Topic the ticks are produced to." env:"MDS_TICKGEN_TOPIC" default:"${topic}"`
	Partitions     int32         `help:"Create the topic with this many partitions if it is missing (0: do not create)." env:"MDS_TICKGEN_PARTITIONS" default:"${partitions}"`
	Rate           float64       `help:"Target ticks per second at level ok." env:"MDS_TICKGEN_RATE" default:"${rate}"`
	Symbols        int           `help:"Number of distinct symbols." env:"MDS_TICKGEN_SYMBOLS" default:"${symbols}"`
	Count          int64         `help:"Stop after this many ticks (0: no limit)." env:"MDS_TICKGEN_COUNT" default:"0"`
	Duration       time.Duration `help:"Stop after this long (0: no limit)." env:"MDS_TICKGEN_DURATION" default:"0s"`
	FeedbackTopic  string        `help:"Feedback topic to follow." env:"MDS_FEEDBACK_TOPIC" default:"${feedback_topic}"`
	ObeyFeedback   bool          `help:"Scale the rate by the feedback level (ok 1, soft 0.5, hard 0)." env:"MDS_TICKGEN_OBEY_FEEDBACK" default:"${obey}" negatable:""`
	Seed           uint64        `help:"Random seed of prices, sizes and venues." env:"MDS_TICKGEN_SEED" default:"${seed}"`
	ReportInterval time.Duration `help:"Print progress this often." env:"MDS_TICKGEN_REPORT_INTERVAL" default:"${report}"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(err error) int { // a setting or flag that cannot work
		fmt.Fprintln(stderr, "tickgen:", err)
		return 2
	}
	def := tickgen.DefaultConfig()
	var c cli
	exit := -1
	parser, err := kong.New(&c,
		kong.Name("tickgen"),
		kong.Description("Produce synthetic market ticks to Kafka, slowing down as the feedback topic asks."),
		kong.Writers(stdout, stderr),
		kong.Exit(func(code int) { exit = code }),
		kong.Vars{
			"topic":          def.Topic,
			"partitions":     strconv.Itoa(int(def.Partitions)),
			"rate":           strconv.FormatFloat(def.Rate, 'g', -1, 64),
			"symbols":        strconv.Itoa(def.Symbols),
			"feedback_topic": def.FeedbackTopic,
			"obey":           strconv.FormatBool(def.ObeyFeedback),
			"seed":           strconv.FormatUint(def.Seed, 10),
			"report":         def.ReportInterval.String(),
		},
	)
	if err != nil {
		return fail(err)
	}
	_, err = parser.Parse(args)
	if exit >= 0 {
		return exit
	}
	if err != nil {
		return fail(err)
	}
	cfg := tickgen.Config(c.Gen)
	// TLS and SASL come from the same MDS_KAFKA_* variables as the
	// processor's (internal/kafkaconf); --brokers wins over the variable.
	kc := kafkaconf.DefaultConfig()
	if err := config.Load(&kc, config.Environ(os.Environ())); err != nil {
		return fail(err)
	}
	kc.Brokers = c.Brokers
	opts, err := kc.Opts(zap.NewNop())
	if err != nil {
		return fail(err)
	}
	g, err := tickgen.New(cfg, opts)
	if err != nil {
		return fail(err)
	}
	defer g.Close()
	fmt.Fprintf(stdout, "producing to %s at %g ticks/s over %d symbols (feedback %s, obey %t)\n",
		cfg.Topic, cfg.Rate, cfg.Symbols, cfg.FeedbackTopic, cfg.ObeyFeedback)
	p, err := g.Run(ctx, func(p tickgen.Progress) { fmt.Fprintln(stdout, p) })
	fmt.Fprintln(stdout, "done:", p)
	if err != nil {
		fmt.Fprintln(stderr, "tickgen:", err)
		return 1
	}
	return 0
}
