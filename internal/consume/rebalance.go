package consume

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

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
		c.parts[tp] = &partState{gen: c.gen, from: -1}
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
// partition that has a stored offset to it, and records the From of the
// partition's first chunk (the stored offset, or -1 without a row).
// Partitions without a row keep the offset franz-go chose: the Kafka
// committed offset, else MDS_KAFKA_START_OFFSET.
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
	var stored map[tick.TopicPartition]int64
	for attempt := 1; ; attempt++ {
		var err error
		stored, err = c.offsets.LoadOffsets(ctx, c.cfg.Group, tps)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err() // franz-go ignores it: the session is revoking or leaving
		}
		c.m.offsetLoadErr.Inc()
		wait := retryDelay(attempt)
		c.log.Warn("loading stored offsets; partitions wait", zap.Error(err), zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Int("partitions", len(tps)))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}

	c.mu.Lock()
	for _, tp := range tps {
		st := c.parts[tp]
		if st == nil {
			continue
		}
		if off, ok := stored[tp]; ok {
			st.from = off
		} else {
			st.from = -1
		}
	}
	c.mu.Unlock()
	for tp, off := range stored {
		if parts := offsets[tp.Topic]; parts != nil {
			if _, ok := parts[tp.Partition]; ok {
				parts[tp.Partition] = kgo.NewOffset().At(off) // epoch -1: no data-loss check against a stale epoch
			}
		}
	}
	c.log.Info("seeking to stored offsets", zap.Int("partitions", len(tps)), zap.Int("stored", len(stored)))
	return offsets, nil
}

// retryDelay is 100ms doubled per attempt, at most 5s.
func retryDelay(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 6)
	return min(d, 5*time.Second)
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
