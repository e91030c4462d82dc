package backpressure

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// vector is one file of docs/feedback-vectors (see its README.md): a
// timeline of feedback records and the level, rate and coordinators a
// follower must show at given times. clients/python runs the same files, so
// the Go and Python followers cannot drift apart.
type vector struct {
	Description string `json:"description"`
	Epoch       int64  `json:"epoch"` // Unix seconds; at_ms counts from here
	Follower    struct {
		Stale            float64    `json:"stale"` // seconds
		Scales           [3]float64 `json:"scales"`
		TargetRate       float64    `json:"target_rate"`
		ProportionalSoft bool       `json:"proportional_soft"` // WithProportionalSoft
	} `json:"follower"`
	Steps []struct {
		AtMS   int64 `json:"at_ms"`
		Record *struct {
			Key       string          `json:"key"`
			Event     json.RawMessage `json:"event"`     // the value, as JSON
			Raw       *string         `json:"raw"`       // or the value, byte for byte
			Tombstone bool            `json:"tombstone"` // or no value
		} `json:"record"`
		Decodes *bool `json:"decodes"` // default true
		Expect  *struct {
			Level        string            `json:"level"`
			Rate         float64           `json:"rate"`
			Coordinators map[string]string `json:"coordinators"`
			Changed      *bool             `json:"changed"` // Changed closed since the last expect
		} `json:"expect"`
		Note string `json:"note"`
	} `json:"steps"`
}

func TestVectors(t *testing.T) {
	files, err := filepath.Glob("../docs/feedback-vectors/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no vectors in docs/feedback-vectors")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var v vector
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("vector is not valid: %v", err)
			}
			runVector(t, v)
		})
	}
}

func runVector(t *testing.T, v vector) {
	// The client is never polled: the test drives apply and evaluate with
	// the vector's clock.
	opts := []Option{WithBrokers("127.0.0.1:1"), WithStale(time.Duration(v.Follower.Stale * float64(time.Second))),
		WithScales(v.Follower.Scales[OK], v.Follower.Scales[Soft], v.Follower.Scales[Hard])}
	if v.Follower.ProportionalSoft {
		opts = append(opts, WithProportionalSoft())
	}
	f, err := NewFollower(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lim, err := NewLimiter(v.Follower.TargetRate, 0, f)
	if err != nil {
		t.Fatal(err)
	}
	expects := 0
	changed := f.Changed()
	for i, s := range v.Steps {
		now := time.Unix(v.Epoch, 0).Add(time.Duration(s.AtMS) * time.Millisecond)
		switch {
		case s.Record != nil:
			r := &kgo.Record{Topic: "vectors", Key: []byte(s.Record.Key), Offset: int64(i)}
			switch {
			case s.Record.Tombstone:
			case s.Record.Raw != nil:
				r.Value = []byte(*s.Record.Raw)
			case s.Record.Event != nil:
				r.Value = s.Record.Event
			default:
				t.Fatalf("step %d: record without event, raw or tombstone", i)
			}
			if r.Value != nil {
				want := s.Decodes == nil || *s.Decodes
				var e Event
				if err := json.Unmarshal(r.Value, &e); (err == nil) != want {
					t.Errorf("step %d (%s): decoding error %v, want decodes=%v", i, s.Note, err, want)
				}
			}
			f.apply(r, now)
		case s.Expect != nil:
			expects++
			f.evaluate(now)
			if got := f.Level().String(); got != s.Expect.Level {
				t.Errorf("step %d at %d ms (%s): level %s, want %s", i, s.AtMS, s.Note, got, s.Expect.Level)
			}
			if got := lim.Rate(); got != s.Expect.Rate {
				t.Errorf("step %d at %d ms (%s): rate %v, want %v", i, s.AtMS, s.Note, got, s.Expect.Rate)
			}
			select {
			case <-changed:
				if s.Expect.Changed != nil && !*s.Expect.Changed {
					t.Errorf("step %d at %d ms (%s): Changed closed, want not", i, s.AtMS, s.Note)
				}
			default:
				if s.Expect.Changed != nil && *s.Expect.Changed {
					t.Errorf("step %d at %d ms (%s): Changed not closed, want closed", i, s.AtMS, s.Note)
				}
			}
			changed = f.Changed()
			got := map[string]string{}
			f.mu.Lock()
			for id, h := range f.coords {
				got[id] = h.event.Level.String()
			}
			f.mu.Unlock()
			if len(got) != len(s.Expect.Coordinators) {
				t.Errorf("step %d at %d ms: coordinators %v, want %v", i, s.AtMS, got, s.Expect.Coordinators)
				continue
			}
			for id, l := range s.Expect.Coordinators {
				if got[id] != l {
					t.Errorf("step %d at %d ms: coordinators %v, want %v", i, s.AtMS, got, s.Expect.Coordinators)
					break
				}
			}
		default:
			t.Fatalf("step %d: neither record nor expect", i)
		}
	}
	if expects == 0 {
		t.Fatal("vector checks nothing")
	}
}
