package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/tick"
)

// The offset compare-and-set, one statement per partition range. A range
// whose From is -1 expects no stored row: insertOffsetSQL inserts one, and
// if a row exists (or another transaction is inserting it and commits) it
// affects 0 rows. Otherwise updateOffsetSQL moves the stored offset from
// From to Next, and affects 0 rows if the stored value is anything else or
// there is no row at all (a deleted row is not silently recreated from a
// stale expectation). Both leave the row locked by this transaction, so two
// writers of one partition serialize and the later one re-reads the row
// after the earlier commits, sees the moved offset and gets 0 rows.
//
// Both also store the leader epoch of the range's last record and the
// topic id it was read from ($5, $6), which the consumer seeks with.
const (
	insertOffsetSQL = `INSERT INTO mds_offsets (consumer_group, topic, partition, next_offset, leader_epoch, topic_id, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, now())
ON CONFLICT (consumer_group, topic, partition) DO NOTHING`
	updateOffsetSQL = `UPDATE mds_offsets SET next_offset = $4, leader_epoch = $5, topic_id = $6, updated_at = now()
WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $7`
)

// A dead letter is unique per consumer group and record. A conflict means
// the record is stored already (a topic recreated under the same name
// reuses offsets); it is skipped, counted and logged, never silent.
const insertDeadLetterSQL = `INSERT INTO mds_dead_letters (consumer_group, topic, partition, "offset", key, value, reason, error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (consumer_group, topic, partition, "offset") DO NOTHING`

const insertGapSQL = `INSERT INTO mds_offset_gaps (consumer_group, topic, partition, from_offset, to_offset, lost_records, reason, detail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`

// Write stores a batch in one transaction: the offset compare-and-set of
// every partition the batch covers, the tick rows (COPY), and the dead
// letters, including rows the database rejected as data errors.
//
// It returns nil when all of it committed; a *tick.FencedError naming every
// partition whose stored offset was not the expected one (nothing was
// written); or an error with a Temporary() bool method telling whether the
// same batch may succeed on a retry. Write does not retry.
func (s *Store) Write(ctx context.Context, b *tick.Batch) error {
	ranges, err := b.Ranges()
	if err != nil {
		return &writeError{err: err}
	}
	res, err := s.write(ctx, b, ranges)
	switch {
	case err != nil:
		s.m.rolledBack.Inc()
		return newWriteError(err)
	case res.fenced != nil:
		s.m.fenced.Inc()
		return res.fenced
	}
	s.m.committed.Inc()
	s.bars.touched(tickTimes(b))
	s.m.rows.Add(float64(res.rows))
	for reason, n := range res.dead {
		s.m.deadLetters.WithLabelValues(reason).Add(float64(n))
	}
	if res.duplicateDead > 0 {
		s.m.deadLetterConflicts.Add(float64(res.duplicateDead))
		s.log.Warn("dead letters already stored for their records were skipped (a topic recreated under the same name reuses offsets)",
			zap.Int("skipped", res.duplicateDead))
	}
	s.gapsCommitted(b)
	return nil
}

// gapsCommitted counts and logs the gaps of a committed batch: each is a
// range of a partition that will never be written.
func (s *Store) gapsCommitted(b *tick.Batch) {
	for _, c := range b.Chunks {
		for _, g := range c.Gaps {
			s.m.gaps.WithLabelValues(c.Topic, g.Reason).Inc()
			s.m.lostRecords.WithLabelValues(c.Topic, g.Reason).Add(float64(g.Lost))
			s.log.Error("moved past a gap in a partition; recorded in mds_offset_gaps",
				zap.String("topic", c.Topic), zap.Int32("partition", c.Partition),
				zap.Int64("from_offset", g.From), zap.Int64("to_offset", g.To), zap.Int64("lost_records", g.Lost),
				zap.String("reason", g.Reason), zap.String("detail", g.Detail))
		}
	}
}

// writeResult is what one write transaction did.
type writeResult struct {
	fenced        *tick.FencedError // set when the transaction was rolled back for fencing
	rows          int64             // tick rows copied
	dead          map[string]int    // dead letters inserted, by reason
	duplicateDead int               // dead letters skipped: already stored
}

