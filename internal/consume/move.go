package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/internal/retry"
	"github.com/market-data-store/mds/internal/tick"
)

// moveTimeout bounds one attempt to work out where waiting partitions go.
// The attempt runs while rebalances are held back, so it must stay short of
// the rebalance timeout; a failed attempt is retried in a later round.
const moveTimeout = 2 * time.Second

// offsetRetry is the wait between failed reads of where partitions resume
// (stored offsets, Kafka offsets), on assignment and on a move.
var offsetRetry = retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}

// A partition is moved, while it stays assigned, in two cases:
//
//   - Fenced: the database refused one of its chunks because the stored
//     offset was not the chunk's From: another writer (a zombie that still
//     believed it owned the partition) committed first. The coordinator
//     drops the partition's queued work and closes its lane; the member
//     moves the partition back to the stored offset instead of failing.
//   - Out of range: Kafka no longer has the position (retention or
//     DeleteRecords passed it, or the log ends below it). franz-go never
//     resets by itself (NoResetOffset); the member looks at the log and
//     either records the gap and goes on, or stops (MDS_KAFKA_ON_LOST_DATA).
//
// Until moved the partition is paused and fed nothing.

// errFencedByStore is the cause logged for a fence told through Fenced.
var errFencedByStore = errors.New("the store refused a batch of the partition: another writer committed first")

// Fenced is the coordinator.Fencer: the store fenced tps. It runs on a
// coordinator worker and must not block, so it only notes each partition
// still assigned, with its assignment generation, for the poll loop
// (handleFences). fenced cannot run here: it waits for the hand-off lock,
// which a Submit waiting for this worker to free room may hold, and for the
// queue's Revoke. A partition already waiting for a move is skipped. Should
// a Submit find the fence and the move end before this notice arrives, the
// partition is moved once more: a re-read from the stored offset, which
// loses and duplicates nothing.
func (c *Consumer) Fenced(tps []tick.TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range tps {
		if st := c.parts[tp]; st != nil && st.move == "" {
			c.fences[tp] = st.gen
		}
	}
}

// handleFences marks the partitions told by Fenced for a move. fenced
// ignores a partition whose generation has changed since: revoked or
// reassigned by a rebalance, or already fenced through a refused Submit.
func (c *Consumer) handleFences(ctx context.Context) {
	c.mu.Lock()
	if len(c.fences) == 0 {
		c.mu.Unlock()
		return
	}
	fences := c.fences
	c.fences = make(map[tick.TopicPartition]uint64)
	c.mu.Unlock()
	for tp, gen := range fences {
		c.fenced(ctx, tp, gen, errFencedByStore)
	}
}

// fenced marks tp, refused by the queue while still in assignment gen, for
// a move back to the stored offset: the chunks built so far are dropped
// (new generation), nothing more is fed or fetched (it is paused), and the
// queue forgets it and finishes its in-flight write, so that the stored
// offset read next is final.
func (c *Consumer) fenced(ctx context.Context, tp tick.TopicPartition, gen uint64, cause error) {
	c.handoff.Lock()
	defer c.handoff.Unlock()
	c.mu.Lock()
	st := c.parts[tp]
	if st == nil || st.gen != gen {
		c.mu.Unlock()
		return
	}
	c.gen++
	st.gen, st.move = c.gen, moveFenced
	from := st.from
	c.mu.Unlock()
	c.log.Info("partition fenced while assigned; moving it back to the stored offset", zap.Stringer("partition", tp), zap.Int64("from", from), zap.Error(cause))
	wctx, cancel := context.WithTimeout(ctx, c.cfg.RevokeTimeout)
	c.q.Revoke(wctx, []tick.TopicPartition{tp}, true)
	cancel()
}

// outOfRange marks tp, whose fetch failed with OffsetOutOfRange, for a move
// to where its log now is. Its chain and queued chunks stay valid: only the
// fetch position must change.
func (c *Consumer) outOfRange(tp tick.TopicPartition) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.parts[tp]; st != nil && st.move == "" {
		st.move = moveOutOfRange
		c.log.Warn("kafka no longer has the partition's position; looking where its log is now", zap.Stringer("partition", tp), zap.Int64("position", st.pos))
	}
}

// dataLoss records a truncation franz-go located with the leader epoch
// (KIP-320): it has moved the partition to e.ResetTo; the records from there
// to e.ConsumedTo are replaced in Kafka and are read again.
func (c *Consumer) dataLoss(tp tick.TopicPartition, e *kgo.ErrDataLoss) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.parts[tp]
	if st == nil {
		return
	}
	to := max(e.ConsumedTo, st.pos)
	st.gaps = append(st.gaps, tick.Gap{
		From: e.ResetTo, To: to, Lost: to - e.ResetTo, Reason: tick.GapTruncated,
		Detail: fmt.Sprintf("the log was truncated below the position (unclean leader election or a broker that lost data), located with leader epoch %d: offsets %d..%d are read again as the log has them now; the rows written for them before stay",
			e.ConsumedToEpoch, e.ResetTo, to-1),
	})
	st.pos = e.ResetTo
}

