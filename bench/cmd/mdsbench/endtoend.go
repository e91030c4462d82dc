package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
)

// e2eResult is the processor's end-to-end run over the pre-produced topic.
type e2eResult struct {
	Rows int `json:"rows"`
	// RowsPerSec counts the rows committed after the first commit was seen,
	// over the time from that commit to the last one.
	RowsPerSec float64 `json:"rows_per_s"`
	// WallRowsPerSec is all rows over the time from the process start
	// (group join and first batch included) to the last commit.
	WallRowsPerSec  float64 `json:"wall_rows_per_s"`
	CPUSec          float64 `json:"cpu_s"`
	CPUPerM         float64 `json:"cpu_s_per_million"`
	PeakRSSMB       float64 `json:"peak_rss_mb"`
	PostgresCPUPerM float64 `json:"postgres_cpu_s_per_million"`
	DistinctSeq     int     `json:"distinct_seq"`
	DeadLetters     int     `json:"dead_letters"`
	// From the processor's own metrics.
	Batches        float64 `json:"batches"`
	RowsPerBatch   float64 `json:"rows_per_batch"`
	MeanWriteMs    float64 `json:"mean_write_ms"`
	HardEvents     float64 `json:"hard_level_events"`
	WriteErrors    float64 `json:"write_errors"`
	DroppedOnFence float64 `json:"dropped_ticks"`
}

// offsetPoller reads the next offsets the processor committed for one
// group and topic; their sum is the number of records committed, since the
// topics start at offset 0.
type offsetPoller struct {
	conn         *pgx.Conn
	group, topic string
	next         []int64 // by partition
}

// poll reads the offsets once, returning when the query was sent and when
// its answer arrived: a commit it sees happened before recv, and a commit it
// does not see happened after send.
func (p *offsetPoller) poll(ctx context.Context) (send, recv time.Time, err error) {
	send = time.Now()
	rows, err := p.conn.Query(ctx, `SELECT partition, next_offset FROM mds_offsets
		WHERE consumer_group = $1 AND topic = $2`, p.group, p.topic)
	if err != nil {
		return send, send, fmt.Errorf("polling offsets: %w", err)
	}
	var part int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&part, &next}, func() error {
		if int(part) < len(p.next) {
			p.next[part] = next
		}
		return nil
	})
	if err != nil {
		return send, send, fmt.Errorf("polling offsets: %w", err)
	}
	return send, time.Now(), nil
}

func (p *offsetPoller) committed() int64 {
	var n int64
	for _, v := range p.next {
		n += v
	}
	return n
}

func endToEnd(ctx context.Context, e *benchEnv, o options, round int) (e2eResult, error) {
	var r e2eResult
	name, group := fmt.Sprintf("bench_e2e_%d", round), fmt.Sprintf("bench-e2e-%d", round)
	url, conn, closeDB, err := e.openFreshDB(ctx, name)
	if err != nil {
		return r, err
	}
	defer closeDB()

	progress("processor end to end: default settings, %d ticks backlog, empty table", o.n)
	pg0 := e.postgresCPU()
	t0 := time.Now()
	p, err := startProcessor(e, fmt.Sprintf("e2e-%d", round), map[string]string{
		"MDS_DATABASE_URL": url, "MDS_KAFKA_TOPICS": ticksTopic, "MDS_KAFKA_GROUP": group,
	})
	if err != nil {
		return r, err
	}
	defer p.stop()
	saveProfiles := p.profile(ctx, e.pprofDir, fmt.Sprintf("e2e-%d", round), o.pprofSeconds)

	ctx, cancel := context.WithTimeout(ctx, o.phaseTimeout)
	defer cancel()
	poller := &offsetPoller{conn: conn, group: group, topic: ticksTopic, next: make([]int64, o.partitions)}
	var first, last time.Time
	var rows0 int64
	step, shown := int64(max(o.n/10, 1)), int64(0)
	for {
		if err := p.alive(); err != nil {
			return r, err
		}
		_, recv, err := poller.poll(ctx)
		if err != nil {
			return r, fmt.Errorf("%w (committed %d of %d)", err, poller.committed(), o.n)
		}
		n := poller.committed()
		if n > 0 && first.IsZero() {
			first, rows0 = recv, n
		}
		for ; shown+step <= n; shown += step {
			progress("  committed %d/%d", shown+step, o.n)
		}
		if n >= int64(o.n) {
			last = recv
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, err := readStat(p.pid())
	if err != nil {
		return r, fmt.Errorf("reading processor CPU: %w", err)
	}
	hwm, err := peakRSS(p.pid())
	if err != nil {
		return r, fmt.Errorf("reading processor peak RSS: %w", err)
	}
	mfs, err := p.metrics(ctx)
	if err != nil {
		return r, err
	}
	pgCPU := e.postgresCPU() - pg0
	saveProfiles()
	p.stop()

	r.Rows = o.n
	if last.After(first) {
		r.RowsPerSec = float64(int64(o.n)-rows0) / last.Sub(first).Seconds()
	}
	r.WallRowsPerSec = float64(o.n) / last.Sub(t0).Seconds()
	r.CPUSec = st.cpu.Seconds()
	r.CPUPerM = r.CPUSec / (float64(o.n) / 1e6)
	r.PeakRSSMB = float64(hwm) / (1 << 20)
	r.PostgresCPUPerM = pgCPU.Seconds() / (float64(o.n) / 1e6)
	r.fromMetrics(mfs)
	progress("processor: %.0f rows/s (%.0f with start-up), %.2f CPU s per million, peak RSS %.0f MB",
		r.RowsPerSec, r.WallRowsPerSec, r.CPUPerM, r.PeakRSSMB)

	var count int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT seq) FROM ticks`).Scan(&count, &r.DistinctSeq); err != nil {
		return r, fmt.Errorf("checking rows: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM mds_dead_letters`).Scan(&r.DeadLetters); err != nil {
		return r, fmt.Errorf("counting dead letters: %w", err)
	}
	if count != o.n || r.DistinctSeq != o.n || r.DeadLetters != 0 {
		return r, fmt.Errorf("exactly-once check failed: %d rows, %d distinct seq, %d dead letters; want %d, %d, 0",
			count, r.DistinctSeq, r.DeadLetters, o.n, o.n)
	}
	progress("verified: exactly %d rows, no duplicate seq, no dead letters", count)
	return r, nil
}

func (r *e2eResult) fromMetrics(mfs map[string]*dto.MetricFamily) {
	r.Batches = sample(mfs, "mds_worker_batches_written_total")
	if r.Batches > 0 {
		r.RowsPerBatch = sample(mfs, "mds_worker_rows_written_total") / r.Batches
	}
	if h := histogramOf(mfs, "mds_worker_write_latency_seconds"); h.GetSampleCount() > 0 { // nil-safe getters
		r.MeanWriteMs = 1000 * h.GetSampleSum() / float64(h.GetSampleCount())
	}
	if mf := mfs["mds_feedback_events_total"]; mf != nil {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "level" && l.GetValue() == "hard" {
					r.HardEvents += m.GetCounter().GetValue()
				}
			}
		}
	}
	r.WriteErrors = sample(mfs, "mds_worker_write_errors_total")
	r.DroppedOnFence = sample(mfs, "mds_coord_dropped_ticks_total")
}
