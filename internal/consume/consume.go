package consume

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// Queue is the coordinator side of the hand-off.
type Queue interface {
	// Submit blocks while the queue is full. It fails when ctx is done,
	// and with an error wrapping coordinator.ErrRevoked once the chunk's
	// partition has been revoked from the queue or fenced by the
	// database (then it stays closed until Assign).
	Submit(ctx context.Context, ch *tick.Chunk) error
	// Assign opens the partitions for Submit.
	Assign(tps []tick.TopicPartition)
	// Revoke drops the partitions' queued ticks, closes them for Submit
	// and, when wait is set, waits (bounded by ctx) for their in-flight
	// write to finish.
	Revoke(ctx context.Context, tps []tick.TopicPartition, wait bool)
	// Drain writes everything queued and returns when it is in the
	// database, or when ctx is done.
	Drain(ctx context.Context) error
	// PartitionDepths clears dst and stores in it the number of queued
	// ticks of partitions; a partition absent from dst holds none.
	PartitionDepths(dst map[tick.TopicPartition]int)
	// Current is the queue's present state: Level and Capacity are read.
	Current() backpressure.Event
}

// OffsetStore reads the next offsets stored with the data.
type OffsetStore interface {
	// LoadOffsets returns what is stored for each of tps that has a row
	// for group (next offset, leader epoch, topic id); partitions without
	// a row are absent.
	LoadOffsets(ctx context.Context, group string, tps []tick.TopicPartition) (map[tick.TopicPartition]tick.StoredOffset, error)
}

// Consumer is one member of the consumer group: it fetches tick records,
// decodes them and hands them to a Queue as Chunks. Build it with New, run it
// with Run, stop it with Stop.
type Consumer struct {
	cfg       Config
	q         Queue
	offsets   OffsetStore
	dec       *tick.Decoder // poll goroutine only
	maxRecord int           // MDS_TICK_MAX_RECORD_BYTES
	opts      []kgo.Opt
	log       *zap.Logger
	m         *metrics

	// handoff is held by the poll loop around each Submit attempt and by
	// OnPartitionsAssigned, so that a chunk built under one assignment of
	// its partition is never submitted under the next one.
	handoff sync.Mutex

	mu       sync.Mutex
	gen      uint64                                  // assignment counter
	parts    map[tick.TopicPartition]*partState      // assigned partitions
	acked    map[tick.TopicPartition]kgo.EpochOffset // written to the database, not yet committed to Kafka
	revoking map[tick.TopicPartition]bool            // revoked, their in-flight writes awaited by onRevoked

	pauseMu sync.Mutex
	depths  map[tick.TopicPartition]int // scratch for PartitionDepths
	level   backpressure.Level          // last level applied

	ends     map[tick.TopicPartition]int64 // end offsets of assigned partitions, under mu
	lagEvery time.Duration                 // how often lagLoop lists end offsets

	fences map[tick.TopicPartition]uint64 // told by Fenced, not yet handled: assignment generation; under mu

	moveTries *backoff.ExponentialBackOff // waits between failed moves; poll goroutine only
	moveAt    time.Time                   // next move attempt; poll goroutine only

	adm *kadm.Client // on the member's client (never closed on its own); set by admHook

	commitKick chan struct{} // size 1: Ack wakes the committer

	joined, polled atomic.Bool
	health         health // last fetch error that stops consuming (health.go)

	decodeLog, warnLog sometimes

	life     sync.Mutex
	started  bool
	stopping bool
	stopCtx  context.Context
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when Run returns
	stopErr  error         // written before done is closed
}

// New returns a Consumer for cfg. opts carry the broker connection (seeds,
// TLS, SASL, logging); the group, topic and fetch options come from cfg.
// Nothing connects before Run.
func New(cfg Config, q Queue, offsets OffsetStore, limits tick.Limits, opts []kgo.Opt, log *zap.Logger, reg prometheus.Registerer) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := limits.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("registering consumer metrics: %w", err)
	}
	return &Consumer{
		cfg:        cfg,
		q:          q,
		offsets:    offsets,
		dec:        tick.NewDecoder(limits),
		maxRecord:  limits.MaxRecordBytes,
		opts:       opts,
		log:        log.Named("consume"),
		m:          m,
		parts:      make(map[tick.TopicPartition]*partState),
		acked:      make(map[tick.TopicPartition]kgo.EpochOffset),
		revoking:   make(map[tick.TopicPartition]bool),
		depths:     make(map[tick.TopicPartition]int),
		ends:       make(map[tick.TopicPartition]int64),
		fences:     make(map[tick.TopicPartition]uint64),
		lagEvery:   lagEvery,
		commitKick: make(chan struct{}, 1),
		moveTries:  offsetRetry.Backoff(),
		decodeLog:  sometimes{every: time.Second},
		warnLog:    sometimes{every: 10 * time.Second},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}, nil
}