// waiting lists the partitions waiting for a move.
func (c *Consumer) waiting() []tick.TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []tick.TopicPartition
	for tp, st := range c.parts {
		if st.move != "" {
			out = append(out, tp)
		}
	}
	return out
}

// placement is where a partition resumes.
type placement struct {
	seek    int64 // offset to fetch from; -1 keeps franz-go's choice (assignment only)
	epoch   int32 // leader epoch to validate seek against; -1 none
	from    int64 // From of the next chunk
	pos     int64 // position of the chain: seek, or -1 when unknown
	topicID [16]byte
	gap     *tick.Gap
}

// moveStep moves the partitions waiting for a move. It runs on the poll
// goroutine right after a poll, while no rebalance can run, as franz-go's
// SetOffsets wants; SetOffsets also discards every fetch buffered before
// it. It returns the partitions moved (records of them already polled come
// from before the move and must be dropped), and an error only when
// MDS_KAFKA_ON_LOST_DATA=fail meets lost data. A failed read is counted in
// mds_consumer_offset_load_errors_total and retried in a later round with
// backoff; meanwhile the partitions stay paused and nothing is skipped.
func (c *Consumer) moveStep(ctx context.Context, cl *kgo.Client, adm *kadm.Client) (map[tick.TopicPartition]bool, error) {
	tps := c.waiting()
	if len(tps) == 0 {
		c.moveTries.Reset() // those waiting were revoked
		c.moveAt = time.Time{}
		return nil, nil
	}
	if time.Now().Before(c.moveAt) {
		return nil, nil
	}
	var fenced, ranged []tick.TopicPartition
	c.mu.Lock()
	pos := make(map[tick.TopicPartition]int64, len(tps))
	for _, tp := range tps {
		st := c.parts[tp]
		pos[tp] = st.pos
		if st.move == moveFenced {
			fenced = append(fenced, tp)
		} else {
			ranged = append(ranged, tp)
		}
	}
	c.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, moveTimeout)
	places, err := c.resumeOffsets(rctx, adm, fenced)
	if err == nil && len(ranged) > 0 {
		var more map[tick.TopicPartition]placement
		more, err = c.placeOutOfRange(rctx, adm, ranged, pos)
		for tp, p := range more {
			places[tp] = p
		}
	}
	cancel()
	var lost *lostDataError
	switch {
	case errors.As(err, &lost):
		return nil, err
	case err != nil:
		if ctx.Err() != nil {
			return nil, nil
		}
		wait := c.moveTries.NextBackOff()
		c.moveAt = time.Now().Add(wait)
		c.m.offsetLoadErr.Inc()
		c.log.Warn("reading where waiting partitions resume; they stay paused", zap.Error(err), zap.Duration("retry_in", wait), zap.Stringers("partitions", tps))
		return nil, nil
	}
	c.moveTries.Reset()
	c.moveAt = time.Time{}

	moved := make(map[tick.TopicPartition]bool, len(tps))
	set := make(map[string]map[int32]kgo.EpochOffset)
	var reassign []tick.TopicPartition
	c.handoff.Lock()
	defer c.handoff.Unlock()
	c.mu.Lock()
	for tp, p := range places {
		st := c.parts[tp]
		if st == nil || st.move == "" {
			continue // revoked meanwhile
		}
		if st.move == moveFenced {
			reassign = append(reassign, tp)
			c.m.resyncs.Inc()
			st.gaps = nil // dropped with the fenced work; found again if still true
			c.log.Warn("partition moved back to the stored offset after a fence", zap.Stringer("partition", tp), zap.Int64("from", p.from), zap.Int64("offset", p.seek))
		} else {
			c.log.Warn("partition moved to where its log is now", zap.Stringer("partition", tp), zap.Int64("from", p.from), zap.Int64("offset", p.seek))
		}
		c.place(st, p)
		st.move = ""
		moved[tp] = true
		if set[tp.Topic] == nil {
			set[tp.Topic] = make(map[int32]kgo.EpochOffset)
		}
		set[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: p.epoch, Offset: p.seek}
	}
	c.mu.Unlock()
	cl.SetOffsets(set)
	if len(reassign) > 0 {
		c.q.Assign(reassign)
	}
	return moved, nil
}

// place applies p to st; called with c.mu held.
func (c *Consumer) place(st *partState, p placement) {
	st.from, st.pos = p.from, p.pos
	if p.topicID != [16]byte{} {
		st.topicID = p.topicID
	}
	if p.gap != nil {
		st.gaps = append(st.gaps, *p.gap)
	}
}

