package consume

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/market-data-store/mds/internal/tick"
)

// partState is what the member knows of one assigned partition: where its
// chain of chunks stands in the database (from) and in Kafka (pos), and
// what the next chunk must record. It is the one place these facts live;
// every field is guarded by Consumer.mu.
type partState struct {
	gen     uint64   // which assignment (or move) this is
	from    int64    // From of the next chunk: the offset the database holds, -1 for no row
	pos     int64    // next offset expected from Kafka; -1: unknown, the first record fetched sets it
	topicID [16]byte // Kafka's id of the topic, zero if unknown
	// gaps are the ranges moved past without their records, recorded by the
	// next chunk (in the transaction that moves the stored offset past them).
	gaps []tick.Gap
	// move is set while the partition waits to be moved (paused, fed
	// nothing): after a fence, back to the stored offset; after an
	// OffsetOutOfRange, to where the log now is.
	move string
}

// Why a partition waits to be moved.
const (
	moveFenced     = "fenced"
	moveOutOfRange = "out_of_range"
)

// admitted is what admit makes of one partition's fetched records.
type admitted struct {
	records []*kgo.Record
	// trimmed counts records before the partition's position (already
	// handed on, or from before a move): dropped, never handed on twice.
	trimmed int
	// skipped counts offsets from the position to the last record that
	// Kafka did not deliver although they are in the log: transaction
	// markers, aborted records (read_committed), compacted keys. Normal.
	skipped int64
	// gap is set when the position is below the log start: those records
	// are gone (retention or DeleteRecords) and were ours to write.
	gap *tick.Gap
}

// admit checks recs, one partition's fetched records in offset order, against
// the position pos the chain has reached (-1: unknown, anything goes) and
// the partition's log start offset as the fetch reported it (-1: not told).
// Records before pos are trimmed; a first record after pos is a normal gap
// unless pos is below the log start, which is lost data.
func admit(recs []*kgo.Record, pos, logStart int64) admitted {
	var a admitted
	if len(recs) == 0 {
		return a
	}
	if pos < 0 {
		pos = recs[0].Offset
	}
	for a.trimmed < len(recs) && recs[a.trimmed].Offset < pos {
		a.trimmed++
	}
	a.records = recs[a.trimmed:]
	if len(a.records) == 0 {
		return a
	}
	first, next := a.records[0].Offset, a.records[len(a.records)-1].Offset+1
	normalFrom := pos
	if first > pos && logStart > pos {
		lostTo := min(first, logStart)
		a.gap = &tick.Gap{
			From: pos, To: lostTo, Lost: lostTo - pos, Reason: tick.GapLogStart,
			Detail: fmt.Sprintf("the log start %d passed the position %d (retention or DeleteRecords): offsets %d..%d are gone", logStart, pos, pos, lostTo-1),
		}
		normalFrom = lostTo
	}
	// Offsets within the range that were not delivered, before the first
	// record or between records.
	a.skipped = next - normalFrom - int64(len(a.records))
	return a
}
