package coordinator

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/market-data-store/mds/backpressure"
	"github.com/market-data-store/mds/internal/tick"
)

const (
	ok   = backpressure.OK
	soft = backpressure.Soft
	hard = backpressure.Hard
)

func TestNextLevel(t *testing.T) {
	// capacity 10, low 4, high 8
	for _, tc := range []struct {
		prev backpressure.Level
		size int
		want backpressure.Level
	}{
		{ok, 0, ok}, {ok, 4, ok}, {ok, 5, soft}, {ok, 7, soft}, {ok, 8, hard}, {ok, 10, hard},
		{soft, 4, ok}, {soft, 5, soft}, {soft, 7, soft}, {soft, 8, hard},
		{hard, 9, hard}, {hard, 7, hard}, {hard, 5, hard}, {hard, 4, ok}, {hard, 0, ok},
	} {
		if got := nextLevel(tc.prev, tc.size, 4, 8); got != tc.want {
			t.Errorf("nextLevel(%v, %d) = %v, want %v", tc.prev, tc.size, got, tc.want)
		}
	}
}

// transitions folds nextLevel over sizes, as the queue does, and returns
// the events raised (level@size).
func transitions(sizes []int) []string {
	var out []string
	lvl := ok
	for _, s := range sizes {
		if n := nextLevel(lvl, s, 4, 8); n != lvl {
			lvl = n
			out = append(out, fmt.Sprintf("%v@%d", n, s))
		}
	}
	return out
}

func TestLevelTransitions(t *testing.T) {
	up := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	down := []int{10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0}
	for _, tc := range []struct {
		name  string
		sizes []int
		want  []string
	}{
		{"fill then drain: soft, hard, then ok with no soft on the way down",
			append(slices.Clone(up), down...), []string{"soft@5", "hard@8", "ok@4"}},
		{"hard does not re-fire while hovering above low",
			[]int{5, 8, 7, 6, 5, 8, 9, 6, 8}, []string{"soft@5", "hard@8"}},
		{"hard re-fires only after a new crossing",
			[]int{8, 5, 4, 5, 8}, []string{"hard@8", "ok@4", "soft@5", "hard@8"}},
		{"jumps skip soft", []int{9, 0, 10, 2}, []string{"hard@9", "ok@0", "hard@10", "ok@2"}},
		{"soft band oscillation", []int{5, 4, 6, 3, 7}, []string{"soft@5", "ok@4", "soft@6", "ok@3", "soft@7"}},
		{"no change, no event", []int{0, 1, 4, 2, 3}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := transitions(tc.sizes); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestQueueLevelEvents fills a capacity-10 queue one tick at a time and
// drains it, checking the events the queue itself raises.
func TestQueueLevelEvents(t *testing.T) {
	cfg := testConfig()
	cfg.Capacity, cfg.HighWatermark, cfg.LowWatermark, cfg.BatchSize = 10, 8, 4, 1
	h := start(t, cfg, newMemSink(), nil, false)
	var got []backpressure.Event
	h.c.q.onLevel = func(e backpressure.Event) { got = append(got, e) }
	h.c.Assign([]tick.TopicPartition{p0})
	for i := range 10 {
		if err := h.c.TrySubmit(chunk(p0, int64(i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.c.TrySubmit(chunk(p0, 10, 1)); err != ErrQueueFull {
		t.Fatalf("TrySubmit on a full queue: %v, want ErrQueueFull", err)
	}
	if cur := h.c.Current(); cur.Level != hard || cur.QueueSize != 10 || cur.Reason != backpressure.ReasonHighWatermark {
		t.Errorf("Current() = %+v", cur)
	}
	for range 10 {
		b := h.c.q.take(context.Background())
		h.c.q.release(b)
	}
	type ev struct {
		lvl    backpressure.Level
		size   int
		reason string
	}
	var evs []ev
	for _, e := range got {
		if e.CoordinatorID != "test" || e.Capacity != 10 || e.Source != "store" || e.TS == 0 ||
			e.Utilization != float64(e.QueueSize)/10 {
			t.Errorf("bad event %+v", e)
		}
		evs = append(evs, ev{e.Level, e.QueueSize, e.Reason})
	}
	want := []ev{{soft, 5, "soft_watermark"}, {hard, 8, "high_watermark"}, {ok, 4, "low_watermark"}}
	if !slices.Equal(evs, want) {
		t.Errorf("events %v, want %v", evs, want)
	}
}
