package consume

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/market-data-store/mds/internal/tick"
)

// metrics are the consumer's Prometheus series (see the package doc).
type metrics struct {
	records       prometheus.Counter
	decodeErrors  *prometheus.CounterVec
	paused        prometheus.Gauge
	assigned      prometheus.Gauge
	assignedEv    prometheus.Counter
	revokedEv     prometheus.Counter
	lostEv        prometheus.Counter
	lag           prometheus.Gauge
	commitErrors  prometheus.Counter
	offsetLoadErr prometheus.Counter
	resyncs       prometheus.Counter
	lagErrors     prometheus.Counter
	skipped       *prometheus.CounterVec // offsets not handed on, by reason
}

// Reasons of mds_consumer_skipped_offsets_total.
const (
	skipBeforePosition = "before_position" // fetched records before the partition's position: trimmed
	skipNotDelivered   = "not_delivered"   // offsets Kafka did not deliver: transaction markers, aborted records, compaction
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	rebalances := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_consumer_rebalances_total",
		Help: "Partition assignment changes seen by this member, by event (assigned, revoked, lost).",
	}, []string{"event"})
	m := &metrics{
		records: counter("mds_consumer_records_total",
			"Kafka records fetched and handed on, good or dead-lettered."),
		decodeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mds_consumer_decode_errors_total",
			Help: "Records that are not valid ticks and became dead letters, by reason.",
		}, []string{"reason"}),
		paused: gauge("mds_consumer_paused_partitions",
			"Assigned partitions currently paused, by backpressure or waiting for a resync."),
		assigned: gauge("mds_consumer_assigned_partitions",
			"Partitions currently assigned to this member."),
		assignedEv: rebalances.WithLabelValues("assigned"),
		revokedEv:  rebalances.WithLabelValues("revoked"),
		lostEv:     rebalances.WithLabelValues("lost"),
		lag: gauge("mds_consumer_lag_records",
			"Records not yet handed to the queue (end offset minus next offset), summed over assigned partitions; end offsets are refreshed every 5s even while paused."),
		commitErrors: counter("mds_consumer_commit_errors_total",
			"Kafka offset commits (made for lag tooling after database commits) that failed."),
		offsetLoadErr: counter("mds_consumer_offset_load_errors_total",
			"Failed reads of the stored offsets, on partition assignment or resync; each is retried."),
		lagErrors: counter("mds_consumer_lag_refresh_errors_total",
			"Failed listings of end offsets for mds_consumer_lag_records; each is retried at the next refresh."),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mds_consumer_skipped_offsets_total",
			Help: "Offsets not handed on, by reason: before_position (records fetched again before the partition's position, trimmed), not_delivered (transaction markers, aborted records, compacted keys: normal gaps).",
		}, []string{"reason"}),
		resyncs: counter("mds_consumer_resyncs_total",
			"Partitions moved back to their stored offset after the database fenced them while they stayed assigned."),
	}
	for _, r := range []string{tick.ReasonDecode, tick.ReasonInvalid, tick.ReasonTooLarge} {
		m.decodeErrors.WithLabelValues(r)
	}
	m.skipped.WithLabelValues(skipBeforePosition)
	m.skipped.WithLabelValues(skipNotDelivered)
	for _, c := range []prometheus.Collector{m.skipped, m.records, m.decodeErrors, m.paused, m.assigned, rebalances, m.lag, m.commitErrors, m.offsetLoadErr, m.resyncs, m.lagErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
