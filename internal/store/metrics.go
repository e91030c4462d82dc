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
	rows        prometheus.Counter            // tick rows committed
	writeErrors map[string]prometheus.Counter // rolled back writes, by cause
	bisections  prometheus.Counter            // batches redone with bisection
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) (*metrics, error) {
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
	cs := []prometheus.Collector{
		m.deadLetters, transactions, m.rows, writeErrors, m.bisections,
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