func (s *Store) write(ctx context.Context, b *tick.Batch, ranges []tick.Range) (writeResult, error) {
	var res writeResult
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return res, fmt.Errorf("beginning transaction: %w", err)
	}
	// After Commit this is a no-op. On a cancelled ctx pgx closes the
	// connection instead, which rolls back just the same.
	defer func() { _ = tx.Rollback(ctx) }()

	fenced, err := s.compareAndSetOffsets(ctx, tx, ranges)
	if err != nil {
		return res, err
	}
	if len(fenced) > 0 {
		res.fenced = &tick.FencedError{Partitions: fenced}
		return res, nil
	}
	var rejected []tick.DeadLetter
	if res.rows, err = copyRows(ctx, tx, b.Chunks, 0, b.Rows(), &rejected); err != nil {
		return res, err
	}
	if res.dead, res.duplicateDead, err = s.insertDeadLetters(ctx, tx, b.Chunks, rejected); err != nil {
		return res, err
	}
	if err := s.insertGaps(ctx, tx, b.Chunks); err != nil {
		return res, err
	}
	if err := tx.Commit(ctx); err != nil {
		return res, fmt.Errorf("committing: %w", err)
	}
	return res, nil
}

// compareAndSetOffsets runs the offset compare-and-set of every range in one
// pipelined round trip and returns the partitions that were fenced.
func (s *Store) compareAndSetOffsets(ctx context.Context, tx pgx.Tx, ranges []tick.Range) ([]tick.TopicPartition, error) {
	var batch pgx.Batch
	for _, r := range ranges {
		id := topicID(r.TopicID)
		if r.From < 0 {
			batch.Queue(insertOffsetSQL, s.cfg.Group, r.Topic, r.Partition, r.Next, r.LeaderEpoch, id)
		} else {
			batch.Queue(updateOffsetSQL, s.cfg.Group, r.Topic, r.Partition, r.Next, r.LeaderEpoch, id, r.From)
		}
	}
	br := tx.SendBatch(ctx, &batch)
	var fenced []tick.TopicPartition
	for _, r := range ranges {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("advancing offset of %s: %w", r.TopicPartition, err)
		}
		if tag.RowsAffected() == 0 {
			fenced = append(fenced, r.TopicPartition)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("advancing offsets: %w", err)
	}
	return fenced, nil
}

// copyRows copies rows [lo, hi) of the chunks inside a savepoint. When the
// database refuses the data (SQLSTATE class 22 or 23, but for the errors of
// a table that does not fit the encoding, see isLayoutError), it rolls back
// to the savepoint and bisects: each half is tried on its own, down to single rows,
// and every row refused on its own is appended to rejected as a dead letter.
// So k bad rows among n cost about 2k·log2(n) extra COPY statements, and
// the good rows are all written in the same transaction.
func copyRows(ctx context.Context, tx pgx.Tx, chunks []*tick.Chunk, lo, hi int, rejected *[]tick.DeadLetter) (int64, error) {
	if lo >= hi {
		return 0, nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("creating savepoint: %w", err)
	}
	n, copyErr := copyTicks(ctx, sp, chunks, lo, hi)
	if copyErr == nil {
		if err := sp.Commit(ctx); err != nil {
			return 0, fmt.Errorf("releasing savepoint: %w", err)
		}
		return n, nil
	}
	if err := sp.Rollback(ctx); err != nil {
		return 0, fmt.Errorf("rolling back to savepoint after %v: %w", copyErr, err)
	}
	if isLayoutError(copyErr) {
		// Permanent, whatever the class of the SQLSTATE says.
		return 0, &writeError{err: fmt.Errorf("copying ticks (do its columns still have the types of the migrations?): %w", copyErr)}
	}
	if !isDataError(copyErr) {
		return 0, fmt.Errorf("copying ticks: %w", copyErr)
	}
	if hi-lo == 1 {
		ci, ri := locate(chunks, lo)
		c, r := chunks[ci], &chunks[ci].Records[ri]
		*rejected = append(*rejected, tick.DeadLetter{
			TopicPartition: c.TopicPartition,
			Offset:         r.Offset,
			Key:            r.Key,
			Value:          r.Value,
			Reason:         tick.ReasonRejected,
			Err:            sqlState(copyErr),
		})
		return 0, nil
	}
	mid := lo + (hi-lo)/2
	n1, err := copyRows(ctx, tx, chunks, lo, mid, rejected)
	if err != nil {
		return 0, err
	}
	n2, err := copyRows(ctx, tx, chunks, mid, hi, rejected)
	return n1 + n2, err
}

