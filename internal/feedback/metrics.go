package feedback

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
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
	for _, sink := range []string{sinkKafka, sinkWebhook} {
		for _, o := range []string{outcomeOK, outcomeError} {
			m.published.WithLabelValues(sink, o)
		}
	}
	for _, o := range []string{attemptSuccess, attemptRetry, attemptFailure} {
		m.attempts.WithLabelValues(o)
	}
	return m, nil
}

func register(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