// lostDataError stops the member when MDS_KAFKA_ON_LOST_DATA=fail meets
// records that were ours to write and are gone.
type lostDataError struct {
	tp   tick.TopicPartition
	what string
}

func (e *lostDataError) Error() string {
	return fmt.Sprintf("partition %s: %s; MDS_KAFKA_ON_LOST_DATA=fail stops here (set it to earliest to record the gap in mds_offset_gaps and go on)", e.tp, e.what)
}

// placeOutOfRange decides where partitions whose position Kafka refused go,
// from the log's start and end offsets now:
//
//   - position below the log start: the records in between are gone
//     (GapLogStart); resume at the log start.
//   - position past the log end: the log lost records under us and no
//     leader epoch located where (with one, franz-go locates it itself and
//     reports ErrDataLoss): resume at the log start, so that nothing is
//     skipped (GapTruncated: rows of the offsets below the old end may be
//     written twice; the gap says which).
//   - position within the log again: a transient refusal; resume there.
//   - position unknown (no row and no commit yet): resume at the log start.
//
// With MDS_KAFKA_ON_LOST_DATA=fail the first two return a *lostDataError.
func (c *Consumer) placeOutOfRange(ctx context.Context, adm *kadm.Client, tps []tick.TopicPartition, pos map[tick.TopicPartition]int64) (map[tick.TopicPartition]placement, error) {
	topics := topicsOf(tps)
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing end offsets: %w", err)
	}
	out := make(map[tick.TopicPartition]placement, len(tps))
	for _, tp := range tps {
		s, ok1 := starts.Lookup(tp.Topic, tp.Partition)
		e, ok2 := ends.Lookup(tp.Topic, tp.Partition)
		switch {
		case !ok1 || !ok2:
			return nil, fmt.Errorf("listing offsets of %s: not in the answer", tp)
		case s.Err != nil:
			return nil, fmt.Errorf("listing start offset of %s: %w", tp, s.Err)
		case e.Err != nil:
			return nil, fmt.Errorf("listing end offset of %s: %w", tp, e.Err)
		}
		c.mu.Lock()
		st := c.parts[tp]
		from := int64(-1)
		if st != nil {
			from = st.from
		}
		c.mu.Unlock()
		p, at := pos[tp], placement{seek: s.Offset, epoch: -1, from: from, pos: s.Offset}
		switch {
		case p >= 0 && p < s.Offset:
			if c.cfg.OnLostData == "fail" {
				return nil, &lostDataError{tp, fmt.Sprintf("the position %d is below the log start %d: records %d..%d are gone", p, s.Offset, p, s.Offset-1)}
			}
			at.gap = &tick.Gap{From: p, To: s.Offset, Lost: s.Offset - p, Reason: tick.GapLogStart,
				Detail: fmt.Sprintf("the log start %d passed the position %d (retention or DeleteRecords): offsets %d..%d are gone", s.Offset, p, p, s.Offset-1)}
		case p > e.Offset:
			if c.cfg.OnLostData == "fail" {
				return nil, &lostDataError{tp, fmt.Sprintf("the log ends at %d, below the position %d, and no leader epoch locates where it diverged", e.Offset, p)}
			}
			at.gap = &tick.Gap{From: s.Offset, To: p, Lost: p - e.Offset, Reason: tick.GapTruncated,
				Detail: fmt.Sprintf("the log ends at %d, below the position %d, and no leader epoch locates where it diverged: re-reading from the log start %d so that nothing is skipped; rows of offsets %d..%d may now be stored twice", e.Offset, p, s.Offset, s.Offset, e.Offset-1)}
		case p >= 0:
			at.seek, at.pos = p, p
		}
		out[tp] = at
	}
	return out, nil
}

// resumeOffsets returns where each of tps resumes after a fence: its
// stored offset (with the stored leader epoch) or, for a partition without
// a row, the Kafka committed offset (else the start offset
// MDS_KAFKA_START_OFFSET names) with From -1, as on assignment.
func (c *Consumer) resumeOffsets(ctx context.Context, adm *kadm.Client, tps []tick.TopicPartition) (map[tick.TopicPartition]placement, error) {
	out := make(map[tick.TopicPartition]placement, len(tps))
	if len(tps) == 0 {
		return out, nil
	}
	fresh := func(ctx context.Context, missing []tick.TopicPartition) (map[tick.TopicPartition]int64, error) {
		return c.startOffsets(ctx, adm, missing)
	}
	return c.locate(ctx, adm, tps, fresh)
}

