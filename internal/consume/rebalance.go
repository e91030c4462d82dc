package consume

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/retry"
	"github.com/market-data-store/mds/internal/tick"
)

// The franz-go group callbacks run on the client's group goroutine. With
// BlockRebalanceOnPoll, OnPartitionsAssigned, OnPartitionsRevoked and
// OnPartitionsLost only run while the poll loop has allowed rebalances; the
// stored-offset seek (adjustOffsets) runs after OnPartitionsAssigned and
// before fetching of the new partitions starts.

// onAssigned opens the new partitions in the queue. Their chunks' From is
// set by adjustOffsets, which franz-go calls next.
func (c *Consumer) onAssigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	tps := flatten(assigned)
	c.handoff.Lock()
	c.mu.Lock()
	for _, tp := range tps {
		c.gen++
		c.parts[tp] = &partState{gen: c.gen, from: -1, pos: -1}
		delete(c.acked, tp) // from an earlier assignment
	}
	n := len(c.parts)
	c.mu.Unlock()
	if len(tps) > 0 {
		c.q.Assign(tps)
	}
	c.handoff.Unlock()

	c.joined.Store(true)
	c.m.assigned.Set(float64(n))
	if len(tps) > 0 {
		c.m.assignedEv.Inc()
		c.log.Info("partitions assigned", zap.Stringers("partitions", tps), zap.Int("assigned", n))
	}
	c.reconcilePauses(cl)
}

// onRevoked stops feeding the partitions, has the queue drop their ticks and
// wait for their in-flight write, resumes any pause on them, and commits
// what was acknowledged to Kafka while the member still owns them.
func (c *Consumer) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	tps := flatten(revoked)
	if len(tps) == 0 {
		return
	}
	c.m.revokedEv.Inc()
	c.mu.Lock()
	for _, tp := range tps {
		c.revoking[tp] = true // acks of the writes awaited below still count
	}
	c.mu.Unlock()
	c.forget(tps)
	c.log.Info("partitions revoked", zap.Stringers("partitions", tps))

	wctx, cancel := context.WithTimeout(ctx, c.cfg.RevokeTimeout)
	c.q.Revoke(wctx, tps, true)
	cancel()
	c.reconcilePauses(cl)

	acked := c.takeAcked(tps)
	c.mu.Lock()
	for _, tp := range tps {
		delete(c.revoking, tp)
	}
	c.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, c.cfg.RevokeTimeout)
	c.commit(cctx, cl, acked)
	cancel()
}

// onLost is onRevoked without waiting and without committing: another
// member may already own the partitions, and this member's group
// generation is gone.
func (c *Consumer) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	tps := flatten(lost)
	c.joined.Store(false)
	if len(tps) == 0 {
		return
	}
	c.m.lostEv.Inc()
	c.forget(tps)
	c.log.Warn("partitions lost", zap.Stringers("partitions", tps))
	c.q.Revoke(context.Background(), tps, false)
	c.reconcilePauses(cl)
	c.takeAcked(tps)
}

// forget stops feeding tps: the poll loop drops their pending chunks.
func (c *Consumer) forget(tps []tick.TopicPartition) {
	c.mu.Lock()
	for _, tp := range tps {
		delete(c.parts, tp)
	}
	n := len(c.parts)
	c.mu.Unlock()
	c.m.assigned.Set(float64(n))
}

