package consume

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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
// partitions the coordinator reported fenced, moves the partitions waiting
// for a move, hands one chunk per fetched partition to the queue in offset
// order, and allows rebalances.
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
		moved, err := c.moveStep(ctx, cl, adm)
		if err == nil {
			err = c.handOff(ctx, cl, fetches, polledGen, moved)
		}
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
// from these records. Partitions moved this round, or waiting for a move,
// are skipped too. Each partition's records are checked against its
// position first (admit): records before it are trimmed, and a position
// below the log start is a gap the chunk records. It returns an error only
// if the queue refuses a chunk of a partition still assigned, for another
// reason than a fence.
func (c *Consumer) handOff(ctx context.Context, cl *kgo.Client, fetches kgo.Fetches, polledGen uint64, moved map[tick.TopicPartition]bool) error {
	for _, f := range fetches {
		for _, t := range f.Topics {
			for i := range t.Partitions {
				p := &t.Partitions[i]
				tp := tick.TopicPartition{Topic: t.Topic, Partition: p.Partition}
				if p.Err != nil {
					c.fetchError(tp, p.Err)
				}
				if ctx.Err() != nil {
					return nil // stopping: what is not in the database is read again
				}
				if len(p.Records) == 0 {
					continue
				}
				ch, gen := c.build(tp, t.TopicID, p, polledGen, moved)
				c.noteEnd(tp, p.HighWatermark)
				if ch == nil {
					continue
				}
				if err := c.submit(ctx, cl, ch, gen); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
			}
		}
	}
	return nil
}

// build makes the chunk of one fetched partition, or returns nil when there
// is nothing to hand on: the partition is gone, moved, waiting for a move,
// reassigned since the poll, or every record was before its position. The
// chunk carries the gaps the partition has to record.
func (c *Consumer) build(tp tick.TopicPartition, topicID [16]byte, p *kgo.FetchPartition, polledGen uint64, moved map[tick.TopicPartition]bool) (*tick.Chunk, uint64) {
	c.mu.Lock()
	st := c.parts[tp]
	if st == nil || st.move != "" || st.gen > polledGen || moved[tp] {
		c.mu.Unlock()
		return nil, 0
	}
	a := admit(p.Records, st.pos, p.LogStartOffset)
	gen, from := st.gen, st.from
	gaps := slices.Clone(st.gaps)
	if a.gap != nil {
		gaps = append(gaps, *a.gap)
	}
	if topicID == [16]byte{} {
		topicID = st.topicID
	}
	c.mu.Unlock()

	if a.trimmed > 0 {
		c.m.skipped.WithLabelValues(skipBeforePosition).Add(float64(a.trimmed))
	}
	if a.skipped > 0 {
		c.m.skipped.WithLabelValues(skipNotDelivered).Add(float64(a.skipped))
	}
	if a.gap != nil {
		c.log.Warn("the partition's position is below the log start; the gap goes with the next write",
			zap.Stringer("partition", tp), zap.Int64("from_offset", a.gap.From), zap.Int64("to_offset", a.gap.To))
	}
	if len(a.records) == 0 {
		return nil, 0
	}
	ch := c.chunk(tp, from, a.records)
	ch.TopicID, ch.Gaps = topicID, gaps
	return ch, gen
}

// fetchError handles a fetch error of one partition: OffsetOutOfRange marks
// it for a move (franz-go never resets by itself), a data loss franz-go
// located (KIP-320) becomes a gap; anything else is logged, rate-limited.
func (c *Consumer) fetchError(tp tick.TopicPartition, err error) {
	var loss *kgo.ErrDataLoss
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return // the poll timed out or we are stopping
	case errors.Is(err, kerr.OffsetOutOfRange):
		c.outOfRange(tp)
		return
	case errors.As(err, &loss):
		c.dataLoss(tp, loss)
		c.log.Warn("kafka lost records of the partition; they are read again and the gap goes with the next write",
			zap.Stringer("partition", tp), zap.Int64("consumed_to", loss.ConsumedTo), zap.Int64("reset_to", loss.ResetTo))
		return
	}
	c.health.note(err)
	if ok, skipped := c.warnLog.allow(); ok {
		c.log.Warn("fetch error", zap.Stringer("partition", tp), zap.Error(err), zap.Int("suppressed", skipped))
	}
}

// tooLargePrefix is how much of an oversized record's key and value a
// too_large dead letter keeps. The whole record stays in Kafka, where the
// dead letter says it is, to be replayed from there.
const tooLargePrefix = 1 << 10

// chunk decodes the records of one partition into a chunk starting at from.
// Keys and values are copied into one allocation, so that a queued chunk
// pins only its own bytes and not franz-go's fetch buffers. A record larger
// than MDS_TICK_MAX_RECORD_BYTES is not copied whole: its dead letter keeps
// its size, a SHA-256 of its value, its first tooLargePrefix bytes and its
// place in Kafka, so that memory and the dead-letter table stay bounded.
func (c *Consumer) chunk(tp tick.TopicPartition, from int64, recs []*kgo.Record) *tick.Chunk {
	oversized := func(r *kgo.Record) bool { return len(r.Value) > c.maxRecord || len(r.Key) > c.maxRecord }
	size := 0
	for _, r := range recs {
		if oversized(r) {
			size += min(len(r.Key), tooLargePrefix) + min(len(r.Value), tooLargePrefix)
		} else {
			size += len(r.Key) + len(r.Value)
		}
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
	dead := func(r *kgo.Record, d tick.DeadLetter) {
		ch.Dead = append(ch.Dead, d)
		c.m.decodeErrors.WithLabelValues(d.Reason).Inc()
		if ok, skipped := c.decodeLog.allow(); ok {
			c.log.Warn("record is not a tick; dead-lettered", zap.String("topic", tp.Topic), zap.Int32("partition", tp.Partition), zap.Int64("offset", r.Offset), zap.String("reason", d.Reason), zap.String("error", d.Err), zap.Int("suppressed", skipped))
		}
	}
	for _, r := range recs {
		if oversized(r) {
			sum := sha256.Sum256(r.Value)
			dead(r, tick.DeadLetter{
				TopicPartition: tp, Offset: r.Offset, Reason: tick.ReasonTooLarge,
				Key:   keep(r.Key[:min(len(r.Key), tooLargePrefix)]),
				Value: keep(r.Value[:min(len(r.Value), tooLargePrefix)]),
				Err: fmt.Sprintf("record of %d bytes (key %d) exceeds MDS_TICK_MAX_RECORD_BYTES (%d); value sha256 %x; only its first %d bytes are stored here, the whole record stays in Kafka at %s@%d",
					len(r.Value), len(r.Key), c.maxRecord, sum, tooLargePrefix, tp, r.Offset),
			})
			continue
		}
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
		dead(r, tick.DeadLetter{TopicPartition: tp, Offset: r.Offset, Key: rec.Key, Value: rec.Value, Reason: reason, Err: err.Error()})
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

// advance records that the queue took tp's chunk ending at next, built
// under assignment gen: next is the From and the position of the next
// chunk, and the gaps the chunk carried are its to record.
func (c *Consumer) advance(tp tick.TopicPartition, gen uint64, next int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.parts[tp]; st != nil && st.gen == gen {
		st.from, st.pos, st.gaps = next, next, nil
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
