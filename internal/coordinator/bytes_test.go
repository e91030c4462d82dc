package coordinator

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// bigChunk is chunk with a value of size bytes per record.
func bigChunk(tp tick.TopicPartition, from int64, n, size int) *tick.Chunk {
	ch := chunk(tp, from, n)
	for i := range ch.Records {
		ch.Records[i].Value = make([]byte, size)
	}
	return ch
}

// Admission and the level follow the bytes when they are fuller than the
// ticks; utilization is the fuller ratio; queue_size stays in ticks.
func TestByteCapacityBoundsAdmissionAndLevel(t *testing.T) {
	one := bigChunk(p0, 0, 1, 1000).Bytes()
	cfg := testConfig() // 100 ticks, watermarks 50 and 80
	cfg.CapacityBytes = 10 * one
	h := start(t, cfg, newMemSink(), nil, false)
	c := h.c
	c.Assign([]tick.TopicPartition{p0})
	for i := range 7 {
		if err := c.TrySubmit(bigChunk(p0, int64(i), 1, 1000)); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if e := h.rec.next(t); e.Level != backpressure.Soft {
		t.Fatalf("event %+v, want SOFT at 60%% of the bytes", e)
	}
	if err := c.TrySubmit(bigChunk(p0, 7, 1, 1000)); err != nil {
		t.Fatal(err)
	}
	e := h.rec.next(t)
	if e.Level != backpressure.Hard || e.QueueSize != 8 || e.Capacity != 100 || math.Abs(e.Utilization-0.8) > 1e-9 {
		t.Fatalf("event %+v, want HARD, 8 ticks of 100, utilization 0.8 (the bytes)", e)
	}
	for i := 8; i < 10; i++ {
		if err := c.TrySubmit(bigChunk(p0, int64(i), 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.TrySubmit(bigChunk(p0, 10, 1, 1000)); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("TrySubmit with the bytes full and 10 of 100 ticks: %v, want ErrQueueFull", err)
	}
	if got := value(t, c.m.bytes); got != float64(10*one) {
		t.Errorf("mds_coord_queue_bytes = %v", got)
	}
}

// A batch holds at most the share of CapacityBytes that BatchSize is of
// Capacity (here 20 of 100: two chunks of 1000 bytes of the ten).
func TestBatchBytesAreBounded(t *testing.T) {
	one := bigChunk(p0, 0, 1, 1000).Bytes()
	cfg := testConfig()
	cfg.CapacityBytes = 10 * one
	sink := newMemSink()
	h := start(t, cfg, sink, nil, false)
	c := h.c
	c.Assign([]tick.TopicPartition{p0})
	for i := range 10 {
		if err := c.TrySubmit(bigChunk(p0, int64(i), 1, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	h.run()
	if err := c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.batches) != 5 {
		t.Fatalf("%d batches %v, want 5 of two chunks", len(sink.batches), sink.batches)
	}
}
