package feedback

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/market-data-store/mds/backpressure"
)

// sim is a fluid model of one coordinator on a fake clock: producers send
// at demand × the scale of the level they last heard (ok 1, soft 0.5,
// hard 0; heard one second late), Kafka holds the lag, and the store
// writes at its capacity while there is a lag, at the arrival rate
// otherwise, and not at all while locked.
type sim struct {
	t        *testing.T
	u        *Upstream
	now      time.Time
	start    time.Time
	capacity float64 // store, records/s
	backlog  int64   // Sample.Backlog
	lag      float64
	heard    []backpressure.Level // levels published, one per step; producers read a second late
	timeline []string
	changes  []time.Time
	age      time.Duration // Sample.LagAge while lag > 0
}

const simStep = 500 * time.Millisecond

func newSim(t *testing.T, capacity float64, lag float64) *sim {
	start := time.Date(2026, 1, 2, 15, 0, 0, 0, time.UTC)
	s := &sim{t: t, u: NewUpstream(5*time.Second, time.Hour), now: start, start: start, capacity: capacity, backlog: 50_000, lag: lag}
	s.u.Observe(Sample{At: start, LagRecords: int64(lag), Backlog: s.backlog})
	return s
}

// level is what producers obey now.
func (s *sim) level() backpressure.Level {
	if n := len(s.heard); n > 2 {
		return s.heard[n-3]
	}
	return backpressure.OK
}

// phase runs d of simulated time with producers wanting demand records/s.
// locked stops the store's writes (a table lock: the write in progress
// hangs); failing makes every write fail.
func (s *sim) phase(name string, d time.Duration, demand float64, locked, failing bool) {
	s.logf("phase %s: demand %.0f/s, locked %v, failing %v", name, demand, locked, failing)
	var lockedSince, failingSince time.Time
	for end := s.now.Add(d); s.now.Before(end); {
		s.now = s.now.Add(simStep)
		dt := simStep.Seconds()
		arrived := demand * scaleOf(s.level()) * dt
		written := 0.0
		switch {
		case locked || failing:
		case s.lag > 0:
			written = min(s.capacity*dt, s.lag+arrived)
		default:
			written = min(s.capacity*dt, arrived)
		}
		s.lag += arrived - written
		smp := Sample{At: s.now, Arrived: int64(arrived), Written: int64(written), LagRecords: int64(s.lag), Backlog: s.backlog}
		if s.lag > 0 {
			smp.LagAge = s.age
		}
		if locked {
			if lockedSince.IsZero() {
				lockedSince = s.now
			}
			smp.OldestWrite = s.now.Sub(lockedSince)
		}
		if failing {
			if failingSince.IsZero() {
				failingSince = s.now
			}
			smp.FailingFor = s.now.Sub(failingSince)
		}
		e, changed := s.u.Observe(smp)
		s.heard = append(s.heard, e.Level)
		if changed {
			s.changes = append(s.changes, s.now)
			s.logf("level %s (%s): arrival %.0f/s, write %.0f/s, sustainable %.0f/s, lag %d", e.Level, e.Reason, e.ArrivalRate, e.WriteRate, e.SustainableRate, e.LagRecords)
		}
	}
}

func scaleOf(l backpressure.Level) float64 {
	return map[backpressure.Level]float64{backpressure.OK: 1, backpressure.Soft: 0.5, backpressure.Hard: 0}[l]
}

func (s *sim) logf(format string, args ...any) {
	s.timeline = append(s.timeline, fmt.Sprintf("%6.1fs %s", s.now.Sub(s.start).Seconds(), fmt.Sprintf(format, args...)))
}

