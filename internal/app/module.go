package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.uber.org/dig"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/consume"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/feedback"
	"github.com/market-data-store/mds/internal/lifecycle"
	"github.com/market-data-store/mds/internal/store"
	"github.com/market-data-store/mds/internal/version"
)

// Interfaces are bound to their implementations here, and nowhere else.
var (
	_ feedback.Writer     = (*store.Store)(nil)
	_ coordinator.Sink    = (*feedback.Meter)(nil)
	_ feedback.Queue      = (*coordinator.Coordinator)(nil)
	_ feedback.Lags       = (*consume.Consumer)(nil)
	_ feedback.Subscriber = (*feedback.KafkaPublisher)(nil)
	_ feedback.Subscriber = (*feedback.Webhook)(nil)
	_ coordinator.Acker   = (*consume.Consumer)(nil)
	_ coordinator.Fencer  = (*consume.Consumer)(nil)
	_ consume.Queue       = (*coordinator.Coordinator)(nil)
	_ consume.OffsetStore = (*store.Store)(nil)
	_ groupMember         = (*consume.Consumer)(nil)
	_ database            = (*store.Store)(nil)
	_ writer              = (*coordinator.Coordinator)(nil)
)

// kafkaOpts are the client options every Kafka client of the process shares
// (brokers, TLS, SASL).
type kafkaOpts []kgo.Opt

// startContext bounds the work done while the graph is built (the Kafka
// check, opening and migrating the database), so that a signal during a
// slow start stops it.
type startContext struct{ context.Context }

// Module assembles the processor: every package's constructor, the
// bindings of their interfaces, and the start and stop order. ctx bounds
// building the graph, reg is the registry /metrics serves.
func Module(ctx context.Context, s Settings, log *zap.Logger, reg *prometheus.Registry) fx.Option {
	return fx.Options(
		fx.Supply(s, log, reg, startContext{ctx}),
		fx.Provide(
			func(r *prometheus.Registry) prometheus.Registerer { return r },
			func(r *prometheus.Registry) prometheus.Gatherer { return r },
			newKafkaOpts,
			newKafkaClient,
			newStore,
			newMeter,
			newCoordinator,
			newConsumer,
		),
		// fx's own log is left out: every failure it would log (a
		// constructor, a start or stop hook) is returned by Start or Stop
		// and reported once, by its root cause, by Run.
		fx.WithLogger(func() fxevent.Logger { return fxevent.NopLogger }),
		// Kafka is checked first (brokers, TLS, SASL), before the database
		// is opened and migrated. Start order: HTTP, the bars_1m refresher,
		// coordinator, feedback, consumer. Stop runs in reverse: the
		// consumer stops polling and drains the queue first, HTTP keeps
		// serving /metrics to the end. (What the drain writes after the
		// refresher stopped is refreshed by the next start's full pass.)
		fx.Invoke(checkKafka, startHTTP, startBars, startCoordinator, startFeedback, startConsumer),
		fx.StopTimeout(s.Coordinator.DrainTimeout+s.Consume.RevokeTimeout+15*time.Second),
	)
}

// newKafkaOpts are the connection options (brokers, TLS, SASL) and
// franz-go's own log, through zap (plugin/kzap) at the level of
// MDS_LOG_LEVEL, so that what the client sees (a refused connection, an
// unknown topic, a denied ACL, a reset) is in our log.
func newKafkaOpts(s Settings, log *zap.Logger) (kafkaOpts, error) {
	opts, err := s.Kafka.Opts(log.Named("kafka"))
	if err != nil {
		return nil, err
	}
	opts = append(opts, kgo.WithLogger(kzap.New(log.Named("kgo"), kzap.Level(kgoLevel(s.Log.Level)))))
	return kafkaOpts(opts), nil
}

// kgoLevel maps MDS_LOG_LEVEL to franz-go's levels.
func kgoLevel(level string) kgo.LogLevel {
	switch strings.ToLower(level) {
	case "debug":
		return kgo.LogLevelDebug
	case "warn":
		return kgo.LogLevelWarn
	case "error":
		return kgo.LogLevelError
	}
	return kgo.LogLevelInfo
}

// kafkaMetrics exports a franz-go client's own metrics (plugin/kprom:
// connections, bytes, errors per broker) as mds_kgo_*, labelled with which
// of the process's clients they are for.
func kafkaMetrics(reg prometheus.Registerer, client string) kgo.Opt {
	return kgo.WithHooks(kprom.NewMetrics("mds_kgo",
		kprom.Registerer(reg), kprom.WithStaticLabel(prometheus.Labels{"client": client})))
}

// newKafkaClient is the process's Kafka client beside the consumer's own:
// it checks the brokers at start, answers /readyz and publishes feedback.
// Built first, it is closed last.
func newKafkaClient(lc fx.Lifecycle, ko kafkaOpts, reg prometheus.Registerer) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(slices.Clone(ko), kafkaMetrics(reg, "shared"))...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	lc.Append(fx.StopHook(cl.Close))
	return cl, nil
}

// checkKafka fails the start when the brokers cannot be reached or refuse
// the credentials, instead of a consumer that retries forever in silence.
func checkKafka(sc startContext, s Settings, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(sc, 15*time.Second)
	defer cancel()
	return s.Kafka.Ping(ctx, cl)
}

func newStore(sc startContext, lc fx.Lifecycle, s Settings, log *zap.Logger, reg prometheus.Registerer) (*store.Store, error) {
	ctx, cancel := context.WithTimeout(sc, 2*time.Minute)
	defer cancel()
	st, err := store.Open(ctx, s.Store, log, reg)
	if err != nil {
		return nil, err
	}
	lc.Append(fx.StopHook(st.Close))
	return st, nil
}

