package coordinator

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
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

// work is one worker: it takes batches and writes each until it is
// committed or has nothing left, until ctx is done.
func (c *Coordinator) work(ctx context.Context) {
	c.m.workersAlive.Inc()
	defer c.m.workersAlive.Dec()
	bo := &backoff.ExponentialBackOff{
		InitialInterval: c.cfg.Retry.InitialBackoff,
		Multiplier:      c.cfg.Retry.Multiplier,
		MaxInterval:     c.cfg.Retry.MaxBackoff,
	}
	if c.cfg.Retry.Jitter {
		bo.RandomizationFactor = 0.5
	}
	for {
		b := c.q.take(ctx)
		if b == nil {
			return
		}
		c.write(ctx, b, bo)
		c.q.release(b)
	}
}

// write writes b until it is committed, its partitions are all revoked or
// fenced, or ctx is done. Temporary errors are retried within a round of
// MaxAttempts attempts with exponential backoff; a failed round (or any
// other error, or a panic) is one breaker failure, after which the batch
// waits: MaxBackoff while the breaker stays closed, else until it lets a
// probe through. A fenced error drops the fenced partitions, tells the
// acker (if it is a Fencer) and retries the rest at once.
func (c *Coordinator) write(ctx context.Context, b *batch, bo *backoff.ExponentialBackOff) {
	bo.Reset()
	attempts := 0 // in this round
	retry := false
	for ctx.Err() == nil {
		ok, probe, wait, changed := c.br.allow(c.clk.Now())
		if !ok {
			c.clk.Sleep(ctx, wait, changed)
			continue
		}
		if !c.q.begin(b) {
			if probe {
				c.br.abandon()
			}
			return
		}
		if retry {
			c.m.retries.Inc()
		}
		retry = true
		start := time.Now()
		err := c.attempt(ctx, b)
		elapsed := time.Since(start)
		c.q.end(b)
		if err == nil {
			c.br.success()
			c.committed(b, elapsed)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if fenced, ok := errors.AsType[*tick.FencedError](err); ok {
			c.m.writeErrors[classFenced].Inc()
			c.br.success() // the database answered
			c.log.Info("partitions fenced by another member; dropping their work",
				zap.Stringers("partitions", fenced.Partitions))
			c.tellFenced(c.q.fence(b, fenced.Partitions))
			continue
		}
		class := classify(err)
		c.m.writeErrors[class].Inc()
		attempts++
		if class == classTemporary && !probe && attempts < c.cfg.Retry.MaxAttempts {
			c.log.Debug("write failed; retrying", zap.Error(err), zap.Int("attempt", attempts))
			c.clk.Sleep(ctx, bo.NextBackOff(), nil)
			continue
		}
		c.br.failure(c.clk.Now(), probe)
		fields := []zap.Field{zap.Error(err), zap.String("class", class), zap.Int("attempts", attempts), zap.Int("rows", b.Rows())}
		if p, ok := errors.AsType[*panicError](err); ok {
			fields = append(fields, zap.ByteString("stack", p.stack))
		}
		c.log.Warn("write failed; batch kept for a later attempt", fields...)
		attempts = 0
		bo.Reset()
		if c.br.current() == circuitClosed {
			c.clk.Sleep(ctx, c.cfg.Retry.MaxBackoff, nil)
		}
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

// committed records a committed batch and acknowledges its ranges.
func (c *Coordinator) committed(b *batch, elapsed time.Duration) {
	c.m.batches.Inc()
	c.m.rows.Add(float64(b.Rows()))
	c.m.writeLatency.Observe(elapsed.Seconds())
	now := time.Now()
	for _, ch := range b.Chunks {
		for i := range ch.Records {
			if ts := ch.Records[i].Timestamp; !ts.IsZero() {
				c.m.ingestLatency.Observe(now.Sub(ts).Seconds())
			}
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
