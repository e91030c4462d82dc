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
// letters, including rows the database refused.
//
// Each transaction is bounded by Config.WriteTimeout, on the client (ctx)
// and on the server (statement_timeout and lock_timeout, see beginSQL). The
// first transaction copies the whole batch in one COPY, without a
// savepoint. Only when that fails with an error the database attributes to
// the data (a non-temporary SQLSTATE, see isRefusal) that may depend on the
// row (not rowIndependent: a missing table or privilege is permanent at
// once), Write rolls back and redoes the batch in a second transaction that
// bisects it under savepoints (see copyRows): rows refused alone become dead
// letters. When every row of
// a batch of two or more is refused alone, and not one for a data error
// (class 22 or 23), the cause is not in the data (a missing table or
// privilege, a trigger refusing everything): Write writes nothing and
// returns a permanent error wrapping the first row's *pgconn.PgError.
//
// It returns nil when all of it committed; a *tick.FencedError naming every
// partition whose stored offset was not the expected one (nothing was
// written); or an error with a Temporary() bool method telling whether the
// same batch may succeed on a retry. Write does not retry.
func (s *Store) Write(ctx context.Context, b *tick.Batch) error {
	ranges, err := b.Ranges()
	if err != nil {
		return s.failed(&writeError{err: err})
	}
	res, err := s.attempt(ctx, b, ranges, false)
	if err != nil && isRefusal(err) && !rowIndependent(err) {
		s.m.bisections.Inc()
		res, err = s.attempt(ctx, b, ranges, true)
	}
	switch {
	case err != nil:
		return s.failed(newWriteError(err))
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

// failed counts a rolled back write by cause and returns err.
func (s *Store) failed(err error) error {
	s.m.rolledBack.Inc()
	s.m.writeErrors[writeCause(err)].Inc()
	return err
}

// writeResult is what one write transaction did.
type writeResult struct {
	fenced        *tick.FencedError // set when the transaction was rolled back for fencing
	rows          int64             // tick rows copied
	dead          map[string]int    // dead letters inserted, by reason
	duplicateDead int               // dead letters skipped: already stored
}

// attempt is one write transaction, bounded by WriteTimeout: the offset
// compare-and-set, the rows, the dead letters and the gaps. With bisect,
// deferred constraints are checked at each statement and the rows are
// copied by bisectRows under savepoints; without, in one COPY.
func (s *Store) attempt(ctx context.Context, b *tick.Batch, ranges []tick.Range, bisect bool) (writeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	var res writeResult
	begin := s.beginSQL
	if bisect {
		// A deferred constraint fails at COMMIT, where no savepoint can
		// tell the row; checked at each COPY it fails the row's COPY. And
		// the lock COPY takes is taken for the whole transaction: a lock
		// taken in a savepoint goes with its rollback, which would let DDL
		// (dropping the trigger that refused the first rows) change the
		// table halfway through the bisection and dead-letter rows that a
		// fresh attempt would write. The lock conflicts with DDL only, not
		// with other writers.
		begin += "; SET CONSTRAINTS ALL IMMEDIATE; LOCK TABLE ticks IN ROW EXCLUSIVE MODE"
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{BeginQuery: begin})
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
	if bisect {
		var r refusals
		n := b.Rows()
		if res.rows, err = bisectRows(ctx, tx, b.Chunks, 0, n, &r); err != nil {
			return res, err
		}
		if n >= 2 && len(r.dead) == n && r.data == 0 {
			return res, &writeError{err: fmt.Errorf("all %d rows of the batch refused alone, none for its data: %w", n, r.first)}
		}
		rejected = r.dead
	} else {
		if res.rows, err = copyTicks(ctx, tx, b.Chunks, 0, b.Rows()); err != nil {
			if isLayoutError(err) {
				return res, layoutError(err)
			}
			return res, fmt.Errorf("copying ticks: %w", err)
		}
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

// refusals collects the rows the database refused alone.
type refusals struct {
	dead  []tick.DeadLetter // one per refused row, reason tick.ReasonRejected
	data  int               // how many of them for a data error (class 22 or 23)
	first error             // the first refusal
}

// copyRows copies rows [lo, hi) of the chunks inside a savepoint. When the
// database refuses them (isRefusal), it rolls back to the savepoint and
// bisects (bisectRows); a single row refused is appended to r as a dead
// letter with reason tick.ReasonRejected, its raw key and value and
// "SQLSTATE: message" as the error. So k bad rows among n cost about
// 2k·log2(n) extra COPY statements, and the good rows are all written in the
// same transaction. Any other error ends the transaction's attempt.
func copyRows(ctx context.Context, tx pgx.Tx, chunks []*tick.Chunk, lo, hi int, r *refusals) (int64, error) {
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
		return 0, layoutError(copyErr)
	}
	if !isRefusal(copyErr) {
		return 0, fmt.Errorf("copying ticks: %w", copyErr)
	}
	if hi-lo > 1 {
		return bisectRows(ctx, tx, chunks, lo, hi, r)
	}
	ci, ri := locate(chunks, lo)
	c, rec := chunks[ci], &chunks[ci].Records[ri]
	r.dead = append(r.dead, tick.DeadLetter{
		TopicPartition: c.TopicPartition,
		Offset:         rec.Offset,
		Key:            rec.Key,
		Value:          rec.Value,
		Reason:         tick.ReasonRejected,
		Err:            sqlState(copyErr),
	})
	if isDataError(copyErr) {
		r.data++
	}
	if r.first == nil {
		r.first = copyErr
	}
	return 0, nil
}

// bisectRows copies the two halves of rows [lo, hi) with copyRows (a single
// row alone).
func bisectRows(ctx context.Context, tx pgx.Tx, chunks []*tick.Chunk, lo, hi int, r *refusals) (int64, error) {
	if hi-lo <= 1 {
		return copyRows(ctx, tx, chunks, lo, hi, r)
	}
	mid := lo + (hi-lo)/2
	n1, err := copyRows(ctx, tx, chunks, lo, mid, r)
	if err != nil {
		return 0, err
	}
	n2, err := copyRows(ctx, tx, chunks, mid, hi, r)
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

// layoutError is the permanent error of a COPY the server could not read
// as the columns of ticks (isLayoutError), whatever the class of its
// SQLSTATE says.
func layoutError(err error) error {
	return &writeError{err: fmt.Errorf("copying ticks (do its columns still have the types of the migrations?): %w", err)}
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