// locate reads the stored offsets of tps and the topics' ids, and returns
// where each partition resumes: at its stored offset, validated with the
// stored leader epoch; or, when the topic's id differs from the one stored
// (the topic was deleted and created again), where a partition never seen
// starts, with a GapTopicRecreated; or, without a row, where fresh says
// (-1: where franz-go chooses).
func (c *Consumer) locate(ctx context.Context, adm *kadm.Client, tps []tick.TopicPartition, fresh func(context.Context, []tick.TopicPartition) (map[tick.TopicPartition]int64, error)) (map[tick.TopicPartition]placement, error) {
	stored, err := c.offsets.LoadOffsets(ctx, c.cfg.Group, tps)
	if err != nil {
		return nil, fmt.Errorf("loading stored offsets: %w", err)
	}
	ids, err := c.topicIDs(ctx, adm, topicsOf(tps))
	if err != nil {
		return nil, err
	}
	out := make(map[tick.TopicPartition]placement, len(tps))
	var missing, recreated []tick.TopicPartition
	for _, tp := range tps {
		so, ok := stored[tp]
		id := ids[tp.Topic]
		switch {
		case !ok:
			missing = append(missing, tp)
		case so.TopicID != [16]byte{} && id != [16]byte{} && so.TopicID != id:
			recreated = append(recreated, tp)
		default:
			out[tp] = placement{seek: so.Next, epoch: so.LeaderEpoch, from: so.Next, pos: so.Next, topicID: id}
		}
	}
	if len(missing)+len(recreated) == 0 {
		return out, nil
	}
	starts, err := fresh(ctx, append(slices.Clone(missing), recreated...))
	if err != nil {
		return nil, err
	}
	for _, tp := range missing {
		at := starts[tp]
		out[tp] = placement{seek: at, epoch: -1, from: -1, pos: at, topicID: ids[tp.Topic]}
	}
	for _, tp := range recreated {
		so, at := stored[tp], starts[tp]
		out[tp] = placement{seek: at, epoch: -1, from: so.Next, pos: at, topicID: ids[tp.Topic], gap: &tick.Gap{
			From: max(at, 0), To: so.Next, Reason: tick.GapTopicRecreated,
			Detail: fmt.Sprintf("topic id %s is not the stored %s: the topic was deleted and created again; its stored offset %d belonged to the old log and is void, the new log is read from its start offset",
				kadm.TopicID(ids[tp.Topic]), kadm.TopicID(so.TopicID), so.Next),
		}}
	}
	return out, nil
}

// topicIDs returns Kafka's id of each topic (zero when the cluster does not
// tell).
func (c *Consumer) topicIDs(ctx context.Context, adm *kadm.Client, topics []string) (map[string][16]byte, error) {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("reading topic ids: %w", err)
	}
	out := make(map[string][16]byte, len(topics))
	for _, t := range topics {
		if d, ok := details[t]; ok && d.Err == nil {
			out[t] = d.ID
		}
	}
	return out, nil
}

// startOffsets returns where partitions without a stored row start: the
// Kafka committed offset, else the offset MDS_KAFKA_START_OFFSET names.
func (c *Consumer) startOffsets(ctx context.Context, adm *kadm.Client, tps []tick.TopicPartition) (map[tick.TopicPartition]int64, error) {
	committed, err := adm.FetchOffsets(ctx, c.cfg.Group)
	if err != nil {
		return nil, fmt.Errorf("fetching kafka committed offsets: %w", err)
	}
	out := make(map[tick.TopicPartition]int64, len(tps))
	var uncommitted []tick.TopicPartition
	for _, tp := range tps {
		if o, ok := committed.Lookup(tp.Topic, tp.Partition); ok && o.Err == nil && o.At >= 0 {
			out[tp] = o.At
			continue
		}
		uncommitted = append(uncommitted, tp)
	}
	if len(uncommitted) == 0 {
		return out, nil
	}
	list := adm.ListStartOffsets
	if c.cfg.StartOffset == "latest" {
		list = adm.ListEndOffsets
	}
	listed, err := list(ctx, topicsOf(uncommitted)...)
	if err != nil {
		return nil, fmt.Errorf("listing %s offsets: %w", c.cfg.StartOffset, err)
	}
	for _, tp := range uncommitted {
		o, ok := listed.Lookup(tp.Topic, tp.Partition)
		switch {
		case !ok:
			return nil, fmt.Errorf("listing %s offsets: none for %s", c.cfg.StartOffset, tp)
		case o.Err != nil:
			return nil, fmt.Errorf("listing %s offset of %s: %w", c.cfg.StartOffset, tp, o.Err)
		}
		out[tp] = o.Offset
	}
	return out, nil
}

// topicsOf lists the distinct topics of tps.
func topicsOf(tps []tick.TopicPartition) []string {
	var out []string
	for _, tp := range tps {
		if !slices.Contains(out, tp.Topic) {
			out = append(out, tp.Topic)
		}
	}
	return out
}
