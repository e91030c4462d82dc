package tick

import (
	"fmt"
	"time"
)

// Field is a bit set of the optional fields present in a Tick.
type Field uint8

// Optional fields of a Tick. A field whose bit is clear is stored as NULL.
const (
	HasVenue Field = 1 << iota
	HasSize
	HasBid
	HasAsk
	HasBidSize
	HasAskSize
	HasSeq
)

// Tick is one market data tick, as stored in table ticks. TS, Symbol and a
// finite Price are always set; the other fields are valid only when their bit
// is set in Has.
type Tick struct {
	TS      time.Time
	Symbol  string
	Venue   string
	Price   float64
	Size    float64
	Bid     float64
	Ask     float64
	BidSize float64
	AskSize float64
	Seq     int64
	Has     Field
}

// TopicPartition names one Kafka partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// Record is a decoded tick with the Kafka record it came from. Key and Value
// are the raw bytes, kept so that a row the database rejects can still be
// dead-lettered as it was received.
type Record struct {
	Offset    int64
	Timestamp time.Time // the Kafka record timestamp (produce time)
	Key       []byte
	Value     []byte
	Tick      Tick
}

// Dead-letter reasons. The set is closed so that it can label metrics.
const (
	ReasonDecode   = "decode"    // not a JSON object of the tick shape
	ReasonInvalid  = "invalid"   // decoded, but fails validation
	ReasonTooLarge = "too_large" // record larger than the configured limit
	ReasonRejected = "rejected"  // the database refused the row (data error)
)

// DeadLetter is a record that could not be stored as a tick. It is written to
// mds_dead_letters in the same transaction as the good rows of its batch.
type DeadLetter struct {
	TopicPartition
	Offset int64
	Key    []byte
	Value  []byte
	Reason string // one of the Reason constants
	Err    string
}

// Chunk is a contiguous run of one partition's records, as handed from the
// consumer to the coordinator. It covers the offsets [From, Next) as far as
// the member knows: From is the next offset the member expects the database
// to hold for the partition (-1 when it expects no stored row), Next is the
// offset after the last record. Records and Dead together hold every record
// of that run that Kafka delivered.
//
// Gaps are the ranges of the partition the member moved past without
// reading them because they are gone from Kafka (see Gap); they are
// recorded in the same transaction that moves the stored offset past them.
// TopicID is Kafka's id of the topic the records came from (zero when the
// cluster did not tell); it is stored with the offset, so that a recreated
// topic is recognised as a new log.
type Chunk struct {
	TopicPartition
	From        int64
	Next        int64
	LeaderEpoch int32
	TopicID     [16]byte
	Gaps        []Gap
	Records     []Record
	Dead        []DeadLetter
}

// Gap reasons: why the member moved past offsets of a partition without
// writing their records. The set is closed so that it can label metrics.
const (
	// GapLogStart: retention or DeleteRecords moved the log start past the
	// stored offset; the records in between are gone.
	GapLogStart = "log_start"
	// GapTruncated: the log ends below the stored offset (unclean leader
	// election, or a broker that lost data): the stored offset and the
	// offsets below it back to From are re-read from the log as it is now.
	GapTruncated = "truncated"
	// GapTopicRecreated: the topic has another Kafka topic id than the one
	// stored with the offset: the stored offset belonged to a deleted
	// topic and is void; the new topic is read from its start offset.
	GapTopicRecreated = "topic_recreated"
)

// Gap is a range of offsets of a partition that a chunk moves past
// without their records: [From, To) for GapLogStart; for GapTruncated and
// GapTopicRecreated, From is where reading resumes and To the stored
// offset it replaces. Lost is the number of records that were ours to
// write and will never be (To-From for GapLogStart; the records the log
// lost under the stored offset for GapTruncated; 0 for GapTopicRecreated,
// whose deleted tail is unknown). Detail says what was seen, for an
// operator.
type Gap struct {
	From, To int64
	Lost     int64
	Reason   string
	Detail   string
}

// StoredOffset is what the database holds for one partition: the next
// offset to read, the leader epoch of the last record written (-1 when
// unknown) and the topic id it was read from (zero when unknown).
type StoredOffset struct {
	Next        int64
	LeaderEpoch int32
	TopicID     [16]byte
}

// Size is what the chunk counts against the coordinator's capacity.
func (c *Chunk) Size() int { return len(c.Records) + len(c.Dead) }

// Range is the offset range a batch covers for one partition: the stored
// next offset must be From before the write, and is Next after it.
type Range struct {
	TopicPartition
	From        int64
	Next        int64
	LeaderEpoch int32
	TopicID     [16]byte
}

// Batch is the unit of one database transaction: chunks of one or more
// partitions, where the chunks of one partition are contiguous and in offset
// order.
type Batch struct {
	Chunks []*Chunk
}

// Rows is the number of tick rows in the batch.
func (b *Batch) Rows() int {
	n := 0
	for _, c := range b.Chunks {
		n += len(c.Records)
	}
	return n
}

// Ranges merges the chunks into one Range per partition, in order of first
// appearance. It reports an error if the chunks of a partition are not
// contiguous, which would be a bug in the caller.
func (b *Batch) Ranges() ([]Range, error) {
	var out []Range
	idx := make(map[TopicPartition]int, 4)
	for _, c := range b.Chunks {
		i, ok := idx[c.TopicPartition]
		if !ok {
			idx[c.TopicPartition] = len(out)
			out = append(out, Range{TopicPartition: c.TopicPartition, From: c.From, Next: c.Next, LeaderEpoch: c.LeaderEpoch, TopicID: c.TopicID})
			continue
		}
		r := &out[i]
		if c.From != r.Next {
			return nil, fmt.Errorf("chunks of %s are not contiguous: %d then %d", c.TopicPartition, r.Next, c.From)
		}
		r.Next = c.Next
		r.LeaderEpoch = c.LeaderEpoch
		r.TopicID = c.TopicID
	}
	return out, nil
}

// FencedError reports partitions whose stored offset did not match what this
// member expected: another member owns them now. The write was rolled back;
// the work for these partitions must be dropped, never retried.
type FencedError struct {
	Partitions []TopicPartition
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("fenced: %d partition(s) owned by another member (first %s)", len(e.Partitions), e.Partitions[0])
}
