package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/tick"
)

// resyncTimeout bounds one attempt to read where fenced partitions resume.
// The attempt runs while rebalances are held back, so it must stay short of
// the rebalance timeout; a failed attempt is retried in a later round.
const resyncTimeout = 2 * time.Second

// A partition is fenced when the database refused one of its chunks
// because the stored offset was not the chunk's From: another writer (a
// zombie that still believed it owned the partition) committed first. The
// coordinator then drops the partition's queued work and closes its lane,
// so its next Submit fails with coordinator.ErrRevoked although the group
// still gives the partition to this member. The member resyncs it instead
// of failing: fenced marks it, resync moves it to the stored offset. The
// coordinator also tells Fenced at once, so that a partition that receives
// no new record (and so has no next Submit) is resynced too.

// errFencedByStore is the cause logged for a fence told through Fenced.
var errFencedByStore = errors.New("the store refused a batch of the partition: another writer committed first")

// Fenced is the coordinator.Fencer: the store fenced tps. It runs on a
// coordinator worker and must not block, so it only notes each partition
// still assigned, with its assignment generation, for the poll loop
// (handleFences). fenced cannot run here: it waits for the hand-off lock,
// which a Submit waiting for this worker to free room may hold, and for the
// queue's Revoke. A partition already marked for a resync (its Submit was
// refused first) is skipped. Should a Submit find the fence and the resync
// end before this notice arrives, the partition is resynced once more: a
// re-read from the stored offset, which loses and duplicates nothing.
func (c *Consumer) Fenced(tps []tick.TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range tps {
		if st := c.parts[tp]; st != nil && !st.resync {
			c.fences[tp] = st.gen
		}
	}
}

// handleFences marks the partitions told by Fenced for a resync. fenced
// ignores a partition whose generation has changed since: revoked or
// reassigned by a rebalance, or already fenced through a refused Submit.
func (c *Consumer) handleFences(ctx context.Context) {
	c.mu.Lock()
	if len(c.fences) == 0 {
		c.mu.Unlock()
		return
	}
	fences := c.fences
	c.fences = make(map[tick.TopicPartition]uint64)
	c.mu.Unlock()
	for tp, gen := range fences {
		c.fenced(ctx, tp, gen, errFencedByStore)
	}
}

// fenced marks tp, refused by the queue while still in assignment gen, for
// a resync: the chunks built so far are dropped (new generation), nothing
// more is fed or fetched (it is paused), and the queue forgets it and
// finishes its in-flight write, so that the stored offset read next is
// final.
func (c *Consumer) fenced(ctx context.Context, tp tick.TopicPartition, gen uint64, cause error) {
	c.handoff.Lock()
	defer c.handoff.Unlock()
	c.mu.Lock()
	st := c.parts[tp]
	if st == nil || st.gen != gen {
		c.mu.Unlock()
		return
	}
	c.gen++
	st.gen, st.resync = c.gen, true
	from := st.from
	c.mu.Unlock()
	c.log.Info("partition fenced while assigned; resyncing", zap.Stringer("partition", tp), zap.Int64("from", from), zap.Error(cause))
	wctx, cancel := context.WithTimeout(ctx, c.cfg.RevokeTimeout)
	c.q.Revoke(wctx, []tick.TopicPartition{tp}, true)
	cancel()
}

