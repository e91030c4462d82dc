package coordinator

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/tick"
)

// panicError is a panic recovered from Sink.Write.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("sink panicked: %v", e.value) }

// classify names the class of a failed write (fenced errors are handled
// before).
func classify(err error) string {
	if _, ok := errors.AsType[*panicError](err); ok {
		return classPanic
	}
	if t, ok := errors.AsType[interface {
		error
		Temporary() bool
	}](err); ok && t.Temporary() {
		return classTemporary
	}
	return classPermanent
}

// stallCause is the cause label of a write that cannot succeed: the
// SQLSTATE of the error if it has one (pgx's *pgconn.PgError, among
// others, has a SQLState method), "panic", or "error".
func stallCause(err error) string {
	if _, ok := errors.AsType[*panicError](err); ok {
		return "panic"
	}
	if s, ok := errors.AsType[interface {
		error
		SQLState() string
	}](err); ok && s.SQLState() != "" {
		return s.SQLState()
	}
	return "error"
}

// warnEvery spaces the warnings about one batch that keeps failing.
const warnEvery = 30 * time.Second

// work is one worker: it takes batches and writes each until it is
// committed or has nothing left, until ctx is done.
func (c *Coordinator) work(ctx context.Context) {
	c.m.workersAlive.Inc()
	defer c.m.workersAlive.Dec()
	bo := c.cfg.Retry.policy().Backoff()
	for {
		b := c.q.take(ctx)
		if b == nil {
			return
		}
		c.write(ctx, b, bo)
		c.q.clearStall(b)
		c.q.release(b)
	}
}

// write writes b until it is committed, its partitions are all revoked or
// fenced, or ctx is done. Every failed attempt is followed by the next
// wait of the retry policy, whatever the error, so that the batch commits
// within one wait of the database answering again. An error that is not
// temporary (or a panic) stalls b (queue.setStall) until it commits. A
// fenced error drops the fenced partitions, tells the acker (if it is a
// Fencer) and retries the rest at once.
func (c *Coordinator) write(ctx context.Context, b *batch, bo *backoff.ExponentialBackOff) {
	bo.Reset()
	failures := 0 // consecutive failed attempts of b
	var warned time.Time
	defer func() { c.failing.end(failures >= c.cfg.Breaker.FailureThreshold) }()
	for ctx.Err() == nil {
		if !c.q.begin(b) {
			return
		}
		if failures > 0 {
			c.m.retries.Inc()
		}
		start := time.Now()
		err := c.attempt(ctx, b)
		elapsed := time.Since(start)
		c.q.end(b)
		if err == nil {
			c.committed(b, elapsed)
			if failures >= c.cfg.Retry.MaxAttempts || !warned.IsZero() {
				c.log.Info("batch written after failed attempts", zap.Int("attempts", failures+1), zap.Int("rows", b.Rows()))
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if fenced, ok := errors.AsType[*tick.FencedError](err); ok {
			c.m.writeErrors[classFenced].Inc()
			c.log.Info("partitions fenced by another member; dropping their work",
				zap.Stringers("partitions", fenced.Partitions))
			c.tellFenced(c.q.fence(b, fenced.Partitions))
			continue
		}
		class := classify(err)
		c.m.writeErrors[class].Inc()
		failures++
		if failures == c.cfg.Breaker.FailureThreshold {
			c.failing.begin()
		}
		fields := []zap.Field{zap.Error(err), zap.String("class", class), zap.Int("attempts", failures), zap.Int("rows", b.Rows())}
		if class != classTemporary {
			cause := stallCause(err)
			c.q.setStall(b, cause, err)
			fields = append(fields, zap.String("cause", cause))
		}
		switch {
		case (class != classTemporary || failures >= c.cfg.Retry.MaxAttempts) && time.Since(warned) >= warnEvery:
			if p, ok := errors.AsType[*panicError](err); ok {
				fields = append(fields, zap.ByteString("stack", p.stack))
			}
			msg := "write failing; batch kept and retried"
			if class != classTemporary {
				msg = "write cannot succeed as it is; writing stalled, batch kept and retried"
			}
			c.log.Warn(msg, fields...)
			warned = time.Now()
		case warned.IsZero():
			c.log.Debug("write failed; retrying", fields...)
		}
		c.clk.Sleep(ctx, bo.NextBackOff())
	}
}

// failing counts the batches that have failed FailureThreshold consecutive
// attempts, for mds_coord_circuit_state.
type failing struct {
	mu    sync.Mutex
	n     int
	gauge func(float64)
}

func (f *failing) begin() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n++; f.n == 1 {
		f.gauge(1)
	}
}

// end is called when a batch's write ends; counted tells whether begin was
// called for it.
func (f *failing) end(counted bool) {
	if !counted {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 {
		f.gauge(0)
	}
}

// tellFenced tells the acker, if it is a Fencer, that the store fenced tps.
func (c *Coordinator) tellFenced(tps []tick.TopicPartition) {
	if len(tps) == 0 {
		return
	}
	a := c.acker.Load()
	if a == nil {
		return
	}
	if f, ok := (*a).(Fencer); ok {
		f.Fenced(tps)
	}
}

// attempt calls the sink once, turning a panic into a *panicError.
func (c *Coordinator) attempt(ctx context.Context, b *batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return c.sink.Write(ctx, &b.Batch)
}

// committed records a committed batch and acknowledges its ranges. The
// ingest latency is observed once per chunk, for its oldest record: the
// per-record observations cost more than the rest of the bookkeeping, and
// a chunk's records were fetched together.
func (c *Coordinator) committed(b *batch, elapsed time.Duration) {
	c.m.batches.Inc()
	c.m.rows.Add(float64(b.Rows()))
	c.m.writeLatency.Observe(elapsed.Seconds())
	now := time.Now()
	for _, ch := range b.Chunks {
		var oldest time.Time
		for i := range ch.Records {
			if ts := ch.Records[i].Timestamp; !ts.IsZero() && (oldest.IsZero() || ts.Before(oldest)) {
				oldest = ts
			}
		}
		if !oldest.IsZero() {
			c.m.ingestLatency.Observe(now.Sub(oldest).Seconds())
		}
	}
	a := c.acker.Load()
	if a == nil {
		return
	}
	ranges, err := b.Ranges()
	if err != nil { // Submit keeps a partition's chunks contiguous: a bug
		c.log.Error("not acknowledging a committed batch", zap.Error(err))
		return
	}
	(*a).Ack(ranges)
}
