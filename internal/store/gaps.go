package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// GapRow is one row of mds_offset_gaps: a range of a partition the consumer
// group moved past without writing its records (see tick.Gap).
type GapRow struct {
	ID            int64
	ConsumerGroup string
	Topic         string
	Partition     int32
	FromOffset    int64
	ToOffset      int64
	LostRecords   int64
	Reason        string
	Detail        string
	DetectedAt    time.Time
}

// GapFilter selects gaps; the zero value selects the newest
// DefaultDeadLetterLimit of every group.
type GapFilter struct {
	Group string // "" for any
	Topic string // "" for any
	Limit int    // 0 for DefaultDeadLetterLimit
}

// ListGaps returns the recorded gaps matching f, newest first.
func (s *Store) ListGaps(ctx context.Context, f GapFilter) ([]GapRow, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultDeadLetterLimit
	}
	rows, err := s.pool.Query(ctx, `SELECT id, consumer_group, topic, partition, from_offset, to_offset,
			lost_records, reason, detail, detected_at
		FROM mds_offset_gaps
		WHERE ($1::text = '' OR consumer_group = $1) AND ($2::text = '' OR topic = $2)
		ORDER BY id DESC
		LIMIT $3`, f.Group, f.Topic, limit)
	if err != nil {
		return nil, fmt.Errorf("reading offset gaps: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (GapRow, error) {
		var g GapRow
		err := row.Scan(&g.ID, &g.ConsumerGroup, &g.Topic, &g.Partition, &g.FromOffset, &g.ToOffset,
			&g.LostRecords, &g.Reason, &g.Detail, &g.DetectedAt)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading offset gaps: %w", err)
	}
	return out, nil
}
