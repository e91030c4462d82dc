package consume

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// PausePlan is the fetch policy for a backpressure level: the set of assigned
// partitions to pause. HARD pauses every assigned partition. SOFT pauses the
// hot ones: those holding more than their fair share (total queued ticks /
// number of assigned partitions) of depths, so cold partitions keep flowing.
// OK pauses none. depths is only read at SOFT; partitions missing from it
// hold nothing.
func PausePlan(level backpressure.Level, assigned []tick.TopicPartition, depths map[tick.TopicPartition]int) map[tick.TopicPartition]bool {
	pause := make(map[tick.TopicPartition]bool)
	switch level {
	case backpressure.Hard:
		for _, tp := range assigned {
			pause[tp] = true
		}
	case backpressure.Soft:
		total := 0
		for _, tp := range assigned {
			total += depths[tp]
		}
		// depth > total/n, without rounding.
		n := len(assigned)
		for _, tp := range assigned {
			if depths[tp]*n > total {
				pause[tp] = true
			}
		}
	}
	return pause
}

// reconcilePauses makes the client's paused set equal the plan for the
// current level, plus the partitions waiting for a move. It resumes every
// paused partition outside that set, those no longer assigned included:
// franz-go keeps pauses across assignments (issues #507, #1272), so a
// partition paused, revoked and assigned again would otherwise never be
// fetched. It returns the number of partitions left paused.
func (c *Consumer) reconcilePauses(cl *kgo.Client) (paused int) {
	c.pauseMu.Lock()
	defer c.pauseMu.Unlock()

	level := c.q.Current().Level
	assigned := c.assignedPartitions()
	clear(c.depths)
	if level == backpressure.Soft {
		c.q.PartitionDepths(c.depths)
	}
	want := PausePlan(level, assigned, c.depths)
	for _, tp := range c.waiting() {
		want[tp] = true // fetched again once moved
	}

	var pause, resume map[string][]int32
	have := cl.PauseFetchPartitions(nil)
	for topic, parts := range have {
		for _, p := range parts {
			if !want[tick.TopicPartition{Topic: topic, Partition: p}] {
				resume = addTP(resume, topic, p)
			}
		}
	}
	for tp := range want {
		if !slices.Contains(have[tp.Topic], tp.Partition) {
			pause = addTP(pause, tp.Topic, tp.Partition)
		}
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(resume)
	}
	if len(pause) > 0 {
		cl.PauseFetchPartitions(pause)
	}
	c.m.paused.Set(float64(len(want)))
	if level != c.level {
		c.log.Info("fetch level changed", zap.Stringer("level", level), zap.Int("paused", len(want)), zap.Int("assigned", len(assigned)))
		c.level = level
	}
	return len(want)
}

func addTP(m map[string][]int32, topic string, p int32) map[string][]int32 {
	if m == nil {
		m = make(map[string][]int32)
	}
	m[topic] = append(m[topic], p)
	return m
}
