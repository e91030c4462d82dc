package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/tick"
)

// bucket is the bucket width of bars_1m.
const bucket = time.Minute

// maxSpans bounds the time ranges a BarsRefresher keeps between two
// refreshes. Beyond it the two closest ranges merge (refreshing the gap
// between them too), so memory stays bounded whatever the writes touch.
const maxSpans = 64

// span is a time range [From, To) aligned on bucket boundaries.
type span struct{ From, To time.Time }

// BarsRefresher keeps the continuous aggregate bars_1m covering every tick
// in ticks, backfill and late ticks included; TimescaleDB's own refresh
// policy only covers the last hour. Run first refreshes the whole of ticks
// (one chunk interval per statement, oldest first, in the background of a
// started service), then, every MDS_TS_REFRESH_INTERVAL, the buckets that
// committed writes touched since the last round. Buckets newer than the
// policy's end offset (one minute) are left to real-time aggregation and
// refreshed once they are older. A failed refresh keeps its range for the
// next round. Run also counts the chunks of ticks created since it started
// (mds_store_chunks_created_total). On a database without bars_1m (no
// TimescaleDB) it only waits, checking again every round.
type BarsRefresher struct {
	pool  *pgxpool.Pool
	log   *zap.Logger
	m     *metrics
	every time.Duration
	slice time.Duration

	warned time.Time // last warning logged, by Run's goroutine

	mu      sync.Mutex
	pending []span
}

func newBarsRefresher(pool *pgxpool.Pool, cfg TimescaleConfig, log *zap.Logger, m *metrics) *BarsRefresher {
	return &BarsRefresher{pool: pool, log: log.Named("bars"), m: m, every: cfg.RefreshInterval, slice: cfg.ChunkInterval.Truncate(bucket)}
}

// Bars returns the refresher of bars_1m, whose Run the service starts.
func (s *Store) Bars() *BarsRefresher { return s.bars }

// tickTimes returns the earliest and latest tick time of b (zero times for
// a batch without rows).
func tickTimes(b *tick.Batch) (lo, hi time.Time) {
	first := true
	var l, h int64
	for _, c := range b.Chunks {
		for i := range c.Records {
			us := c.Records[i].Tick.TS.UnixMicro() // the database keeps microseconds
			if first {
				l, h, first = us, us, false
			}
			l, h = min(l, us), max(h, us)
		}
	}
	if first {
		return lo, hi
	}
	return time.UnixMicro(l).UTC(), time.UnixMicro(h).UTC()
}

// touched records that a committed write stored ticks in [lo, hi].
func (r *BarsRefresher) touched(lo, hi time.Time) {
	if lo.IsZero() {
		return
	}
	s := span{From: lo.Truncate(bucket), To: hi.Truncate(bucket).Add(bucket)}
	r.mu.Lock()
	r.pending = addSpan(r.pending, s, maxSpans)
	r.mu.Unlock()
}

// addSpan inserts s into the sorted, disjoint spans, merging what overlaps
// or touches it, then merges the two closest neighbours while there are
// more than limit.
func addSpan(spans []span, s span, limit int) []span {
	i := sort.Search(len(spans), func(i int) bool { return !spans[i].To.Before(s.From) })
	j := i
	for j < len(spans) && !spans[j].From.After(s.To) {
		if spans[j].From.Before(s.From) {
			s.From = spans[j].From
		}
		if spans[j].To.After(s.To) {
			s.To = spans[j].To
		}
		j++
	}
	spans = append(spans[:i], append([]span{s}, spans[j:]...)...)
	for len(spans) > limit {
		k := 0
		for n := 1; n+1 < len(spans); n++ {
			if spans[n+1].From.Sub(spans[n].To) < spans[k+1].From.Sub(spans[k].To) {
				k = n
			}
		}
		spans[k].To = spans[k+1].To
		spans = append(spans[:k+1], spans[k+2:]...)
	}
	return spans
}

