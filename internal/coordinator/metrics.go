package coordinator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/market-data-store/mds/backpressure"
)

// Error classes of a failed write, the values of the class label of
// mds_worker_write_errors_total.
const (
	classTemporary = "temporary"
	classPermanent = "permanent"
	classFenced    = "fenced"
	classPanic     = "panic"
)

type metrics struct {
	submitted     prometheus.Counter
	depth         prometheus.Gauge
	capacity      prometheus.Gauge
	bytes         prometheus.Gauge
	capacityBytes prometheus.Gauge
	stalled       prometheus.Gauge
	stallCause    *prometheus.GaugeVec // stalled batches by cause
	level         prometheus.Gauge
	workersAlive  prometheus.Gauge
	circuit       prometheus.Gauge
	dropped       prometheus.Counter
	batches       prometheus.Counter
	rows          prometheus.Counter
	writeErrors   map[string]prometheus.Counter
	retries       prometheus.Counter
	writeLatency  prometheus.Histogram
	ingestLatency prometheus.Histogram
	events        [3]prometheus.Counter // by backpressure.Level
}

func newMetrics(reg prometheus.Registerer, id string) (*metrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_worker_write_errors_total",
		Help: "Failed batch write attempts by error class (temporary, permanent, fenced, panic).",
	}, []string{"class"})
	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_feedback_events_total",
		Help: "Queue backpressure level transitions, by the level entered.",
	}, []string{"coordinator_id", "level"})
	m := &metrics{
		submitted:     counter("mds_coord_items_submitted_total", "Ticks accepted into the queue."),
		depth:         gauge("mds_coord_queue_depth", "Ticks queued and not yet taken by a worker."),
		capacity:      gauge("mds_coord_queue_capacity", "Queue capacity in ticks."),
		bytes:         gauge("mds_coord_queue_bytes", "Bytes of the chunks queued and not yet taken by a worker (tick.Chunk.Bytes)."),
		capacityBytes: gauge("mds_coord_queue_capacity_bytes", "Queue capacity in bytes."),
		stalled: gauge("mds_worker_stalled",
			"Batches that cannot be written as they are (an error that is not temporary); while > 0 no other batch is written and the level is HARD."),
		stallCause: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mds_worker_stall_cause",
			Help: "Stalled batches by cause: the SQLSTATE of the error, panic, or error (none: no series).",
		}, []string{"cause"}),
		level:        gauge("mds_coord_level", "Backpressure level: 0 ok, 1 soft, 2 hard."),
		workersAlive: gauge("mds_coord_workers_alive", "Running write workers."),
		circuit:      gauge("mds_coord_circuit_state", "1 (open) while some batch has failed MDS_CB_FAILURE_THRESHOLD consecutive write attempts, else 0 (closed). There is no breaker: writing resumes as soon as the database answers."),
		dropped: counter("mds_coord_dropped_ticks_total",
			"Ticks dropped because their partition was revoked or fenced; they are re-read from the stored offsets."),
		batches:     counter("mds_worker_batches_written_total", "Batches committed by the sink."),
		rows:        counter("mds_worker_rows_written_total", "Tick rows committed by the sink."),
		writeErrors: make(map[string]prometheus.Counter, 4),
		retries:     counter("mds_worker_retries_total", "Write attempts that repeat a failed attempt of the same batch."),
		writeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mds_worker_write_latency_seconds",
			Help:    "Duration of committed batch writes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1ms .. 16s
		}),
		ingestLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mds_ingest_latency_seconds",
			Help:    "Time from the Kafka record timestamp to the database commit, one observation per committed chunk (a partition's records of one fetch), for its oldest record.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 15), // 5ms .. 82s
		}),
	}
	for _, class := range []string{classTemporary, classPermanent, classFenced, classPanic} {
		m.writeErrors[class] = errs.WithLabelValues(class)
	}
	for l := backpressure.OK; l <= backpressure.Hard; l++ {
		m.events[l] = events.WithLabelValues(id, l.String())
	}
	for _, c := range []prometheus.Collector{
		m.submitted, m.depth, m.capacity, m.bytes, m.capacityBytes, m.stalled, m.stallCause, m.level, m.workersAlive, m.circuit, m.dropped,
		m.batches, m.rows, errs, m.retries, m.writeLatency, m.ingestLatency, events,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering coordinator metrics: %w", err)
		}
	}
	return m, nil
}
