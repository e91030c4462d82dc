package store

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/market-data-store/mds/internal/tick"
)

// Transaction results, the values of the result label.
const (
	resultCommitted  = "committed"
	resultFenced     = "fenced"
	resultRolledBack = "rolled_back"
)

// metrics holds the store's collectors. The children of the result label
// are resolved once, so that Write looks no label up.
type metrics struct {
	deadLetters *prometheus.CounterVec // by reason, counted on commit
	committed   prometheus.Counter     // transactions by result
	fenced      prometheus.Counter
	rolledBack  prometheus.Counter
	rows        prometheus.Counter // tick rows committed

	gaps                *prometheus.CounterVec // by topic, reason, counted on commit
	lostRecords         *prometheus.CounterVec // by topic, reason, counted on commit
	deadLetterConflicts prometheus.Counter

	barsRefreshes      prometheus.Counter // bars_1m refresh statements by result
	barsRefreshErrors  prometheus.Counter
	barsRefreshBusy    prometheus.Counter
	barsRefreshSeconds prometheus.Histogram
	chunksCreated      prometheus.Counter            // chunks of ticks created, from the catalog
	writeErrors        map[string]prometheus.Counter // rolled back writes, by cause
	bisections         prometheus.Counter            // batches redone with bisection
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool, topics []string) (*metrics, error) {
	transactions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_store_transactions_total",
		Help: "Write transactions by result: committed, fenced (another member owns a partition), rolled_back (error).",
	}, []string{"result"})
	m := &metrics{
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mds_dead_letters_total",
			Help: "Records stored in mds_dead_letters, by reason (counted when their transaction commits).",
		}, []string{"reason"}),
		committed:  transactions.WithLabelValues(resultCommitted),
		fenced:     transactions.WithLabelValues(resultFenced),
		rolledBack: transactions.WithLabelValues(resultRolledBack),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mds_store_copy_rows_total",
			Help: "Tick rows committed to table ticks.",
		}),
	}
	m.gaps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_consumer_offset_gaps_total",
		Help: "Ranges of a partition moved past without their records because they are gone from Kafka (recorded in mds_offset_gaps), by topic and reason (log_start, truncated, topic_recreated); counted when their transaction commits.",
	}, []string{"topic", "reason"})
	m.lostRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_consumer_lost_records_total",
		Help: "Records that were ours to write and are gone from Kafka (see mds_offset_gaps), by topic and reason; counted when their gap is recorded.",
	}, []string{"topic", "reason"})
	m.deadLetterConflicts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mds_dead_letters_conflicts_total",
		Help: "Dead letters not stored because the consumer group already holds one for the same topic, partition and offset (a recreated topic reuses offsets).",
	})
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_store_bars_refreshes_total",
		Help: "refresh_continuous_aggregate statements on bars_1m by result: ok, error, busy (TimescaleDB's policy was refreshing; retried next round).",
	}, []string{"result"})
	m.barsRefreshes, m.barsRefreshErrors, m.barsRefreshBusy = refreshes.WithLabelValues("ok"), refreshes.WithLabelValues("error"), refreshes.WithLabelValues("busy")
	m.barsRefreshSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "mds_store_bars_refresh_duration_seconds",
		Help:    "Duration of one refresh_continuous_aggregate statement on bars_1m.",
		Buckets: prometheus.ExponentialBuckets(0.005, 4, 8), // 5 ms to 82 s
	})
	m.chunksCreated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mds_store_chunks_created_total",
		Help: "Chunks of the ticks hypertable created since this process started (by any writer), read from the TimescaleDB catalog every MDS_TS_REFRESH_INTERVAL.",
	})
	writeErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mds_store_write_errors_total",
		Help: "Rolled back writes by cause: timeout, connection, conflict, server (temporary), permanent.",
	}, []string{"cause"})
	m.writeErrors = make(map[string]prometheus.Counter, len(writeCauses))
	for _, c := range writeCauses {
		m.writeErrors[c] = writeErrors.WithLabelValues(c)
	}
	m.bisections = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "mds_store_bisections_total",
		Help: "Batches whose COPY the database refused, redone in a transaction that bisects them to find the refused rows.",
	})
	for _, r := range []string{tick.ReasonDecode, tick.ReasonInvalid, tick.ReasonTooLarge, tick.ReasonRejected} {
		m.deadLetters.WithLabelValues(r)
	}
	for _, t := range topics {
		for _, r := range []string{tick.GapLogStart, tick.GapTruncated, tick.GapTopicRecreated} {
			m.gaps.WithLabelValues(t, r)
			m.lostRecords.WithLabelValues(t, r)
		}
	}
	cs := []prometheus.Collector{
		m.deadLetters, transactions, m.rows, m.gaps, m.lostRecords, m.deadLetterConflicts,
		refreshes, m.barsRefreshSeconds, m.chunksCreated,
		writeErrors, m.bisections,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mds_store_pool_acquired_conns",
			Help: "Database connections currently in use.",
		}, func() float64 { return float64(pool.Stat().AcquiredConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mds_store_pool_max_conns",
			Help: "Size limit of the database connection pool.",
		}, func() float64 { return float64(pool.Stat().MaxConns()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
