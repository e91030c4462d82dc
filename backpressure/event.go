package backpressure

import (
	"fmt"
	"time"
)

// Level is the backpressure level of one coordinator.
type Level int8

// Levels, from no pressure to stop.
const (
	OK   Level = iota // queue at or below the low watermark: full speed
	Soft              // between the watermarks: slow down
	Hard              // at or above the high watermark: stop
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Soft:
		return "soft"
	case Hard:
		return "hard"
	}
	return fmt.Sprintf("level(%d)", int8(l))
}

// MarshalText encodes the level as "ok", "soft" or "hard".
func (l Level) MarshalText() ([]byte, error) {
	if l < OK || l > Hard {
		return nil, fmt.Errorf("unknown level %d", int8(l))
	}
	return []byte(l.String()), nil
}

// UnmarshalText accepts what ParseLevel accepts.
func (l *Level) UnmarshalText(b []byte) error {
	v, err := ParseLevel(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLevel parses "ok", "soft" or "hard" with ASCII letters in any case
// ("Hard", "sOFT"). Other spellings, including Unicode look-alikes, are
// errors.
func ParseLevel(s string) (Level, error) {
	for l := OK; l <= Hard; l++ {
		if equalFoldASCII(s, l.String()) {
			return l, nil
		}
	}
	return OK, fmt.Errorf("unknown level %q (want ok, soft or hard)", s)
}

// equalFoldASCII reports whether s equals lower, a lower-case ASCII string,
// ignoring the case of ASCII letters only.
func equalFoldASCII(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Reasons carried by events.
const (
	ReasonHighWatermark = "high_watermark" // rose to HARD
	ReasonSoft          = "soft_watermark" // entered the band between the watermarks
	ReasonLowWatermark  = "low_watermark"  // drained to OK
	ReasonHeartbeat     = "heartbeat"      // periodic re-publication of the current level
)

// SourceStore is the source of events raised by the write coordinator in
// front of the store.
const SourceStore = "store"

// Event is one feedback event: the queue state of one coordinator. It is the
// value of the feedback topic (keyed by CoordinatorID) and the body of the
// webhook. Events are values: never modify one after publishing it.
type Event struct {
	CoordinatorID string  `json:"coordinator_id"`
	QueueSize     int     `json:"queue_size"`
	Capacity      int     `json:"capacity"`
	Utilization   float64 `json:"utilization"`
	Level         Level   `json:"level"`
	Reason        string  `json:"reason"`
	Source        string  `json:"source"`
	TS            float64 `json:"ts"` // Unix seconds with fraction
	// HeartbeatInterval is the publisher's heartbeat interval in seconds,
	// optional (0: not given). A Follower keeps counting the coordinator
	// for at least three of them.
	HeartbeatInterval float64 `json:"heartbeat_interval,omitempty"`
}

// Time returns TS as a time.Time.
func (e Event) Time() time.Time {
	sec := int64(e.TS)
	return time.Unix(sec, int64((e.TS-float64(sec))*1e9))
}

// UnixSeconds converts t to the TS representation.
func UnixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