// take removes and returns the pending spans.
func (r *BarsRefresher) take() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pending
	r.pending = nil
	return p
}

// putBack returns spans that were not refreshed to the pending set.
func (r *BarsRefresher) putBack(spans []span) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range spans {
		r.pending = addSpan(r.pending, s, maxSpans)
	}
}

// Run refreshes bars_1m until ctx is done; it returns nil then. Errors of
// one round are logged (at most once per round) and retried the next.
func (r *BarsRefresher) Run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	var (
		found      bool      // bars_1m exists (TimescaleDB is in use)
		full       bool      // the refresh over all of ticks is done
		chunkSince time.Time // chunks created after this are counted
		err        error
	)
	for {
		if !found {
			if found, err = r.barsExist(ctx); err != nil {
				r.warn(ctx, "checking for bars_1m", err)
			} else if !found {
				r.take() // nothing to refresh: keep no ranges
			}
		}
		if found {
			if chunkSince, err = r.countChunks(ctx, chunkSince); err != nil {
				r.warn(ctx, "counting chunks", err)
			}
			if !full {
				if err := r.refreshAll(ctx); err != nil {
					r.warn(ctx, "refreshing all of bars_1m", err)
				} else {
					full = true
				}
			} else if err := r.refreshTouched(ctx); err != nil {
				r.warn(ctx, "refreshing the bars_1m buckets writes touched", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *BarsRefresher) warn(ctx context.Context, what string, err error) {
	if errors.Is(err, errBusy) {
		r.log.Debug(what+": busy; next round", zap.Error(err))
		return
	}
	// At most one warning a minute, however short the interval.
	if ctx.Err() == nil && time.Since(r.warned) >= time.Minute {
		r.warned = time.Now()
		r.log.Warn(what+" failed; retrying every round", zap.Duration("interval", r.every), zap.Error(err))
	}
}

func (r *BarsRefresher) barsExist(ctx context.Context) (bool, error) {
	var ok bool
	err := r.pool.QueryRow(ctx, `SELECT to_regclass('bars_1m') IS NOT NULL
		AND EXISTS (SELECT 1 FROM pg_settings WHERE name = 'timescaledb.bgw_launcher_poll_time')`).Scan(&ok)
	return ok, err
}

// limit is the end of what may be materialized: buckets before the
// refresh policy's end offset.
func limit(now time.Time) time.Time { return now.Add(-barsRefreshEnd).Truncate(bucket) }

// errBusy means another refresh of bars_1m was running: another instance
// (which holds barsLockID) or TimescaleDB's policy job (SQLSTATE 55P03).
// The round's ranges wait for the next round; it is no failure.
var errBusy = errors.New("another refresh of bars_1m is running")

// barsLockID is the advisory lock a refresh round holds, so that the
// instances of a deployment take turns instead of failing each other's
// refresh_continuous_aggregate calls.
const barsLockID int64 = 0x6d64735f62617273 // "mds_bars"

// locked runs fn on one pool connection holding barsLockID, or returns
// errBusy at once when another session holds it.
func (r *BarsRefresher) locked(ctx context.Context, fn func(c *pgxpool.Conn) error) error {
	c, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquiring connection: %w", err)
	}
	defer c.Release()
	var ok bool
	if err := c.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, barsLockID).Scan(&ok); err != nil {
		return fmt.Errorf("taking the bars_1m refresh lock: %w", err)
	}
	if !ok {
		return errBusy
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := c.Exec(uctx, `SELECT pg_advisory_unlock($1)`, barsLockID); err != nil {
			_ = c.Conn().Close(uctx) // ends the session, and so the lock
		}
	}()
	return fn(c)
}

// refreshAll refreshes bars_1m over all of ticks, one slice (the chunk
// interval) per statement, so that one statement stays bounded and a
// stop interrupts it between slices. Slices already up to date cost
// little: TimescaleDB refreshes only what its invalidation log names.
func (r *BarsRefresher) refreshAll(ctx context.Context) error {
	return r.locked(ctx, func(c *pgxpool.Conn) error {
		var lo, hi *time.Time
		if err := c.QueryRow(ctx, `SELECT min(ts), max(ts) FROM ticks`).Scan(&lo, &hi); err != nil {
			return fmt.Errorf("reading the time range of ticks: %w", err)
		}
		if lo == nil {
			return nil
		}
		start := time.Now()
		end := hi.Truncate(bucket).Add(bucket)
		if lim := limit(time.Now()); end.After(lim) {
			end = lim
		}
		n := 0
		for from := lo.Truncate(r.slice); from.Before(end); from = from.Add(r.slice) {
			to := from.Add(r.slice)
			if to.After(end) {
				to = end
			}
			if err := r.refresh(ctx, c, span{From: from, To: to}); err != nil {
				return err
			}
			n++
		}
		r.log.Info("bars_1m refreshed over all of ticks", zap.Time("from", *lo), zap.Time("to", end),
			zap.Int("statements", n), zap.Duration("duration", time.Since(start)))
		return nil
	})
}

// refreshTouched refreshes the spans writes touched, up to limit; the rest
// and whatever fails wait for the next round.
func (r *BarsRefresher) refreshTouched(ctx context.Context) error {
	spans := r.take()
	if len(spans) == 0 {
		return nil
	}
	lim := limit(time.Now())
	var later []span
	err := r.locked(ctx, func(c *pgxpool.Conn) error {
		for len(spans) > 0 {
			s := spans[0]
			if !s.From.Before(lim) {
				later = append(later, s)
				spans = spans[1:]
				continue
			}
			if s.To.After(lim) {
				later = append(later, span{From: lim, To: s.To})
				s.To = lim
			}
			if err := r.refresh(ctx, c, s); err != nil {
				spans[0] = s
				return err
			}
			spans = spans[1:]
		}
		return nil
	})
	r.putBack(append(later, spans...))
	return err
}

// refresh runs refresh_continuous_aggregate over s on c. It cannot run
// inside a transaction: it is sent alone.
func (r *BarsRefresher) refresh(ctx context.Context, c *pgxpool.Conn, s span) error {
	start := time.Now()
	_, err := c.Exec(ctx, `CALL refresh_continuous_aggregate('bars_1m', $1::timestamptz, $2::timestamptz)`, s.From, s.To)
	r.m.barsRefreshSeconds.Observe(time.Since(start).Seconds())
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available
		r.m.barsRefreshBusy.Inc()
		return errBusy
	case err != nil:
		r.m.barsRefreshErrors.Inc()
		return fmt.Errorf("refreshing bars_1m over [%s, %s): %w", s.From.Format(time.RFC3339), s.To.Format(time.RFC3339), err)
	}
	r.m.barsRefreshes.Inc()
	return nil
}

// countChunks adds the chunks of ticks created after since to
// mds_store_chunks_created_total and returns the creation time of the
// newest. A zero since starts the count at the database's present.
func (r *BarsRefresher) countChunks(ctx context.Context, since time.Time) (time.Time, error) {
	if since.IsZero() {
		if err := r.pool.QueryRow(ctx, `SELECT now()`).Scan(&since); err != nil {
			return since, err
		}
	}
	var (
		n      int64
		newest *time.Time
	)
	err := r.pool.QueryRow(ctx, `SELECT count(*), max(chunk_creation_time)
		FROM timescaledb_information.chunks
		WHERE hypertable_schema = current_schema() AND hypertable_name = 'ticks' AND chunk_creation_time > $1`, since).Scan(&n, &newest)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && newest == nil {
		return since, nil
	}
	if err != nil {
		return since, err
	}
	r.m.chunksCreated.Add(float64(n))
	return *newest, nil
}
