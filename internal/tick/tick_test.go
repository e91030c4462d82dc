package tick

import (
	"reflect"
	"strings"
	"testing"
)

func chunk(topic string, p int32, from, next int64, epoch int32, rows, dead int) *Chunk {
	return &Chunk{
		TopicPartition: TopicPartition{topic, p}, From: from, Next: next, LeaderEpoch: epoch,
		Records: make([]Record, rows), Dead: make([]DeadLetter, dead),
	}
}

func TestBatchRowsAndChunkSize(t *testing.T) {
	b := &Batch{Chunks: []*Chunk{chunk("t", 0, 0, 5, 1, 3, 2), chunk("t", 1, -1, 4, 1, 4, 0)}}
	if got := b.Rows(); got != 7 {
		t.Fatalf("Rows() = %d, want 7 (dead letters are not rows)", got)
	}
	if got := b.Chunks[0].Size(); got != 5 {
		t.Fatalf("Size() = %d, want 5 (records and dead letters)", got)
	}
	if got := (&Batch{}).Rows(); got != 0 {
		t.Fatalf("empty batch has %d rows", got)
	}
}

func TestBatchRangesMergesContiguousChunks(t *testing.T) {
	b := &Batch{Chunks: []*Chunk{
		chunk("b", 3, -1, 10, 1, 10, 0),
		chunk("a", 0, 100, 110, 4, 10, 0),
		chunk("b", 3, 10, 15, 2, 5, 0),
		chunk("a", 1, 7, 8, 0, 0, 1),
		chunk("b", 3, 15, 20, 2, 5, 0),
	}}
	got, err := b.Ranges()
	if err != nil {
		t.Fatal(err)
	}
	want := []Range{
		{TopicPartition{"b", 3}, -1, 20, 2, [16]byte{}},
		{TopicPartition{"a", 0}, 100, 110, 4, [16]byte{}},
		{TopicPartition{"a", 1}, 7, 8, 0, [16]byte{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Ranges()\n got %+v\nwant %+v", got, want)
	}
}

func TestBatchRangesRejectsAGap(t *testing.T) {
	b := &Batch{Chunks: []*Chunk{chunk("t", 0, 0, 10, 0, 10, 0), chunk("t", 0, 11, 12, 0, 1, 0)}}
	_, err := b.Ranges()
	if err == nil || !strings.Contains(err.Error(), "t/0") {
		t.Fatalf("Ranges() = %v, want an error naming t/0", err)
	}
}

func TestFencedErrorNamesPartitions(t *testing.T) {
	err := &FencedError{Partitions: []TopicPartition{{"ticks", 2}, {"ticks", 5}}}
	if got, want := err.Error(), "fenced: 2 partition(s) owned by another member (first ticks/2)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}
