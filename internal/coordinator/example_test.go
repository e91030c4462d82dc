package coordinator_test

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/coordinator"
	"github.com/market-data-store/mds/internal/tick"
)

// slowSink takes 20ms per batch: 500 ticks/s with batches of 10.
type slowSink struct{}

func (slowSink) Write(ctx context.Context, _ *tick.Batch) error {
	select {
	case <-time.After(20 * time.Millisecond):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The original's demo: a queue of 100 with watermarks 80/40 in front of a
// slow sink. A producer four times faster than the sink fills the queue
// (SOFT above 40, HARD at 80, then Submit blocks at 100); when it stops, the
// queue drains straight back to OK at 40, with no SOFT on the way down.
// OnLevel prints each transition as it happens.
func Example() {
	cfg := coordinator.DefaultConfig()
	cfg.ID = "demo"
	cfg.Capacity, cfg.HighWatermark, cfg.LowWatermark = 100, 80, 40
	cfg.Workers, cfg.BatchSize = 1, 10

	// Called with the queue's lock held, by Submit or a worker: print
	// and return, never block.
	printLevel := coordinator.OnLevel(func(e backpressure.Event) {
		fmt.Printf("%s (%s)\n", e.Level, e.Reason)
	})
	c, err := coordinator.New(cfg, slowSink{}, zap.NewNop(), prometheus.NewRegistry(), printLevel)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()

	tp := tick.TopicPartition{Topic: "market.ticks", Partition: 0}
	c.Assign([]tick.TopicPartition{tp})
	for i := range 20 { // 200 ticks, 10 every 5ms: 2000 ticks/s
		ch := &tick.Chunk{TopicPartition: tp, From: int64(10 * i), Next: int64(10*i + 10), Records: make([]tick.Record, 10)}
		if err := c.Submit(ctx, ch); err != nil {
			fmt.Println(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Drain(ctx); err != nil {
		fmt.Println(err)
	}
	stop()
	<-ran
	// Output:
	// soft (soft_watermark)
	// hard (high_watermark)
	// ok (low_watermark)
}
