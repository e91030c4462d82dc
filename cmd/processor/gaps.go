package main

import (
	"fmt"
	"time"

	"github.com/market-data-store/mds/internal/store"
)

// gapsCmd lists mds_offset_gaps: ranges of partitions the service moved
// past without writing their records because they were gone from Kafka.
type gapsCmd struct {
	Group string `help:"Only this consumer group (default: every group)."`
	Topic string `help:"Only this topic."`
	Limit int    `default:"100" help:"At most this many, newest first."`
	JSON  bool   `help:"One JSON object per line instead of a table."`
}

func (c gapsCmd) Run(g *globals) error {
	st, _, _, err := g.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	rows, err := st.ListGaps(g.ctx, store.GapFilter{Group: c.Group, Topic: c.Topic, Limit: c.Limit})
	if err != nil {
		return err
	}
	return printRows(g, c.JSON, rows, "gap(s)", "ID\tDETECTED\tGROUP\tPARTITION\tFROM\tTO\tLOST\tREASON\tDETAIL",
		func(r store.GapRow) any {
			return map[string]any{
				"id": r.ID, "group": r.ConsumerGroup, "topic": r.Topic, "partition": r.Partition,
				"from_offset": r.FromOffset, "to_offset": r.ToOffset, "lost_records": r.LostRecords,
				"reason": r.Reason, "detail": r.Detail, "detected_at": r.DetectedAt,
			}
		},
		func(r store.GapRow) string {
			return fmt.Sprintf("%d\t%s\t%s\t%s/%d\t%d\t%d\t%d\t%s\t%s", r.ID, r.DetectedAt.Format(time.DateTime),
				clip(r.ConsumerGroup, 30), clip(r.Topic, 40), r.Partition, r.FromOffset, r.ToOffset, r.LostRecords, r.Reason, clip(r.Detail, 100))
		})
}