// resync moves the partitions marked by fenced to where they resume: the
// stored offset (which becomes their From), or, without a row, where a new
// assignment would start (From -1). It runs on the poll goroutine right
// after a poll, while no rebalance can run, as franz-go's SetOffsets wants;
// SetOffsets also discards every fetch buffered before it. It returns the
// partitions moved: records of them already polled come from before the
// move and must be dropped.
//
// A failed read is counted in mds_consumer_offset_load_errors_total and
// retried in a later round with backoff; meanwhile the partitions stay
// paused and nothing is skipped.
func (c *Consumer) resync(ctx context.Context, cl *kgo.Client, adm *kadm.Client) map[tick.TopicPartition]bool {
	tps := c.resyncing()
	if len(tps) == 0 {
		c.resyncTries, c.resyncAt = 0, time.Time{} // those waiting were revoked
		return nil
	}
	if time.Now().Before(c.resyncAt) {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, resyncTimeout)
	seek, from, err := c.resumeOffsets(rctx, adm, tps)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		c.resyncTries++
		wait := retryDelay(c.resyncTries)
		c.resyncAt = time.Now().Add(wait)
		c.m.offsetLoadErr.Inc()
		c.log.Warn("loading offsets to resync; partitions wait", zap.Error(err), zap.Int("attempt", c.resyncTries), zap.Duration("retry_in", wait), zap.Stringers("partitions", tps))
		return nil
	}
	c.resyncTries, c.resyncAt = 0, time.Time{}

	moved := make(map[tick.TopicPartition]bool, len(tps))
	set := make(map[string]map[int32]kgo.EpochOffset)
	c.handoff.Lock()
	defer c.handoff.Unlock()
	c.mu.Lock()
	for _, tp := range tps {
		st := c.parts[tp]
		if st == nil || !st.resync {
			continue // revoked meanwhile
		}
		st.from, st.resync = from[tp], false
		moved[tp] = true
		if set[tp.Topic] == nil {
			set[tp.Topic] = make(map[int32]kgo.EpochOffset)
		}
		set[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: seek[tp]}
	}
	c.mu.Unlock()
	cl.SetOffsets(set)
	assign := make([]tick.TopicPartition, 0, len(moved))
	for tp := range moved {
		assign = append(assign, tp)
		c.m.resyncs.Inc()
		c.log.Warn("partition resynced to the stored offset", zap.Stringer("partition", tp), zap.Int64("from", from[tp]), zap.Int64("offset", seek[tp]))
	}
	c.q.Assign(assign)
	return moved
}

// resyncing lists the partitions waiting for a resync.
func (c *Consumer) resyncing() []tick.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []tick.TopicPartition
	for tp, st := range c.parts {
		if st.resync {
			out = append(out, tp)
		}
	}
	return out
}

// resumeOffsets returns, for each of tps, the offset to fetch from and the
// From of its next chunk: the stored offset for both, or, for a partition
// without a row, the Kafka committed offset (else the start offset
// MDS_KAFKA_START_OFFSET names) and -1, as on assignment.
func (c *Consumer) resumeOffsets(ctx context.Context, adm *kadm.Client, tps []tick.TopicPartition) (seek, from map[tick.TopicPartition]int64, err error) {
	stored, err := c.offsets.LoadOffsets(ctx, c.cfg.Group, tps)
	if err != nil {
		return nil, nil, fmt.Errorf("loading stored offsets: %w", err)
	}
	seek = make(map[tick.TopicPartition]int64, len(tps))
	from = make(map[tick.TopicPartition]int64, len(tps))
	var missing []tick.TopicPartition
	for _, tp := range tps {
		if off, ok := stored[tp]; ok {
			seek[tp], from[tp] = off, off
			continue
		}
		from[tp] = -1
		missing = append(missing, tp)
	}
	if len(missing) == 0 {
		return seek, from, nil
	}

	committed, err := adm.FetchOffsets(ctx, c.cfg.Group)
	if err != nil {
		return nil, nil, fmt.Errorf("fetching kafka committed offsets: %w", err)
	}
	var topics []string
	var uncommitted []tick.TopicPartition
	for _, tp := range missing {
		if o, ok := committed.Lookup(tp.Topic, tp.Partition); ok && o.Err == nil && o.At >= 0 {
			seek[tp] = o.At
			continue
		}
		uncommitted = append(uncommitted, tp)
		if !slices.Contains(topics, tp.Topic) {
			topics = append(topics, tp.Topic)
		}
	}
	if len(uncommitted) == 0 {
		return seek, from, nil
	}
	list := adm.ListStartOffsets
	if c.cfg.StartOffset == "latest" {
		list = adm.ListEndOffsets
	}
	listed, err := list(ctx, topics...)
	if err != nil {
		return nil, nil, fmt.Errorf("listing %s offsets: %w", c.cfg.StartOffset, err)
	}
	for _, tp := range uncommitted {
		o, ok := listed.Lookup(tp.Topic, tp.Partition)
		switch {
		case !ok:
			return nil, nil, fmt.Errorf("listing %s offsets: none for %s", c.cfg.StartOffset, tp)
		case o.Err != nil:
			return nil, nil, fmt.Errorf("listing %s offset of %s: %w", c.cfg.StartOffset, tp, o.Err)
		}
		seek[tp] = o.Offset
	}
	return seek, from, nil
}
