package consume

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/tick"
)

const (
	// pollTimeout bounds one poll, so that the loop re-plans pauses at
	// least this often.
	pollTimeout = 200 * time.Millisecond
	// pausedPollTimeout bounds one poll while some partition is paused.
	// A paused partition resumes only when the loop re-plans, and while
	// every partition is paused the poll cannot return early, so with
	// pollTimeout the workers sat idle for most of each HARD cycle of a
	// backlog (`make bench`: 44,000 rows/s; 105,000-176,000 with this).
	pausedPollTimeout = 10 * time.Millisecond
	// submitSlice bounds one Submit attempt: a full queue holds a
	// pending rebalance back at most this long.
	submitSlice = 100 * time.Millisecond
)

// poll is the member's only polling goroutine. Each round it applies the
// pause plan, polls at most a fifth of the queue's capacity, marks the
// partitions the coordinator reported fenced, resyncs fenced partitions,
// hands one chunk per fetched partition to the queue in offset order, and
// allows rebalances.
func (c *Consumer) poll(ctx context.Context, cl *kgo.Client, adm *kadm.Client) error {
	for ctx.Err() == nil {
		timeout := pollTimeout
		if c.reconcilePauses(cl) > 0 {
			timeout = pausedPollTimeout
		}
		limit := max(1, c.q.Current().Capacity/5)

		pctx, cancel := context.WithTimeout(ctx, timeout)
		fetches := cl.PollRecords(pctx, limit)
		cancel()
		// The records belong to the assignments current now: no rebalance
		// runs until AllowRebalance, which submit may call part-way through
		// the hand-off.
		polledGen := c.generation()
		c.polled.Store(true)
		c.handleFences(ctx)
		moved := c.resync(ctx, cl, adm)
		err := c.handOff(ctx, cl, fetches, polledGen, moved)
		cl.AllowRebalance()
		if err != nil {
			return err
		}
		c.publishLag()
	}
	return nil
}

// handOff submits the polled records, except those of partitions whose
// assignment changed since they were polled (generation above polledGen):
// submit lets rebalances run while the queue is full, and a partition
// revoked and assigned again meanwhile starts from its stored offset, not
// from these records. Partitions moved by a resync are skipped too. It
// returns an error only if the queue refuses a chunk of a partition still
// assigned, for another reason than a fence.
func (c *Consumer) handOff(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches, polledGen uint64, moved map[tick.TopicPartition]bool) error {
	var err error
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err != nil {
			c.fetchError(p.Topic, p.Partition, p.Err)
		}
		if err != nil || ctx.Err() != nil || len(p.Records) == 0 {
			return
		}
		tp := tick.TopicPartition{Topic: p.Topic, Partition: p.Partition}
		c.mu.Lock()
		st := c.parts[tp]
		var gen uint64
		var from int64
		// Revoked, assigned again, or fenced since the records were polled.
		skip := st == nil || st.resync || st.gen > polledGen
		if !skip {
			gen, from = st.gen, st.from
		}
		c.mu.Unlock()
		if skip || moved[tp] {
			return
		}
		if first := p.Records[0].Offset; from >= 0 && first < from {
			// Never expected: records before the offset the chain is at
			// would be written twice. Drop them; the partition's position
			// is past them.
			c.log.Error("polled records start before the partition's next offset; dropped",
				zap.Stringer("partition", tp), zap.Int64("first", first), zap.Int64("from", from))
			return
		}
		ch := c.chunk(tp, from, p.Records)
		c.noteEnd(tp, p.HighWatermark)
		err = c.submit(ctx, cl, ch, gen)
	})
	if err != nil && ctx.Err() != nil {
		return nil // stopping: the chunk is not in the database and will be read again
	}
	return err
}

func (c *Consumer) fetchError(topic string, partition int32, err error) {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return // the poll timed out or we are stopping
	}
	c.health.note(err)
	if ok, skipped := c.warnLog.allow(); ok {
		c.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err), zap.Int("suppressed", skipped))
	}
}

