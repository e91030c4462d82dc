package coordinator

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/market-data-store/mds/internal/tick"
)

type nopSink struct{}

func (nopSink) Write(context.Context, *tick.Batch) error { return nil }

// pump runs the coordinator of h and has 4 producers submit b.N ticks in
// chunks of size ticks over 8 partitions, then drains. It reports ns/tick.
func pump(b *testing.B, h *harness, size int) {
	tps := eight
	h.c.Assign(tps)
	records := make([]tick.Record, size)
	h.run()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			mine := tps[2*p : 2*p+2]
			next := make([]int64, len(mine))
			for i := p * size; i < b.N; i += 4 * size {
				j := (i / (4 * size)) % len(mine)
				ch := &tick.Chunk{TopicPartition: mine[j], From: next[j], Next: next[j] + int64(size), Records: records}
				next[j] = ch.Next
				if err := h.c.Submit(context.Background(), ch); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := h.c.Drain(context.Background()); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	h.stop()
	ticks := value(b, h.c.m.rows)
	b.ReportMetric(float64(elapsed.Nanoseconds())/ticks, "ns/tick")
	b.ReportMetric(0, "ns/op") // b.N is not the tick count when it is not a multiple of the chunk size
}

// BenchmarkSubmitToSink measures the queue alone: 4 producers, 4 workers,
// the default capacity and batch size, a sink that does nothing.
func BenchmarkSubmitToSink(b *testing.B) {
	for _, size := range []int{1, 10, 100, 500} {
		b.Run(fmt.Sprintf("chunk=%d", size), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Workers = 4
			pump(b, start(b, cfg, nopSink{}, nil, false), size)
		})
	}
}

// BenchmarkLevelTransitions runs a small queue whose level changes all the
// time (capacity 200, batches of 100, watermarks 100/160), each transition
// told to the harness's OnLevel recorder, to show what transitions cost
// per tick (compare BenchmarkSubmitToSink/chunk=10).
func BenchmarkLevelTransitions(b *testing.B) {
	cfg := DefaultConfig()
	cfg.Capacity, cfg.BatchSize, cfg.LowWatermark, cfg.HighWatermark = 200, 100, 100, 160
	h := start(b, cfg, nopSink{}, nil, false)
	pump(b, h, 10)
	var events float64
	for _, c := range h.c.m.events {
		events += value(b, c)
	}
	b.ReportMetric(events/value(b, h.c.m.rows), "events/tick")
}