// levelsSince lists the levels published from t on, without repeats.
func (s *sim) levelsSince(t time.Duration) []backpressure.Level {
	var out []backpressure.Level
	for i, l := range s.heard {
		if time.Duration(i+1)*simStep < t {
			continue
		}
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return out
}

// firstAfter returns when level was first published at or after t, or -1.
func (s *sim) firstAfter(t time.Duration, level backpressure.Level) time.Duration {
	for i, l := range s.heard {
		if at := time.Duration(i+1) * simStep; at >= t && l == level {
			return at
		}
	}
	return -1
}

func TestUpstreamLevels(t *testing.T) {
	const store = 100_000 // records/s
	for _, tc := range []struct {
		name  string
		run   func(s *sim)
		check func(t *testing.T, s *sim)
	}{{
		name: "a replay at half the store's rate is OK throughout",
		run: func(s *sim) {
			s.phase("replay of 1M with live producers at half", 40*time.Second, store/2, false, false)
		},
		check: func(t *testing.T, s *sim) {
			if got := s.levelsSince(0); len(got) != 1 || got[0] != backpressure.OK {
				t.Errorf("levels %v, want only ok", got)
			}
			if s.lag > 0 {
				t.Errorf("lag %.0f left, want the replay caught up", s.lag)
			}
			if sr := s.u.Current().SustainableRate; sr < 0.9*store || sr > 1.1*store {
				t.Errorf("sustainable rate %.0f, want about %d", sr, store)
			}
		},
	}, {
		name: "a store that starts slowly under a backlog is not overloaded",
		run: func(s *sim) {
			s.capacity = 0
			s.phase("store warming up", 3*time.Second, store/2, false, false)
			s.capacity = store
			s.phase("replay", 40*time.Second, store/2, false, false)
		},
		check: func(t *testing.T, s *sim) {
			if got := s.levelsSince(0); len(got) != 1 || got[0] != backpressure.OK {
				t.Errorf("levels %v, want only ok", got)
			}
		},
	}, {
		name: "live above the store's rate: HARD within seconds, producers held until the lag stops growing",
		run: func(s *sim) {
			s.lag = 0
			s.phase("live below the store", 10*time.Second, 0.8*store, false, false)
			s.phase("live above the store", 90*time.Second, 1.2*store, false, false)
		},
		check: func(t *testing.T, s *sim) {
			if got := s.levelsSince(0); got[0] != backpressure.OK || s.firstAfter(0, backpressure.Hard) < 10*time.Second {
				t.Errorf("levels %v before the overload, want ok", got)
			}
			hard := s.firstAfter(10*time.Second, backpressure.Hard)
			if hard < 0 || hard > 18*time.Second {
				t.Fatalf("HARD at %v, want within 8 s of the overload at 10 s", hard)
			}
			// Producers obeying the level do not run above the store for
			// long: the lag stays near the backlog threshold instead of
			// growing by 20k/s for 90 s, and the level changes no faster
			// than the dwell.
			if s.lag > 2*float64(s.backlog) {
				t.Errorf("lag %.0f after 90 s of overload, want bounded near %d", s.lag, s.backlog)
			}
			for i := 1; i < len(s.changes); i++ {
				if d := s.changes[i].Sub(s.changes[i-1]); d < 5*time.Second {
					t.Errorf("level changed %v after the previous change, want at least the 5 s dwell", d)
				}
			}
		},
	}, {
		name: "a demand jumping above the store during a replay goes to HARD, not SOFT first",
		run: func(s *sim) {
			s.phase("replay with live at half", 10*time.Second, store/2, false, false)
			s.phase("demand at 1.5 × the store", 20*time.Second, 1.5*store, false, false)
		},
		check: func(t *testing.T, s *sim) {
			hard := s.firstAfter(10*time.Second, backpressure.Hard)
			if hard < 0 || hard > 13*time.Second {
				t.Fatalf("HARD at %v, want within 3 s of the jump at 10 s", hard)
			}
			if got := s.levelsSince(10 * time.Second); got[0] != backpressure.OK || got[1] != backpressure.Hard {
				t.Errorf("levels after the jump %v, want ok then hard", got)
			}
		},
	}, {
		name: "a 10 s table lock: HARD, then OK once writes resume",
		run: func(s *sim) {
			s.lag = 500_000 // a replay first: the store's rate is measured
			s.phase("replay", 20*time.Second, store/2, false, false)
			s.phase("table locked", 10*time.Second, store/2, true, false)
			s.phase("unlocked", 30*time.Second, store/2, false, false)
		},
		check: func(t *testing.T, s *sim) {
			if got := s.levelsSince(0); got[0] != backpressure.OK || s.firstAfter(0, backpressure.Hard) < 20*time.Second {
				t.Errorf("levels %v before the lock, want ok", got)
			}
			hard := s.firstAfter(20*time.Second, backpressure.Hard)
			if hard < 0 || hard > 25*time.Second {
				t.Fatalf("HARD at %v, want within 5 s of the lock at 20 s", hard)
			}
			if got := s.levelsSince(hard); len(got) != 2 || got[1] != backpressure.OK {
				t.Errorf("levels from HARD on %v, want hard then ok: the producers' rate is sustainable", got)
			}
		},
	}, {
		name: "failing writes are HARD even with no producer",
		run: func(s *sim) {
			s.lag = 0
			s.phase("idle", 10*time.Second, 0, false, false)
			s.phase("failing", 10*time.Second, 0, false, true)
			s.phase("recovered", 10*time.Second, 0, false, false)
		},
		check: func(t *testing.T, s *sim) {
			hard := s.firstAfter(0, backpressure.Hard)
			if hard < 11*time.Second || hard > 12*time.Second {
				t.Errorf("HARD at %v, want one failAfter after the first failure at 10.5 s", hard)
			}
			if got := s.levelsSince(0); fmt.Sprint(got) != "[ok hard ok]" {
				t.Errorf("levels %v, want [ok hard ok]", got)
			}
		},
	}, {
		name: "a level is held for the minimum dwell",
		run: func(s *sim) {
			s.lag = 0
			for i := range 20 {
				s.phase(fmt.Sprint("flap ", i), 2*time.Second, 0, false, i%2 == 1)
			}
		},
		check: func(t *testing.T, s *sim) {
			if len(s.changes) < 2 {
				t.Fatalf("%d changes, want the flapping input to change the level", len(s.changes))
			}
			for i := 1; i < len(s.changes); i++ {
				if d := s.changes[i].Sub(s.changes[i-1]); d < 5*time.Second {
					t.Errorf("level changed %v after the previous change, want at least the 5 s dwell", d)
				}
			}
		},
	}, {
		name: "a replay older than the lag age limit is SOFT",
		run: func(s *sim) {
			s.age = 2 * time.Hour
			s.phase("old replay", 20*time.Second, store/2, false, false)
			s.age = 0
			s.phase("caught up", 10*time.Second, store/2, false, false)
		},
		check: func(t *testing.T, s *sim) {
			if got := s.levelsSince(0); fmt.Sprint(got) != "[ok soft ok]" {
				t.Errorf("levels %v, want [ok soft ok]", got)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, store, 1_000_000)
			tc.run(s)
			t.Logf("timeline:\n%s", strings.Join(s.timeline, "\n"))
			tc.check(t, s)
		})
	}
}

func TestUpstreamIgnoresSamplesOutOfOrder(t *testing.T) {
	u := NewUpstream(0, 0)
	at := time.Unix(1000, 0)
	u.Observe(Sample{At: at})
	for _, d := range []time.Duration{0, -time.Second} {
		if _, changed := u.Observe(Sample{At: at.Add(d), FailingFor: time.Hour}); changed {
			t.Errorf("a sample at %v changed the level", d)
		}
	}
	if e, changed := u.Observe(Sample{At: at.Add(time.Second), FailingFor: time.Hour}); !changed || e.Level != backpressure.Hard {
		t.Errorf("a later failing sample: level %s changed %v, want hard", e.Level, changed)
	}
}

func TestUpstreamConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"dwell", func(c *Config) { c.MinDwell = -time.Second }, "MDS_FB_MIN_DWELL must be >= 0"},
		{"lag age", func(c *Config) { c.LagAgeSoft = -time.Second }, "MDS_FB_LAG_AGE_SOFT must be >= 0"},
		{"replication 0", func(c *Config) { c.TopicSettings.ReplicationFactor = 0 }, "MDS_FB_TOPIC_REPLICATION_FACTOR must be -1"},
		{"replication too big", func(c *Config) { c.TopicSettings.ReplicationFactor = 40000 }, "MDS_FB_TOPIC_REPLICATION_FACTOR must be -1"},
		{"min isr", func(c *Config) { c.TopicSettings.MinInsyncReplicas = -1 }, "MDS_FB_TOPIC_MIN_INSYNC_REPLICAS must be >= 0"},
		{"segment", func(c *Config) { c.TopicSettings.Segment = time.Millisecond }, "MDS_FB_TOPIC_SEGMENT must be at least 1s"},
	} {
		c := DefaultConfig()
		tc.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
	c := DefaultConfig()
	c.TopicSettings = TopicConfig{ReplicationFactor: 3, MinInsyncReplicas: 2, Segment: time.Minute}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "60000", "min.insync.replicas": "2"}
	got := c.TopicSettings.topicConfigs()
	if len(got) != len(want) {
		t.Errorf("topic configs %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] == nil || *got[k] != v {
			t.Errorf("topic config %s = %v, want %s", k, got[k], v)
		}
	}
	if _, ok := DefaultConfig().TopicSettings.topicConfigs()["min.insync.replicas"]; ok {
		t.Error("the default sets min.insync.replicas, want the broker's")
	}
}
