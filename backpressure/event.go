package backpressure

import (
	"fmt"
	"time"
)

// Level is the backpressure level of one coordinator. On the feedback topic
// it is the upstream level: whether the live arrival rate exceeds what the
// store can take (see the package documentation); inside the processor the
// same type is the queue level, which drives pausing.
type Level int8

// Levels, from no pressure to stop.
const (
	OK   Level = iota // the store keeps up with the live rate: full speed
	Soft              // near what the store sustains, or draining after HARD: slow down
	Hard              // the lag grows, or the store is failing: stop
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

// Reasons carried by events. The first three name queue level transitions
// (in-process, and on the topic from publishers older than the upstream
// level); the others name upstream level transitions. Readers must accept
// reasons they do not know.
const (
	ReasonHighWatermark = "high_watermark" // queue rose to HARD
	ReasonSoft          = "soft_watermark" // queue entered the band between the watermarks
	ReasonLowWatermark  = "low_watermark"  // queue drained to OK
	ReasonHeartbeat     = "heartbeat"      // periodic re-publication of the current level

	ReasonLagGrowing   = "lag_growing"   // HARD: arrivals exceed what the store writes, the lag grows
	ReasonStoreFailing = "store_failing" // HARD: writes have been failing
	ReasonDraining     = "draining"      // SOFT: after HARD, the lag built by the overload is drained
	ReasonNearCapacity = "near_capacity" // SOFT: a lag exists and arrivals are close to the write rate
	ReasonLagAge       = "lag_age"       // SOFT: the oldest unwritten record is older than the publisher's limit
	ReasonKeepingUp    = "keeping_up"    // OK: the store keeps up with the live rate (a lag, if any, shrinks)
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

	// The fields below are optional measurements behind the upstream
	// level, carried by events of publishers that compute it. A field
	// that is absent (0 here) is zero or was not measured. Rates count
	// records (Kafka offsets) per second over the coordinator's assigned
	// partitions, smoothed over a few seconds.

	// LagRecords is the number of records not yet written: in Kafka past
	// the consumer's position, plus those queued.
	LagRecords int64 `json:"lag_records,omitempty"`
	// LagSeconds is the age of the oldest record not yet written, from
	// Kafka record timestamps (an upper bound: the time since the newest
	// record written of the partition furthest behind).
	LagSeconds float64 `json:"lag_seconds,omitempty"`
	// ArrivalRate is the growth of the partitions' end offsets: what
	// producers write now.
	ArrivalRate float64 `json:"arrival_rate,omitempty"`
	// WriteRate is the rate of records committed to the database.
	WriteRate float64 `json:"write_rate,omitempty"`
	// SustainableRate is the write rate the store was measured to sustain
	// while a lag kept it busy; absent until measured.
	SustainableRate float64 `json:"sustainable_rate,omitempty"`
}

// Time returns TS as a time.Time.
func (e Event) Time() time.Time {
	sec := int64(e.TS)
	return time.Unix(sec, int64((e.TS-float64(sec))*1e9))
}

// UnixSeconds converts t to the TS representation.
func UnixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
