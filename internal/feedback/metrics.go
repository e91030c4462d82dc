package feedback

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/market-data-store/mds/backpressure"
)

// Label values of the metrics.
const (
	sinkKafka   = "kafka"
	sinkWebhook = "webhook"

	outcomeOK    = "ok"
	outcomeError = "error"

	attemptSuccess = "success" // 2xx
	attemptRetry   = "retry"   // failed, another attempt follows
	attemptFailure = "failure" // failed, the event is given up
)

type metrics struct {
	published *prometheus.CounterVec // sink, outcome
	attempts  *prometheus.CounterVec // outcome

	// The upstream level, of the Monitor.
	level                               prometheus.Gauge
	changes                             *prometheus.CounterVec // level
	arrival, write, sustainable, lagAge prometheus.Gauge
}

// newMetrics registers the package's metrics on reg. The Kafka publisher and
// the webhook may share one registerer: a collector already registered by
// the other is reused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	published, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_feedback_published_total",
		Help: "Feedback events handed to a sink (kafka topic or webhook), by outcome (ok, error).",
	}, []string{"sink", "outcome"}))
	if err != nil {
		return nil, err
	}
	attempts, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_feedback_webhook_attempts_total",
		Help: "Webhook HTTP attempts, by outcome: success (2xx), retry (failed, retried), failure (failed, given up).",
	}, []string{"outcome"}))
	if err != nil {
		return nil, err
	}
	m := &metrics{published: published, attempts: attempts}
	changes, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_feedback_upstream_changes_total",
		Help: "Changes of the upstream level (the level published to producers), by the level entered.",
	}, []string{"level"}))
	if err != nil {
		return nil, err
	}
	m.changes = changes
	for _, g := range []struct {
		dst        *prometheus.Gauge
		name, help string
	}{
		{&m.level, "mds_feedback_upstream_level", "Upstream level published to producers: 0 ok, 1 soft, 2 hard (the queue level is mds_coord_level)."},
		{&m.arrival, "mds_feedback_arrival_rate", "Records per second appended to the assigned partitions (growth of their end offsets), smoothed."},
		{&m.write, "mds_feedback_write_rate", "Records per second committed to the database, smoothed."},
		{&m.sustainable, "mds_feedback_sustainable_rate", "Records per second the store was measured to sustain while a lag kept it busy (0: not measured yet)."},
		{&m.lagAge, "mds_feedback_lag_seconds", "Age of the oldest record not yet written, from Kafka record timestamps (an upper bound)."},
	} {
		if *g.dst, err = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: g.name, Help: g.help})); err != nil {
			return nil, err
		}
	}
	for _, l := range []backpressure.Level{backpressure.OK, backpressure.Soft, backpressure.Hard} {
		m.changes.WithLabelValues(l.String())
	}
	return m, nil
}

// observe exports an upstream estimate.
func (m *metrics) observe(e Estimate) {
	m.level.Set(float64(e.Level))
	m.arrival.Set(e.ArrivalRate)
	m.write.Set(e.WriteRate)
	m.sustainable.Set(e.SustainableRate)
	m.lagAge.Set(e.LagSeconds)
}

// register registers c on reg, or returns the collector of the same
// description registered before.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		var none C
		return none, err
	}
	return c, nil
}
