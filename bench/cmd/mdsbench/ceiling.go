package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/internal/tick"
)

// consumeResult is the consume ceiling.
type consumeResult struct {
	Rows       int     `json:"rows"`
	RowsPerSec float64 `json:"rows_per_s"` // first fetched record to last decoded
	WallSec    float64 `json:"wall_s"`     // client start (group join included) to last decoded
	// HarnessCPUPerM is this process's CPU per million records during the
	// phase: the consumer and decoder, but also the kfake broker serving
	// them, so only an upper bound on the consumer's own cost.
	HarnessCPUPerM float64 `json:"harness_cpu_s_per_million"`
}

// consumeCeiling reads and decodes every record of the ticks topic with a
// plain franz-go group consumer (franz-go's default fetch settings) and
// writes nothing. It returns the decoded ticks for the database ceiling.
func consumeCeiling(ctx context.Context, e *benchEnv, o options, group string) (consumeResult, []tick.Tick, error) {
	var r consumeResult
	progress("consume ceiling: group consumer reading and decoding %d records", o.n)
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(e.brokers, ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(ticksTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(6*time.Second),
		kgo.HeartbeatInterval(100*time.Millisecond),
	)
	if err != nil {
		return r, nil, fmt.Errorf("creating consumer: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.phaseTimeout)
	defer cancel()

	ticks := make([]tick.Tick, 0, o.n)
	dec := tick.NewDecoder(tick.DefaultLimits())
	cpu0 := selfCPU()
	t0 := time.Now()
	var first time.Time
	var decodeErr error
	for len(ticks) < o.n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return r, nil, fmt.Errorf("after %d of %d records: %w", len(ticks), o.n, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return r, nil, fmt.Errorf("fetching %s/%d: %w", errs[0].Topic, errs[0].Partition, errs[0].Err)
		}
		if first.IsZero() && !fs.Empty() {
			first = time.Now()
		}
		fs.EachRecord(func(rec *kgo.Record) {
			ticks = append(ticks, tick.Tick{})
			if err := dec.Decode(rec.Value, &ticks[len(ticks)-1]); err != nil && decodeErr == nil {
				decodeErr = err
			}
		})
		if decodeErr != nil {
			return r, nil, fmt.Errorf("decoding: %w", decodeErr)
		}
	}
	end := time.Now()
	r.Rows = len(ticks)
	r.RowsPerSec = float64(r.Rows) / end.Sub(first).Seconds()
	r.WallSec = end.Sub(t0).Seconds()
	r.HarnessCPUPerM = (selfCPU() - cpu0).Seconds() / (float64(r.Rows) / 1e6)
	progress("consume ceiling: %.0f rows/s (%.2fs wall with the group join)", r.RowsPerSec, r.WallSec)
	return r, ticks, nil
}

// dbResult is the database ceiling.
type dbResult struct {
	Rows       int                `json:"rows"`
	ByConns    map[string]float64 `json:"rows_per_s_by_connections"`
	RowsPerSec float64            `json:"rows_per_s"` // the best of ByConns
	BestConns  int                `json:"best_connections"`
	// PostgresCPUPerM is the server's CPU per million rows in the best run.
	PostgresCPUPerM float64 `json:"postgres_cpu_s_per_million"`
}

// dbCeiling copies ticks into the empty ticks table of a fresh database,
// over 1 and then 2 connections (the rows split into contiguous parts, one
// COPY per connection), and keeps the best rate.
func dbCeiling(ctx context.Context, e *benchEnv, o options, ticks []tick.Tick) (dbResult, error) {
	r := dbResult{Rows: len(ticks), ByConns: map[string]float64{}}
	for _, conns := range []int{1, 2} {
		rate, pgCPU, err := copyOnce(ctx, e, ticks, conns)
		if err != nil {
			return r, err
		}
		r.ByConns[fmt.Sprint(conns)] = rate
		if rate > r.RowsPerSec {
			r.RowsPerSec, r.BestConns = rate, conns
			r.PostgresCPUPerM = pgCPU.Seconds() / (float64(len(ticks)) / 1e6)
		}
	}
	progress("database ceiling: %.0f rows/s (best, %d connection(s))", r.RowsPerSec, r.BestConns)
	return r, nil
}

var ticksColumns = []string{"ts", "symbol", "venue", "price", "size", "bid", "ask", "bid_size", "ask_size", "seq"}

func copyOnce(ctx context.Context, e *benchEnv, ticks []tick.Tick, conns int) (float64, time.Duration, error) {
	name := fmt.Sprintf("bench_copy_%d", conns)
	url, err := e.freshDB(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	defer e.dropDB(ctx, name)
	cs := make([]*pgx.Conn, conns)
	for i := range cs {
		if cs[i], err = pgx.Connect(ctx, url); err != nil {
			return 0, 0, fmt.Errorf("connecting: %w", err)
		}
		defer cs[i].Close(ctx)
	}
	progress("database ceiling: COPY of %d rows over %d connection(s)", len(ticks), conns)
	pg0 := e.postgresCPU()
	t0 := time.Now()
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i, c := range cs {
		part := ticks[i*len(ticks)/conns : (i+1)*len(ticks)/conns]
		wg.Go(func() {
			_, errs[i] = c.CopyFrom(ctx, pgx.Identifier{"ticks"}, ticksColumns, &sliceSource{rows: part, i: -1})
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)
	pgCPU := e.postgresCPU() - pg0
	for _, err := range errs {
		if err != nil {
			return 0, 0, fmt.Errorf("copying: %w", err)
		}
	}
	var n int
	if err := cs[0].QueryRow(ctx, "SELECT count(*) FROM ticks").Scan(&n); err != nil {
		return 0, 0, fmt.Errorf("counting rows: %w", err)
	}
	if n != len(ticks) {
		return 0, 0, fmt.Errorf("copied %d rows, table holds %d", len(ticks), n)
	}
	rate := float64(len(ticks)) / elapsed.Seconds()
	progress("  %d connection(s): %.0f rows/s (%.2fs; postgres CPU %.2fs)", conns, rate, elapsed.Seconds(), pgCPU.Seconds())
	return rate, pgCPU, nil
}

// sliceSource is a pgx.CopyFromSource over decoded ticks: it hands pgx
// pointers into the tick in one reused slice, so the ceiling pays no
// per-row allocation. pgx's encoding costs more CPU per row than the
// store's own binary COPY encoder, which only makes the ceiling harder to
// reach on a machine where the cores are shared.
type sliceSource struct {
	rows []tick.Tick
	i    int
	vals [10]any
}

func (s *sliceSource) Next() bool {
	s.i++
	return s.i < len(s.rows)
}

func (s *sliceSource) Values() ([]any, error) {
	t := &s.rows[s.i]
	v := s.vals[:]
	v[0], v[1], v[2], v[3] = &t.TS, &t.Symbol, opt(t.Has&tick.HasVenue != 0, &t.Venue), &t.Price
	v[4] = opt(t.Has&tick.HasSize != 0, &t.Size)
	v[5] = opt(t.Has&tick.HasBid != 0, &t.Bid)
	v[6] = opt(t.Has&tick.HasAsk != 0, &t.Ask)
	v[7] = opt(t.Has&tick.HasBidSize != 0, &t.BidSize)
	v[8] = opt(t.Has&tick.HasAskSize != 0, &t.AskSize)
	v[9] = opt(t.Has&tick.HasSeq != 0, &t.Seq)
	return v, nil
}

func (s *sliceSource) Err() error { return nil }

// opt is p when the field is present and nil (SQL NULL) when it is not.
func opt[T any](present bool, p *T) any {
	if present {
		return p
	}
	return nil
}

// selfCPU is this process's CPU time so far (user and system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
