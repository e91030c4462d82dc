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

type metrics struct {
	deadLetters  *prometheus.CounterVec // by reason, counted on commit
	transactions *prometheus.CounterVec // by result
	rows         prometheus.Counter     // tick rows committed
}

func newMetrics(reg prometheus.Registerer, pool *pgxpool.Pool) (*metrics, error) {
	m := &metrics{
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mds_dead_letters_total",
			Help: "Records stored in mds_dead_letters, by reason (counted when their transaction commits).",
		}, []string{"reason"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mds_store_transactions_total",
			Help: "Write transactions by result: committed, fenced (another member owns a partition), rolled_back (error).",
		}, []string{"result"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mds_store_copy_rows_total",
			Help: "Tick rows committed to table ticks.",
		}),
	}
	for _, r := range []string{tick.ReasonDecode, tick.ReasonInvalid, tick.ReasonTooLarge, tick.ReasonRejected} {
		m.deadLetters.WithLabelValues(r)
	}
	for _, r := range []string{resultCommitted, resultFenced, resultRolledBack} {
		m.transactions.WithLabelValues(r)
	}
	cs := []prometheus.Collector{
		m.deadLetters, m.transactions, m.rows,
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
