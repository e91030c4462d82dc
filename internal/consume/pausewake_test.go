package consume

import (
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

// A backlog cycles through HARD: the workers sit idle from the moment the
// level falls until the member resumes fetching, so that must take a few
// milliseconds, not a whole poll. Ten cycles are timed, because one resume
// may be quick by luck.
func TestResumesSoonAfterTheLevelFalls(t *testing.T) {
	const parts, cycles = 4, 10
	c := newCluster(t, parts)
	c.produce(parts, 5, goodTick)
	db := newFakeDB()
	m := startMember(t, c, testConfig("g-wake"), db, tick.DefaultLimits())
	eventually(t, 10*time.Second, "first records", func() bool { return db.total() == parts*5 })

	paused := func() int {
		n := 0
		for _, ps := range m.cl.Load().PauseFetchPartitions(nil) {
			n += len(ps)
		}
		return n
	}
	var total time.Duration
	for range cycles {
		m.q.setLevel(backpressure.Hard)
		eventually(t, 2*time.Second, "all partitions paused", func() bool { return paused() == parts })
		time.Sleep(30 * time.Millisecond) // the member is now in a poll with everything paused
		start := time.Now()
		m.q.setLevel(backpressure.OK)
		for paused() > 0 {
			if time.Since(start) > 2*time.Second {
				t.Fatal("partitions not resumed within 2s of the level falling to OK")
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
	}
	// A poll that waited its full 200 ms while everything was paused
	// would make this about 1 s (10 x 100 ms on average).
	if avg := total / cycles; avg > 50*time.Millisecond {
		t.Fatalf("resuming took %v on average after the level fell, want well under a poll (200ms)", avg)
	} else {
		t.Logf("resume after the level fell: %v on average", avg)
	}
}
