package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/app"
	"github.com/market-data-store/mds/internal/config"
	"github.com/market-data-store/mds/internal/pgtemp"
	"github.com/market-data-store/mds/internal/tickgen"
)

type devCmd struct {
	KafkaPort  int  `default:"9092" help:"Port of the embedded Kafka broker on 127.0.0.1."`
	Partitions int  `default:"12" help:"Partitions of the ticks topic."`
	Rate       int  `default:"5000" help:"Synthetic ticks per second (0: no generator)."`
	Symbols    int  `default:"50" help:"Distinct symbols the generator uses."`
	KafkaOnly  bool `help:"Run only the embedded Kafka broker (and the generator), for a processor or producer started elsewhere."`
}

// devDefaults are the settings dev mode uses unless the environment says
// otherwise.
func devDefaults(port int) map[string]string {
	return map[string]string{
		"MDS_KAFKA_BROKERS":            "127.0.0.1:" + strconv.Itoa(port),
		"MDS_LOG_FORMAT":               "console",
		"MDS_HTTP_ADDR":                "127.0.0.1:9090",
		"MDS_KAFKA_SESSION_TIMEOUT":    "10s",
		"MDS_KAFKA_HEARTBEAT_INTERVAL": "1s",
	}
}

// notEmbedded reports whether an environment variable would point dev mode
// at a Kafka cluster other than the embedded one: the brokers, TLS and SASL
// settings, and the AWS_ variables the settings read (the MSK IAM
// credentials). Other AWS_ variables (AWS_CA_BUNDLE, AWS_PROFILE, ...) are
// no concern of the processor and are not named.
func notEmbedded(k string) bool {
	return k == "MDS_KAFKA_BROKERS" || strings.HasPrefix(k, "MDS_KAFKA_TLS_") ||
		strings.HasPrefix(k, "MDS_KAFKA_SASL_") || awsSettings[k]
}

// awsSettings are the AWS_ variables among the processor's settings.
var awsSettings = func() map[string]bool {
	m := map[string]bool{}
	for _, s := range config.Settings(app.DefaultSettings()) {
		if strings.HasPrefix(s.Key, "AWS_") {
			m[s.Key] = true
		}
	}
	return m
}()