// chunk decodes the records of one partition into a chunk starting at from.
// Keys and values are copied into one allocation, so that a queued chunk
// pins only its own bytes and not franz-go's fetch buffers.
func (c *Consumer) chunk(tp tick.TopicPartition, from int64, recs []*kgo.Record) *tick.Chunk {
	size := 0
	for _, r := range recs {
		size += len(r.Key) + len(r.Value)
	}
	slab := make([]byte, 0, size)
	keep := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		slab = append(slab, b...)
		return slab[len(slab)-len(b) : len(slab) : len(slab)]
	}

	last := recs[len(recs)-1]
	ch := &tick.Chunk{
		TopicPartition: tp,
		From:           from,
		Next:           last.Offset + 1,
		LeaderEpoch:    last.LeaderEpoch,
		Records:        make([]tick.Record, 0, len(recs)),
	}
	for _, r := range recs {
		rec := tick.Record{Offset: r.Offset, Timestamp: r.Timestamp, Key: keep(r.Key), Value: keep(r.Value)}
		err := c.dec.Decode(rec.Value, &rec.Tick)
		if err == nil {
			ch.Records = append(ch.Records, rec)
			continue
		}
		reason := tick.ReasonDecode
		var de *tick.DecodeError
		if errors.As(err, &de) {
			reason = de.Reason
		}
		ch.Dead = append(ch.Dead, tick.DeadLetter{TopicPartition: tp, Offset: r.Offset, Key: rec.Key, Value: rec.Value, Reason: reason, Err: err.Error()})
		c.m.decodeErrors.WithLabelValues(reason).Inc()
		if ok, skipped := c.decodeLog.allow(); ok {
			c.log.Warn("record is not a tick; dead-lettered", zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("offset", r.Offset), zap.String("reason", reason), zap.Error(err), zap.Int("suppressed", skipped))
		}
	}
	c.m.records.Add(float64(len(recs)))
	return ch
}

// submit hands ch, built under assignment gen of its partition, to the
// queue. It tries in slices of submitSlice; between slices it allows a
// pending rebalance to run and re-plans pauses, so that a full queue holds
// neither the group nor the pause policy hostage. A chunk whose partition
// was revoked meanwhile is dropped: its records will be read again by the
// partition's next owner, from the stored offset. A chunk refused because
// its partition was fenced is dropped too, and the partition marked for a
// resync.
func (c *Consumer) submit(ctx context.Context, cl *kgo.Client, ch *tick.Chunk, gen uint64) error {
	for {
		c.handoff.Lock()
		if !c.current(ch.TopicPartition, gen) {
			c.handoff.Unlock()
			return nil
		}
		sctx, cancel := context.WithTimeout(ctx, submitSlice)
		err := c.q.Submit(sctx, ch)
		sliceEnded := sctx.Err() != nil
		cancel()
		if err == nil {
			c.advance(ch.TopicPartition, gen, ch.Next)
		}
		c.handoff.Unlock()

		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case !sliceEnded && c.current(ch.TopicPartition, gen):
			if errors.Is(err, coordinator.ErrRevoked) {
				c.fenced(ctx, ch.TopicPartition, gen, err)
				return nil
			}
			return fmt.Errorf("submitting %s: %w", ch.TopicPartition, err)
		}
		cl.AllowRebalance()
		c.reconcilePauses(cl)
	}
}

// generation is the newest assignment (or resync) generation.
func (c *Consumer) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// current reports whether tp is still in assignment gen.
func (c *Consumer) current(tp tick.TopicPartition, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.parts[tp]
	return st != nil && st.gen == gen
}

// advance makes next the From of tp's next chunk, if tp is still in
// assignment gen.
func (c *Consumer) advance(tp tick.TopicPartition, gen uint64, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.parts[tp]; st != nil && st.gen == gen {
		st.from = next
	}
}

// assignedPartitions lists the assigned partitions.
func (c *Consumer) assignedPartitions() []tick.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]tick.TopicPartition, 0, len(c.parts))
	for tp := range c.parts {
		out = append(out, tp)
	}
	return out
}