// topicID is a Kafka topic id as a uuid parameter: NULL when unknown.
func topicID(id [16]byte) pgtype.UUID { return pgtype.UUID{Bytes: id, Valid: id != [16]byte{}} }

// insertGaps records the gaps the chunks move past, in the transaction that
// moves the stored offsets past them.
func (s *Store) insertGaps(ctx context.Context, tx pgx.Tx, chunks []*tick.Chunk) error {
	var batch pgx.Batch
	for _, c := range chunks {
		for _, g := range c.Gaps {
			batch.Queue(insertGapSQL, s.cfg.Group, c.Topic, c.Partition, g.From, g.To, g.Lost, g.Reason, cleanText(g.Detail))
		}
	}
	if batch.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return fmt.Errorf("recording offset gaps: %w", err)
	}
	return nil
}

// insertDeadLetters inserts the dead letters of the chunks and the rejected
// rows in one pipelined round trip and counts the inserted ones by reason,
// and those skipped because the group already stored a dead letter for
// their record (the unique key keeps each record at most once per group).
func (s *Store) insertDeadLetters(ctx context.Context, tx pgx.Tx, chunks []*tick.Chunk, rejected []tick.DeadLetter) (map[string]int, int, error) {
	var batch pgx.Batch
	var all []*tick.DeadLetter
	queue := func(d *tick.DeadLetter) {
		batch.Queue(insertDeadLetterSQL, s.cfg.Group, d.Topic, d.Partition, d.Offset, d.Key, d.Value, d.Reason, cleanText(d.Err))
		all = append(all, d)
	}
	for _, c := range chunks {
		for i := range c.Dead {
			queue(&c.Dead[i])
		}
	}
	for i := range rejected {
		queue(&rejected[i])
	}
	if len(all) == 0 {
		return nil, 0, nil
	}
	br := tx.SendBatch(ctx, &batch)
	counts := make(map[string]int, 2)
	skipped := 0
	for _, d := range all {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return nil, 0, fmt.Errorf("inserting dead letter %s@%d: %w", d.TopicPartition, d.Offset, err)
		}
		counts[d.Reason] += int(tag.RowsAffected())
		if tag.RowsAffected() == 0 {
			skipped++
		}
	}
	if err := br.Close(); err != nil {
		return nil, 0, fmt.Errorf("inserting dead letters: %w", err)
	}
	return counts, skipped, nil
}

// cleanText makes s storable in a text column: PostgreSQL refuses NUL and
// invalid UTF-8, and an error message may quote either from the input.
func cleanText(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\x00`), "\uFFFD")
}

// LoadOffsets returns what is stored for each given partition of group
// that has a row: the next offset, the leader epoch of the last record
// written and the topic id. Partitions without a stored row are absent
// from the map.
func (s *Store) LoadOffsets(ctx context.Context, group string, tps []tick.TopicPartition) (map[tick.TopicPartition]tick.StoredOffset, error) {
	topics := make([]string, len(tps))
	parts := make([]int32, len(tps))
	for i, tp := range tps {
		topics[i], parts[i] = tp.Topic, tp.Partition
	}
	rows, err := s.pool.Query(ctx, `SELECT o.topic, o.partition, o.next_offset, o.leader_epoch, o.topic_id
		FROM mds_offsets o
		JOIN unnest($2::text[], $3::int4[]) AS w(topic, partition)
		  ON o.topic = w.topic AND o.partition = w.partition
		WHERE o.consumer_group = $1`, group, topics, parts)
	if err != nil {
		return nil, fmt.Errorf("loading offsets: %w", err)
	}
	out := make(map[tick.TopicPartition]tick.StoredOffset, len(tps))
	var tp tick.TopicPartition
	var so tick.StoredOffset
	var id pgtype.UUID
	_, err = pgx.ForEachRow(rows, []any{&tp.Topic, &tp.Partition, &so.Next, &so.LeaderEpoch, &id}, func() error {
		so.TopicID = [16]byte{}
		if id.Valid {
			so.TopicID = id.Bytes
		}
		out[tp] = so
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading offsets: %w", err)
	}
	return out, nil
}
