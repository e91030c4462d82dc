package coordinator

import "github.com/market-data-store/mds/backpressure"

// nextLevel is the level of a queue holding size ticks, given the level it
// had before. OK at or below low, HARD at or above high, SOFT between; once
// HARD it stays HARD until the queue drains to low (no SOFT on the way
// down), so HARD is raised again only by a new crossing from below.
func nextLevel(prev backpressure.Level, size, low, high int) backpressure.Level {
	switch {
	case size >= high:
		return backpressure.Hard
	case size <= low:
		return backpressure.OK
	case prev == backpressure.Hard:
		return backpressure.Hard
	default:
		return backpressure.Soft
	}
}

// reasonFor is the event reason of a transition into l.
func reasonFor(l backpressure.Level) string {
	switch l {
	case backpressure.Hard:
		return backpressure.ReasonHighWatermark
	case backpressure.Soft:
		return backpressure.ReasonSoft
	default:
		return backpressure.ReasonLowWatermark
	}
}