func (d devCmd) Run(g *globals) error {
	env := make(map[string]string, len(g.env)+8)
	var ignored []string
	for k, v := range g.env {
		// Dev mode always uses its embedded broker: brokers and
		// credentials exported for a real cluster must not send synthetic
		// ticks there, nor join the real group.
		if notEmbedded(k) {
			ignored = append(ignored, k)
			continue
		}
		env[k] = v
	}
	for k, v := range devDefaults(d.KafkaPort) {
		if _, set := env[k]; !set {
			env[k] = v
		}
	}
	if len(ignored) > 0 {
		sort.Strings(ignored)
		fmt.Fprintf(g.stderr, "dev: ignoring %s: dev mode uses its embedded broker only\n", strings.Join(ignored, ", "))
	}
	ctx := g.ctx

	// The database comes first: settings validation needs its URL.
	if env["MDS_DATABASE_URL"] == "" && env["DATABASE_URL"] == "" && !d.KafkaOnly {
		fmt.Fprintln(g.stderr, "dev: starting a throwaway PostgreSQL (initdb into a temporary directory)...")
		pg, err := pgtemp.Start(ctx, pgtemp.Options{})
		if err != nil {
			return fmt.Errorf("starting PostgreSQL: %w (or set MDS_DATABASE_URL)", err)
		}
		defer func() {
			fmt.Fprintln(g.stderr, "dev: removing the throwaway PostgreSQL")
			_ = pg.Stop()
		}()
		env["MDS_DATABASE_URL"] = pg.URL
		ts := "without TimescaleDB (not installed for this server): plain tables"
		if pg.Timescale {
			ts = "with TimescaleDB preloaded: ticks is a hypertable, bars_1m is kept"
		} else if os.Getenv(pgtemp.EnvNoTimescale) != "" {
			ts = "without TimescaleDB (" + pgtemp.EnvNoTimescale + " is set): plain tables"
		}
		fmt.Fprintf(g.stderr, "dev: PostgreSQL at %s, %s\n", pg.URL, ts)
	}
	s, err := app.LoadSettings(env)
	if err != nil && d.KafkaOnly {
		// No database here: only the Kafka-side settings have to be right.
		s = app.DefaultSettings()
		if err := config.Load(&s, env); err != nil {
			return err
		}
		err = errors.Join(s.Kafka.Validate(), s.Consume.Validate(), s.Feedback.Validate())
	}
	if err != nil {
		return err
	}
	log, err := app.NewLogger(s.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()

	kf, err := kfake.NewCluster(
		kfake.Ports(d.KafkaPort),
		kfake.SeedTopics(int32(d.Partitions), s.Consume.Topics...),
		kfake.GroupMinSessionTimeout(time.Second),
	)
	if err != nil {
		return fmt.Errorf("starting embedded Kafka on 127.0.0.1:%d: %w (is the port taken? use --kafka-port)", d.KafkaPort, err)
	}
	defer kf.Close()
	fmt.Fprintf(g.stderr, "dev: embedded Kafka at %v, topics %v (%d partitions)\n", kf.ListenAddrs(), s.Consume.Topics, d.Partitions)

	ko, err := s.Kafka.Opts(log.Named("kafka"))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait: stops the generator and the status line
	var produced atomic.Pointer[tickgen.Progress]
	if d.Rate > 0 {
		cfg := tickgen.DefaultConfig()
		cfg.Topic = s.Consume.Topics[0]
		cfg.Rate = float64(d.Rate)
		cfg.Symbols = d.Symbols
		cfg.Partitions = 0 // the embedded broker already has the topic
		cfg.FeedbackTopic = s.Feedback.Topic
		cfg.ObeyFeedback = s.Coordinator.EnableFeedback
		gen, err := tickgen.New(cfg, ko)
		if err != nil {
			return err
		}
		wg.Go(func() {
			defer gen.Close()
			_, err := gen.Run(runCtx, func(p tickgen.Progress) { produced.Store(&p) })
			if err != nil && runCtx.Err() == nil {
				log.Error("tick generator stopped", zap.Error(err))
			}
		})
	}
	if d.KafkaOnly {
		fmt.Fprintln(g.stderr, "dev: Kafka only; Ctrl-C stops")
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if p := produced.Load(); p != nil {
					fmt.Fprintln(g.stdout, "produced", p)
				}
			}
		}
	}
	reg := app.NewRegistry()
	wg.Go(func() { printStatus(runCtx, reg, &produced, g.stdout) })
	return app.Run(ctx, s, log, reg)
}

// printStatus prints one line a second: ticks/s produced (and the rate the
// feedback allows) and consumed, rows written, queue depth and level,
// paused partitions, the level published to producers, and dead letters.
func printStatus(ctx context.Context, g prometheus.Gatherer, produced *atomic.Pointer[tickgen.Progress], w io.Writer) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastRecords float64
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			mfs, err := g.Gather()
			if err != nil {
				continue
			}
			records := metricSum(mfs, "mds_consumer_records_total")
			rate := (records - lastRecords) / now.Sub(last).Seconds()
			lastRecords, last = records, now
			levelName := func(metric string) string {
				return [...]string{"OK", "SOFT", "HARD"}[min(2, max(0, int(metricSum(mfs, metric))))]
			}
			gen := ""
			if p := produced.Load(); p != nil {
				gen = fmt.Sprintf("produced %6.0f/s (target %6.0f)  ", p.Rate, p.Target)
			}
			fmt.Fprintf(w, "%s  %sconsumed %7.0f ticks/s  rows written %9.0f  queue %5.0f/%-5.0f %-4s  paused %2.0f  published %-4s  dead letters %.0f\n",
				now.Format("15:04:05"), gen, rate, metricSum(mfs, "mds_worker_rows_written_total"),
				metricSum(mfs, "mds_coord_queue_depth"), metricSum(mfs, "mds_coord_queue_capacity"),
				levelName("mds_coord_level"), metricSum(mfs, "mds_consumer_paused_partitions"),
				levelName("mds_feedback_upstream_level"), metricSum(mfs, "mds_dead_letters_total"))
		}
	}
}

// metricSum adds up every series of a counter or gauge family.
func metricSum(mfs []*dto.MetricFamily, name string) float64 {
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}