// adjustOffsets is the AdjustFetchOffsetsFn: it seeks each newly assigned
// partition that has a stored offset to it, with the stored leader epoch
// (so that franz-go detects a log truncated below it, KIP-320), and records
// the From of the partition's first chunk (the stored offset, or -1 without
// a row). Partitions without a row keep the offset franz-go chose: the
// Kafka committed offset, else MDS_KAFKA_START_OFFSET. A stored offset
// read from a topic whose id has changed since (deleted and created again)
// is void: the partition starts as one never seen, and the first chunk
// records why (locate).
//
// A failed read is retried with backoff until it succeeds or franz-go
// cancels ctx (the session is ending). Meanwhile the member heartbeats and
// fetches nothing for these partitions, so a database outage during
// assignment delays them but never skips data. Returning an error instead
// would make franz-go treat the session as failed (onLost, rejoin) over and
// over; returning a non-context error that wraps context.Canceled would make
// it stop managing the group altogether.
func (c *Consumer) adjustOffsets(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var tps []tick.TopicPartition
	for topic, parts := range offsets {
		for p := range parts {
			tps = append(tps, tick.TopicPartition{Topic: topic, Partition: p})
		}
	}
	// Where franz-go would start a partition without a row: an exact
	// committed offset, or -1 for a start offset it resolves itself.
	chosen := func(_ context.Context, missing []tick.TopicPartition) (map[tick.TopicPartition]int64, error) {
		out := make(map[tick.TopicPartition]int64, len(missing))
		for _, tp := range missing {
			out[tp] = max(offsets[tp.Topic][tp.Partition].EpochOffset().Offset, -1)
		}
		return out, nil
	}
	var places map[tick.TopicPartition]placement
	bo := offsetRetry.Backoff()
	for attempt := 1; ; attempt++ {
		var err error
		places, err = c.locate(ctx, c.adm, tps, chosen)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // franz-go ignores it: the session is revoking or leaving
		}
		c.m.offsetLoadErr.Inc()
		wait := bo.NextBackOff()
		c.log.Warn("reading where assigned partitions start; they wait", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Int("partitions", len(tps)))
		if !retry.Sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}

	seeked := 0
	c.mu.Lock()
	for tp, p := range places {
		if st := c.parts[tp]; st != nil {
			c.place(st, p)
		}
		if p.seek < 0 {
			continue // franz-go's start offset
		}
		o := kgo.NewOffset().At(p.seek)
		if p.epoch >= 0 {
			o = o.WithEpoch(p.epoch)
		}
		offsets[tp.Topic][tp.Partition] = o
		seeked++
	}
	c.mu.Unlock()
	c.log.Info("seeking to stored offsets", zap.Int("partitions", len(tps)), zap.Int("seeked", seeked))
	return offsets, nil
}

// takeAcked removes and returns the acknowledged offsets of tps, or of every
// assigned partition when tps is nil. Acks of partitions no longer assigned
// stay until their revoke takes them.
func (c *Consumer) takeAcked(tps []tick.TopicPartition) map[tick.TopicPartition]kgo.EpochOffset {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[tick.TopicPartition]kgo.EpochOffset)
	if tps == nil {
		for tp, eo := range c.acked {
			if c.parts[tp] != nil {
				out[tp] = eo
				delete(c.acked, tp)
			}
		}
		return out
	}
	for _, tp := range tps {
		if eo, ok := c.acked[tp]; ok {
			out[tp] = eo
			delete(c.acked, tp)
		}
	}
	return out
}

// commitLoop commits acknowledged offsets to Kafka whenever Ack signals,
// one commit at a time: acks arriving during a commit coalesce into the
// next. When last is closed it makes one final commit and returns; ctx is
// the stop deadline, never the end of Run's ctx, so that a stop does not
// cancel the commit in flight.
func (c *Consumer) commitLoop(ctx context.Context, cl *kgo.Client, last <-chan struct{}) {
	for {
		select {
		case <-c.commitKick:
			c.commit(ctx, cl, c.takeAcked(nil))
		case <-last:
			c.commit(ctx, cl, c.takeAcked(nil))
			return
		}
	}
}

// commit commits offs to Kafka and waits for the answer. Failures are
// counted and logged, not returned: these commits only serve lag tooling.
// The offsets of a failed commit go back to be retried with the next one.
func (c *Consumer) commit(ctx context.Context, cl *kgo.Client, offs map[tick.TopicPartition]kgo.EpochOffset) {
	if len(offs) == 0 {
		return
	}
	req := make(map[string]map[int32]kgo.EpochOffset)
	for tp, eo := range offs {
		if req[tp.Topic] == nil {
			req[tp.Topic] = make(map[int32]kgo.EpochOffset)
		}
		req[tp.Topic][tp.Partition] = eo
	}
	var cerr error
	cl.CommitOffsetsSync(ctx, req, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					cerr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, err)
					return
				}
			}
		}
	})
	if cerr == nil {
		return
	}
	// Keep the offsets for the next commit unless a newer ack came in.
	c.mu.Lock()
	for tp, eo := range offs {
		if _, ok := c.acked[tp]; !ok {
			c.acked[tp] = eo
		}
	}
	c.mu.Unlock()
	c.m.commitErrors.Inc()
	if ok, skipped := c.warnLog.allow(); ok {
		c.log.Warn("committing offsets to kafka", zap.Error(cerr), zap.Int("partitions", len(offs)), zap.Int("suppressed", skipped))
	}
}

func flatten(m map[string][]int32) []tick.TopicPartition {
	var out []tick.TopicPartition
	for topic, parts := range m {
		for _, p := range parts {
			out = append(out, tick.TopicPartition{Topic: topic, Partition: p})
		}
	}
	return out
}
