package retry

import (
	"context"
	"testing"
	"time"
)

func TestBackoffGrowsToMax(t *testing.T) {
	b := Policy{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2}.Backoff()
	want := []time.Duration{10, 20, 40, 80, 80, 80}
	for i, w := range want {
		if got := b.NextBackOff(); got != w*time.Millisecond {
			t.Fatalf("wait %d = %s, want %s", i, got, w*time.Millisecond)
		}
	}
	b.Reset()
	if got := b.NextBackOff(); got != 10*time.Millisecond {
		t.Fatalf("after Reset: %s, want 10ms", got)
	}
}

func TestBackoffJitterStaysWithinHalf(t *testing.T) {
	b := Policy{Initial: 100 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, Jitter: true}.Backoff()
	distinct := map[time.Duration]bool{}
	for range 200 {
		d := b.NextBackOff()
		if d < 50*time.Millisecond || d > 150*time.Millisecond {
			t.Fatalf("jittered wait %s outside 50ms..150ms", d)
		}
		distinct[d] = true
	}
	if len(distinct) < 10 {
		t.Fatalf("only %d distinct waits in 200: not jittered", len(distinct))
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep with a done context reported a full wait")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep of 1ms did not report a full wait")
	}
}
