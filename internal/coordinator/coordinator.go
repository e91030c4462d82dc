package coordinator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// Sink is what workers write to (the store). One call is one transaction:
// it commits every chunk of the batch, and the partitions' next offsets,
// or nothing. A *tick.FencedError names partitions owned by another
// member; an error with a Temporary() bool method returning true is worth
// retrying soon; any other error means the batch cannot be written as it
// is, and stalls writing until it is (see Coordinator.Stalled). An error
// with a SQLState() string method names its cause in mds_worker_stall_cause.
type Sink interface {
	Write(ctx context.Context, b *tick.Batch) error
}

// Acker is told the offset ranges of each committed batch (the consumer
// commits them to Kafka for lag tooling). Ack is called from the worker
// goroutines, concurrently, and must not block; for one partition the
// ranges arrive in offset order. A range may name a partition revoked
// while its batch was being written.
type Acker interface {
	Ack(ranges []tick.Range)
}

// Fencer is told, from a worker goroutine, which partitions the store
// fenced: the coordinator has dropped their queued work and closed their
// lanes, so the records of the fenced batch wait in Kafka past the stored
// offset until the consumer reads them again. An Acker that also
// implements Fencer is told at once, rather than at the partition's next
// Submit (ErrRevoked), which may never come if no record arrives. Fenced
// must not block: it runs between the worker's write attempts.
type Fencer interface {
	Fenced(tps []tick.TopicPartition)
}

var (
	// ErrQueueFull is returned by TrySubmit when the chunk does not fit.
	ErrQueueFull = errors.New("coordinator queue full")
	// ErrRevoked is returned by Submit for a partition that is not
	// assigned: never assigned, revoked, or fenced.
	ErrRevoked = errors.New("partition not assigned to the coordinator")
	// ErrClosed is returned by Submit once Drain has started.
	ErrClosed = errors.New("coordinator closed for intake")
)

// Coordinator is the bounded queue in front of the store and the workers
// that write it. Its methods are safe for concurrent use.
type Coordinator struct {
	cfg     Config
	sink    Sink
	log     *zap.Logger
	m       *metrics
	q       *queue
	failing failing
	clk     clock
	acker   atomic.Pointer[Acker]
	running atomic.Bool
}

// Option configures a Coordinator beyond its Config.
type Option func(*options)

type options struct {
	onLevel func(backpressure.Event)
}

// OnLevel has f called on each level transition with the event of the new
// level, in the order of the transitions. f is called with the queue's
// lock held, from the goroutine that caused the transition (Submit, a
// worker, Revoke, Drain): it must not block and must not call the
// Coordinator. Nothing in the process needs it (pausing reads Current,
// the feedback to producers samples Current); it is there to watch the
// level, as the package example does.
func OnLevel(f func(backpressure.Event)) Option {
	return func(o *options) { o.onLevel = f }
}

// New returns a coordinator writing to sink. Metrics are registered on
// reg. Start the workers with Run; tell it where to acknowledge commits
// with SetAcker.
func New(cfg Config, sink Sink, log *zap.Logger, reg prometheus.Registerer, opts ...Option) (*Coordinator, error) {
	return newCoordinator(cfg, sink, log, reg, realClock{}, opts...)
}

func newCoordinator(cfg Config, sink Sink, log *zap.Logger, reg prometheus.Registerer, clk clock, opts ...Option) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator config: %w", err)
	}
	if sink == nil {
		return nil, errors.New("coordinator: nil sink")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(reg, cfg.ID)
	if err != nil {
		return nil, err
	}
	c := &Coordinator{cfg: cfg, sink: sink, log: log.Named("coordinator"), m: m, clk: clk}
	c.failing.gauge = m.circuit.Set
	onLevel := func(e backpressure.Event) {
		m.level.Set(float64(e.Level))
		m.events[e.Level].Inc()
		c.log.Debug("backpressure level changed", zap.Stringer("level", e.Level), zap.Int("queue_size", e.QueueSize))
		if o.onLevel != nil {
			o.onLevel(e)
		}
	}
	c.q = newQueue(cfg, m, onLevel)
	return c, nil
}

// SetAcker sets who is told about committed ranges and, if a implements
// Fencer, about fenced partitions. The consumer is built after the
// coordinator (it needs Submit), so it is handed over here rather than in
// New; call it before the first Submit. Commits and fences that happen
// while no acker is set (or after SetAcker(nil)) are told to nobody.
func (c *Coordinator) SetAcker(a Acker) {
	if a == nil {
		c.acker.Store(nil)
		return
	}
	c.acker.Store(&a)
}

// Run runs the workers until ctx is done and returns nil once they have
// all stopped. A batch being retried when ctx ends is abandoned, not
// committed: its records are still in Kafka past the stored offsets. Call
// Drain first for a graceful stop. Run may be called once.
func (c *Coordinator) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("coordinator: Run called twice")
	}
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() { c.work(ctx) })
	}
	wg.Wait()
	return nil
}

// Submit queues ch, blocking while the queue is full until there is room
// or ctx is done (then it returns ctx.Err()). It returns ErrRevoked
// (wrapped) if ch's partition is not assigned, and ErrClosed once Drain has
// started. The chunks of a partition must be submitted in offset order
// and contiguous (ch.From equal to the previous chunk's Next). The
// coordinator owns ch from then on.
func (c *Coordinator) Submit(ctx context.Context, ch *tick.Chunk) error {
	return c.q.submit(ctx, ch, true)
}

// TrySubmit is Submit that returns ErrQueueFull instead of blocking.
func (c *Coordinator) TrySubmit(ch *tick.Chunk) error {
	return c.q.submit(context.Background(), ch, false)
}

// Assign opens the lanes of tps: their chunks are accepted from now on. A
// partition already assigned keeps its lane.
func (c *Coordinator) Assign(tps []tick.TopicPartition) { c.q.assign(tps) }

// Revoke closes the lanes of tps: Submit refuses them, their queued ticks
// are dropped (counted in mds_coord_dropped_ticks_total; the consumer
// re-reads them from the stored offsets), and a batch holding some of their
// chunks drops them before its next attempt. If wait, Revoke then waits,
// bounded by ctx, for a write attempt that includes them to end; after
// that no write of theirs is in progress and none will start.
func (c *Coordinator) Revoke(ctx context.Context, tps []tick.TopicPartition, wait bool) {
	if c.q.revoke(ctx, tps, wait) {
		c.log.Warn("revoke stopped waiting for an in-flight write", zap.Error(ctx.Err()))
	}
}

// Drain stops intake (Submit returns ErrClosed from now on) and waits until
// every queued tick is written, bounded by ctx and DrainTimeout. Run must be
// running for anything to be written.
func (c *Coordinator) Drain(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DrainTimeout)
	defer cancel()
	return c.q.drain(ctx)
}

// Current returns the current queue size and level. Its reason is that of
// the last transition (low_watermark before any).
func (c *Coordinator) Current() backpressure.Event { return c.q.current() }

// Stalled reports whether writing is stalled, and why: some batch failed
// with an error that is not temporary (schema or privilege missing, every
// row refused, a panic in the sink). While it is, the level is HARD, no
// other batch is written, and the stalled batches are retried on the retry
// schedule; the first that commits ends the stall.
func (c *Coordinator) Stalled() (Stall, bool) { return c.q.stalled() }

// PartitionDepths clears dst and fills it with the ticks queued (not yet
// taken by a worker) for every assigned partition.
func (c *Coordinator) PartitionDepths(dst map[tick.TopicPartition]int) { c.q.partitionDepths(dst) }