// Ready reports whether the member has joined the group and polled since, and
// is not stopping.
func (c *Consumer) Ready() bool { return c.joined.Load() && c.polled.Load() }

// Ack records that ranges are committed in the database. Their next offsets
// are committed to Kafka in the background, newest per partition only, for
// lag tooling; a failed Kafka commit is counted, never fatal. Acks of
// partitions no longer assigned (a write that ended after its revoke, or
// after the partition was lost) are dropped: their new owner commits its
// own. Acks that arrive while onRevoked waits for the in-flight writes are
// kept for its final commit. Ack does not block on Kafka.
func (c *Consumer) Ack(ranges []tick.Range) {
	c.mu.Lock()
	for _, r := range ranges {
		if c.parts[r.TopicPartition] == nil && !c.revoking[r.TopicPartition] {
			continue
		}
		if cur, ok := c.acked[r.TopicPartition]; !ok || r.Next > cur.Offset {
			c.acked[r.TopicPartition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Next}
		}
	}
	c.mu.Unlock()
	select {
	case c.commitKick <- struct{}{}:
	default:
	}
}

// Run joins the group and feeds the queue until ctx is done or Stop is
// called, then shuts down (see the package doc for the order) and returns.
// It returns an error only when consuming cannot go on; after Stop or the
// end of ctx it returns nil. Run may be called once.
func (c *Consumer) Run(ctx context.Context) error {
	c.life.Lock()
	if c.started {
		c.life.Unlock()
		return errors.New("consumer already run")
	}
	c.started = true
	stopped := c.stopping
	c.life.Unlock()
	defer close(c.done)
	if stopped {
		return nil
	}

	opts := append(append([]kgo.Opt{}, c.opts...), c.cfg.groupOpts()...)
	opts = append(opts,
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
		kgo.AdjustFetchOffsetsFn(c.adjustOffsets),
		kgo.WithHooks(admHook{c}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("creating kafka client: %w", err)
	}
	adm := c.adm // set by admHook before the client started anything

	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	// Commits outlive ctx: the last ones are made during shutdown, and
	// only the stop deadline cuts them short.
	commitCtx, cancelCommits := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCommits()
	lastCommit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-c.stop:
			stopLoop()
		case <-loopCtx.Done():
		}
	})
	wg.Go(func() { c.commitLoop(commitCtx, cl, lastCommit) })
	wg.Go(func() { c.lagLoop(loopCtx, adm) })

	loopErr := c.poll(loopCtx, cl, adm)

	// Shutdown: polling has stopped and rebalances are allowed.
	c.polled.Store(false)
	c.life.Lock()
	graceful, stopCtx := c.stopping, c.stopCtx
	c.life.Unlock()
	if !graceful {
		var cancel context.CancelFunc
		stopCtx, cancel = context.WithTimeout(context.WithoutCancel(ctx), c.cfg.RevokeTimeout)
		defer cancel()
	}
	if graceful && loopErr == nil {
		if err := c.q.Drain(stopCtx); err != nil {
			c.stopErr = fmt.Errorf("draining queue: %w", err)
		}
	}
	// The committer finishes the commit in flight, if any, then commits
	// everything acknowledged once more and returns; the stop deadline
	// bounds both.
	defer context.AfterFunc(stopCtx, cancelCommits)()
	close(lastCommit)
	stopLoop()
	wg.Wait()
	// Leaving the group revokes what is left (onRevoked) and lets the
	// group move it at once; with static membership the partitions wait
	// for this instance until the session timeout.
	cl.CloseAllowingRebalance()
	c.joined.Store(false)
	return loopErr
}

// Stop stops Run gracefully: it stops polling, drains the queue into the
// database, commits the acknowledged offsets to Kafka and leaves the group,
// all bounded by ctx. It waits for Run to return and reports a failed drain.
// Stop before Run makes Run return at once.
func (c *Consumer) Stop(ctx context.Context) error {
	c.life.Lock()
	if !c.stopping {
		c.stopping, c.stopCtx = true, ctx
		close(c.stop)
	}
	started := c.started
	c.life.Unlock()
	if !started {
		return nil
	}
	select {
	case <-c.done:
		return c.stopErr
	case <-ctx.Done():
		return fmt.Errorf("stopping consumer: %w", ctx.Err())
	}
}

// admHook gives the consumer an admin client on its own Kafka client as
// the client is built, before any of its goroutines (and so any group
// callback) runs.
type admHook struct{ c *Consumer }

func (h admHook) OnNewClient(cl *kgo.Client) { h.c.adm = kadm.NewClient(cl) }