// newMeter puts the feedback's Meter between the workers and the store: it
// sees every write, for the upstream level.
func newMeter(st *store.Store) *feedback.Meter { return feedback.NewMeter(st) }

func newCoordinator(s Settings, meter *feedback.Meter, log *zap.Logger, reg prometheus.Registerer) (*coordinator.Coordinator, error) {
	return coordinator.New(s.Coordinator, meter, log, reg)
}

func newConsumer(s Settings, co *coordinator.Coordinator, st *store.Store, ko kafkaOpts, log *zap.Logger, reg prometheus.Registerer) (*consume.Consumer, error) {
	c, err := consume.New(s.Consume, co, st, s.Limits, append(slices.Clone(ko), kafkaMetrics(reg, "consumer")), log, reg)
	if err != nil {
		return nil, err
	}
	co.SetAcker(c)
	return c, nil
}

func startHTTP(lc fx.Lifecycle, sd fx.Shutdowner, s Settings, g prometheus.Gatherer, cl *kgo.Client, c *consume.Consumer, st *store.Store, co *coordinator.Coordinator, log *zap.Logger) {
	if s.HTTP.Addr == "" {
		return
	}
	// /readyz asks the brokers itself: the group member alone does not
	// notice that they went away until its session times out.
	ping := func(ctx context.Context) error { return s.Kafka.Ping(ctx, cl) }
	topics := func(ctx context.Context) error { return consume.CheckTopics(ctx, kadm.NewClient(cl), s.Consume.Topics) }
	lifecycle.Hook(lc, sd, log, "http", newHealthServer(s.HTTP.Addr, s.HTTP.Pprof, g, c, ping, topics, st, co, log.Named("http")))
}

// startBars runs the refresh of bars_1m over what the writes touch, in
// the background: the full refresh at start does not delay the service.
func startBars(lc fx.Lifecycle, sd fx.Shutdowner, st *store.Store, log *zap.Logger) {
	lifecycle.Hook(lc, sd, log, "bars_refresh", st.Bars())
}

func startCoordinator(lc fx.Lifecycle, sd fx.Shutdowner, co *coordinator.Coordinator, log *zap.Logger) {
	lifecycle.Hook(lc, sd, log, "coordinator", co)
}

// startFeedback runs what tells producers upstream how the store keeps up:
// the Monitor, which computes the upstream level from the consumer's lag,
// the metered writes and the queue, and the sinks it tells each change
// (the Kafka topic, the webhook), which also re-publish its current state
// every heartbeat. Pausing partitions is the consumer's own business,
// driven by the queue level: it runs with or without this.
func startFeedback(lc fx.Lifecycle, sd fx.Shutdowner, s Settings, co *coordinator.Coordinator, c *consume.Consumer, meter *feedback.Meter, cl *kgo.Client, log *zap.Logger, reg prometheus.Registerer) error {
	if !s.Coordinator.EnableFeedback {
		log.Info("backpressure feedback to producers disabled (MDS_FB_ENABLE_FEEDBACK=false); partitions still pause on the queue level")
		return nil
	}
	mon, err := feedback.NewMonitor(s.Feedback, co, c, kadm.NewClient(cl), meter, log, reg) // not closed: that would close cl
	if err != nil {
		return err
	}
	pub, err := feedback.NewKafkaPublisher(s.Feedback, cl, mon, log, reg)
	if err != nil {
		return err
	}
	mon.Subscribe(pub)
	// Stop hooks run in reverse: the publisher stops (tombstone, flush)
	// before the monitor; the client closes last.
	lifecycle.Hook(lc, sd, log, "feedback_monitor", mon)
	lifecycle.Hook(lc, sd, log, "feedback", pub)
	if s.Feedback.Webhook.Enabled {
		wh, err := feedback.NewWebhook(s.Feedback.Webhook, mon, s.Feedback.HeartbeatInterval, log, reg)
		if err != nil {
			return err
		}
		mon.Subscribe(wh)
		lc.Append(fx.StopHook(wh.Close)) // last: after Run has returned
		lifecycle.Hook(lc, sd, log, "feedback_webhook", wh)
	}
	return nil
}

func startConsumer(lc fx.Lifecycle, sd fx.Shutdowner, c *consume.Consumer, log *zap.Logger) {
	lifecycle.Hook(lc, sd, log, "consumer", c)
}

// NewRegistry is the registry of one process: Go runtime and process
// metrics plus every package's own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Run runs the processor until ctx is done or a component fails.
func Run(ctx context.Context, s Settings, log *zap.Logger, reg *prometheus.Registry) error {
	log.Info("starting processor",
		zap.String("version", version.String()),
		zap.String("coordinator_id", s.Coordinator.ID),
		zap.Strings("topics", s.Consume.Topics),
		zap.String("group", s.Consume.Group))
	if len(s.Ignored) > 0 {
		log.Warn("ignoring variables that are no setting (misspelled?); processor settings lists them all", zap.Strings("variables", s.Ignored))
	}
	app := fx.New(Module(ctx, s, log, reg))
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := app.Start(startCtx); err != nil {
		// fx wraps a constructor's error in the chain of its dependents;
		// the operator wants the cause.
		return fmt.Errorf("starting: %w", dig.RootCause(err))
	}
	var code int
	select {
	case <-ctx.Done():
		log.Info("stopping: signal received")
	case sig := <-app.Wait():
		code = sig.ExitCode
		log.Info("stopping", zap.Int("exit_code", code))
	}
	stopCtx, cancel2 := context.WithTimeout(context.Background(), app.StopTimeout())
	defer cancel2()
	if err := app.Stop(stopCtx); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	if code != 0 {
		return fmt.Errorf("a component failed (see the log above)")
	}
	log.Info("stopped cleanly")
	return nil
}
