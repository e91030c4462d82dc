package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
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
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		for _, r := range rows {
			if err := enc.Encode(map[string]any{
				"id": r.ID, "group": r.ConsumerGroup, "topic": r.Topic, "partition": r.Partition,
				"from_offset": r.FromOffset, "to_offset": r.ToOffset, "lost_records": r.LostRecords,
				"reason": r.Reason, "detail": r.Detail, "detected_at": r.DetectedAt,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tDETECTED\tGROUP\tPARTITION\tFROM\tTO\tLOST\tREASON\tDETAIL")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s/%d\t%d\t%d\t%d\t%s\t%s\n", r.ID, r.DetectedAt.Format(time.DateTime),
			clip(r.ConsumerGroup, 30), clip(r.Topic, 40), r.Partition, r.FromOffset, r.ToOffset, r.LostRecords, r.Reason, clip(r.Detail, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(g.stderr, "%d gap(s)\n", len(rows))
	return nil
}
