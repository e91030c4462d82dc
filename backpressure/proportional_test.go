package backpressure

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// newTestFollower is a Follower without a client, fed with apply and
// evaluate.
func newTestFollower(proportional bool) *Follower {
	return &Follower{
		topic: DefaultTopic, stale: DefaultStale, proportional: proportional,
		scales: [3]float64{DefaultScaleOK, DefaultScaleSoft, DefaultScaleHard},
		coords: make(map[string]heard), changed: make(chan struct{}),
	}
}

func (f *Follower) hear(t *testing.T, now time.Time, e Event) {
	t.Helper()
	e.CoordinatorID, e.Source, e.TS = "mds-1", SourceStore, UnixSeconds(now)
	v, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	f.apply(&kgo.Record{Key: []byte(e.CoordinatorID), Value: v}, now)
	f.evaluate(now)
}

// In the proportional mode the SOFT scale steers the producers' total
// toward 90 % of the sustainable rate; the simple mode halves.
func TestProportionalSoft(t *testing.T) {
	now := time.Unix(1_760_000_000, 0)
	steps := []struct {
		name         string
		e            Event
		simple, prop float64
		signal       bool // proportional: Changed closed
	}{
		{"ok at full speed", Event{Level: OK, ArrivalRate: 150_000, SustainableRate: 100_000}, 1, 1, false},
		{"soft from ok: 1 × 0.9 × 100k/150k", Event{Level: Soft, ArrivalRate: 150_000, SustainableRate: 100_000}, 0.5, 0.6, true},
		{"producers at 0.6 make 90k: steady", Event{Level: Soft, ArrivalRate: 90_000, SustainableRate: 100_000}, 0.5, 0.6, false},
		{"the store slows to 50k: 0.6 × 0.5", Event{Level: Soft, ArrivalRate: 90_000, SustainableRate: 50_000}, 0.5, 0.3, true},
		{"an event without rates keeps the scale", Event{Level: Soft}, 0.5, 0.3, false},
		{"a big headroom at most doubles", Event{Level: Soft, ArrivalRate: 10_000, SustainableRate: 100_000}, 0.5, 0.6, true},
		{"never above the ok scale", Event{Level: Soft, ArrivalRate: 10_000, SustainableRate: 100_000}, 0.5, 1, true},
		{"hard stops", Event{Level: Hard, ArrivalRate: 200_000, SustainableRate: 100_000}, 0, 0, true},
		{"soft from hard starts at the soft scale", Event{Level: Soft, ArrivalRate: 1_000, SustainableRate: 100_000}, 0.5, 0.5, true},
	}
	simple, prop := newTestFollower(false), newTestFollower(true)
	for _, s := range steps {
		now = now.Add(time.Second)
		changed := prop.Changed()
		simple.hear(t, now, s.e)
		prop.hear(t, now, s.e)
		if got := simple.Scale(); got != s.simple {
			t.Errorf("%s: simple scale %v, want %v", s.name, got, s.simple)
		}
		if got := prop.Scale(); math.Abs(got-s.prop) > 1e-9 {
			t.Errorf("%s: proportional scale %v, want %v", s.name, got, s.prop)
		}
		select {
		case <-changed:
			if !s.signal {
				t.Errorf("%s: Changed closed, want not", s.name)
			}
		default:
			if s.signal {
				t.Errorf("%s: Changed not closed, want closed", s.name)
			}
		}
		if simple.Level() != prop.Level() || prop.Level() != s.e.Level {
			t.Errorf("%s: levels %s (simple) and %s (proportional), want %s", s.name, simple.Level(), prop.Level(), s.e.Level)
		}
	}
}
