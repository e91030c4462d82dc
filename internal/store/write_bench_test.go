package store

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkWriteBatchSizes writes batches of one partition that commit,
// small (a quiet feed, flushed by MDS_COORDINATOR_FLUSH_INTERVAL) and full
// (a backlog): the fixed cost of a transaction weighs on the small ones.
func BenchmarkWriteBatchSizes(b *testing.B) {
	for _, rows := range []int{10, 100, 5000} {
		b.Run(fmt.Sprintf("rows=%d", rows), func(b *testing.B) {
			s, _, _ := newStore(b)
			ctx := context.Background()
			c := chunk("ticks", 0, 0, int64(rows), "BENCH")
			c.From = -1
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Write(ctx, batch(c)); err != nil {
					b.Fatal(err)
				}
				c.From = max(c.From, 0) + int64(rows)
				c.Next = c.From + int64(rows)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/batch")
		})
	}
}
