package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/market-data-store/mds/internal/tick"
)

// DeadLetterRow is one row of mds_dead_letters.
type DeadLetterRow struct {
	ID            int64
	ConsumerGroup string // the group whose consumer stored it ("" before groups were recorded)
	tick.DeadLetter
	CreatedAt  time.Time
	ReplayedAt *time.Time // nil until MarkReplayed
}

// DeadLetterFilter selects dead letters; the zero value selects the first
// DefaultDeadLetterLimit of all of them.
type DeadLetterFilter struct {
	Group     string // "" for any
	Topic     string // "" for any
	Partition *int32 // nil for any
	Reason    string // "" for any; one of the tick.Reason constants
	MinID     int64  // inclusive; 0 for no bound
	MaxID     int64  // inclusive; 0 for no bound
	Pending   bool   // only those not replayed yet
	Limit     int    // 0 for DefaultDeadLetterLimit
}

// DefaultDeadLetterLimit is the page size of ListDeadLetters when the
// filter sets none.
const DefaultDeadLetterLimit = 100

const deadLetterColumns = `id, consumer_group, topic, partition, "offset", key, value, reason, error, created_at, replayed_at`

// ListDeadLetters returns the dead letters matching f, in id order.
func (s *Store) ListDeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetterRow, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultDeadLetterLimit
	}
	return s.queryDeadLetters(ctx, `SELECT `+deadLetterColumns+` FROM mds_dead_letters
		WHERE ($1::text = '' OR topic = $1)
		  AND ($2::int4 IS NULL OR partition = $2)
		  AND ($3::text = '' OR reason = $3)
		  AND id >= $4 AND ($5::int8 = 0 OR id <= $5)
		  AND (NOT $6::bool OR replayed_at IS NULL)
		  AND ($8::text = '' OR consumer_group = $8)
		ORDER BY id
		LIMIT $7`, f.Topic, f.Partition, f.Reason, f.MinID, f.MaxID, f.Pending, limit, f.Group)
}

// DeadLetters returns the dead letters with the given ids, in id order;
// ids that do not exist are left out. processor dlq replay reads what it
// re-publishes with it, then calls MarkReplayed.
func (s *Store) DeadLetters(ctx context.Context, ids []int64) ([]DeadLetterRow, error) {
	return s.queryDeadLetters(ctx, `SELECT `+deadLetterColumns+` FROM mds_dead_letters
		WHERE id = ANY($1) ORDER BY id`, ids)
}

// MarkReplayed sets replayed_at to now on the given dead letters and
// returns how many it found.
func (s *Store) MarkReplayed(ctx context.Context, ids []int64) (int64, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE mds_dead_letters SET replayed_at = now() WHERE id = ANY($1)`, ids)
	if err != nil {
		return 0, fmt.Errorf("marking dead letters replayed: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (s *Store) queryDeadLetters(ctx context.Context, sql string, args ...any) ([]DeadLetterRow, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading dead letters: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (DeadLetterRow, error) {
		var d DeadLetterRow
		err := row.Scan(&d.ID, &d.ConsumerGroup, &d.Topic, &d.Partition, &d.Offset, &d.Key, &d.Value,
			&d.Reason, &d.Err, &d.CreatedAt, &d.ReplayedAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading dead letters: %w", err)
	}
	return out, nil
}
