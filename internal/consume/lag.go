package consume

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/tick"
)

// lagEvery is how often the end offsets are listed by default.
const lagEvery = 5 * time.Second

// The lag of a partition is its end offset (high watermark) minus the
// next offset to hand to the queue (the From of its next chunk). End
// offsets come from every fetch and from listing them every lagEvery, so
// that the lag of a paused partition, which is not fetched, keeps growing
// while backpressure holds it. A partition whose position is not known yet
// (no stored row and nothing handed on) counts as no lag.

// lagLoop lists the end offsets of the assigned partitions every
// c.lagEvery until ctx is done, and publishes the lag. A failed listing is
// counted; it is logged once per run of failures, and the lag keeps the
// last end offsets known.
func (c *Consumer) lagLoop(ctx context.Context, adm *kadm.Client) {
	t := time.NewTicker(c.lagEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		topics := c.assignedTopics()
		if len(topics) == 0 {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, c.lagEvery)
		listed, err := adm.ListEndOffsets(lctx, topics...)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = listed.Error()
		}
		c.noteEnds(listed)
		c.publishLag()
		switch {
		case err != nil:
			c.m.lagErrors.Inc()
			if !failing {
				c.log.Warn("listing end offsets for lag; lag of paused partitions is stale until it works", zap.Error(err))
			}
			failing = true
		case failing:
			c.log.Info("listing end offsets for lag works again")
			failing = false
		}
	}
}

// assignedTopics lists the topics of the assigned partitions.
func (c *Consumer) assignedTopics() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]bool)
	var out []string
	for tp := range c.parts {
		if !seen[tp.Topic] {
			seen[tp.Topic] = true
			out = append(out, tp.Topic)
		}
	}
	return out
}

// noteEnds records the end offsets listed for assigned partitions.
func (c *Consumer) noteEnds(listed kadm.ListedOffsets) {
	c.mu.Lock()
	defer c.mu.Unlock()
	listed.Each(func(o kadm.ListedOffset) {
		tp := tick.TopicPartition{Topic: o.Topic, Partition: o.Partition}
		if o.Err == nil && c.parts[tp] != nil {
			c.ends[tp] = max(c.ends[tp], o.Offset)
		}
	})
}

// noteEnd records an end offset seen in a fetch of tp.
func (c *Consumer) noteEnd(tp tick.TopicPartition, end int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.parts[tp] != nil {
		c.ends[tp] = max(c.ends[tp], end)
	}
}

// publishLag sets the lag gauge to the lag summed over assigned partitions,
// forgetting the end offsets of partitions no longer assigned.
func (c *Consumer) publishLag() {
	c.mu.Lock()
	var sum int64
	for tp, end := range c.ends {
		st := c.parts[tp]
		if st == nil {
			delete(c.ends, tp)
			continue
		}
		if st.pos >= 0 {
			sum += max(0, end-st.pos)
		}
	}
	c.mu.Unlock()
	c.m.lag.Set(float64(sum))
}

// EachLag calls fn, under the member's lock (fn must not block nor call
// the Consumer), for every assigned partition whose end offset is known:
// end is the high watermark last seen (from fetches and from the periodic
// listing), position the next offset to hand to the queue, -1 while not
// known yet. The backpressure feedback derives the arrival rate (growth of
// end) and the lag from it.
func (c *Consumer) EachLag(fn func(tp tick.TopicPartition, end, position int64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for tp, end := range c.ends {
		if st := c.parts[tp]; st != nil {
			fn(tp, end, st.pos)
		}
	}
}
