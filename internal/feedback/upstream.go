package feedback

import (
	"math"
	"time"

	"github.com/market-data-store/mds/backpressure"
)

// Constants of the upstream estimator. They are not settings: they shape
// how measurements are read, not what the operator wants.
const (
	// rateWindow is the time constant of the smoothed arrival and write
	// rates: long enough to even out batch commits and fetches, short
	// enough that an overload shows within a few seconds.
	rateWindow = 2 * time.Second
	// capacityWindow is the time constant of the sustainable rate.
	capacityWindow = 10 * time.Second
	// growthMargin: with a backlog, arrivals above the write rate by more
	// than this fraction make the lag grow (HARD).
	growthMargin = 0.05
	// nearMargin: with a backlog, arrivals within this fraction of the
	// write rate are SOFT (near capacity); after HARD, arrivals at entry
	// within it of the sustainable rate mean the producers caused the
	// lag, which is drained at SOFT.
	nearMargin = 0.10
	// failAfter: writes failing for this long with no success in between
	// make HARD (one retried error does not).
	failAfter = time.Second
	// stallAfter: a write in progress for this long makes HARD (a lock,
	// a database that stopped answering without an error).
	stallAfter = 10 * time.Second
)

// Sample is one observation of a coordinator's upstream state, taken every
// sampleInterval by the Monitor.
type Sample struct {
	At time.Time
	// Arrived is the number of records appended to the assigned
	// partitions since the previous sample (growth of their end offsets).
	Arrived int64
	// Written is the number of records committed since the previous
	// sample.
	Written int64
	// LagRecords is the number of records not yet written.
	LagRecords int64
	// LagAge is the age of the oldest record not yet written; 0 when
	// there is none or it is not known.
	LagAge time.Duration
	// Backlog is the lag, in records, above which the store is taken to be
	// the bottleneck: the queue capacity, since a lag larger than a full
	// queue is data in Kafka that the process cannot take in yet.
	Backlog int64
	// FailingFor is how long writes have been failing with no success in
	// between; 0 when the last write succeeded.
	FailingFor time.Duration
	// OldestWrite is how long the oldest write in progress has been
	// running; 0 when none is.
	OldestWrite time.Duration
}

// Estimate is the upstream level and the measurements behind it.
type Estimate struct {
	Level  backpressure.Level
	Reason string    // of the transition into Level
	Since  time.Time // of the transition into Level
	// Records per second, smoothed; SustainableRate is 0 until measured.
	ArrivalRate, WriteRate, SustainableRate float64
	LagRecords                              int64
	LagSeconds                              float64
}

// Upstream estimates the level published to producers from Samples. It is a
// pure state machine (time comes from the samples) and not safe for
// concurrent use.
//
// The level answers: does the live arrival rate exceed what the store can
// take? Let A be the smoothed arrival rate, W the smoothed write rate, and
// "backlog" a lag larger than Sample.Backlog. Then, first match wins:
//
//   - HARD store_failing: writes have failed for failAfter with no success,
//     or one has run for stallAfter.
//   - HARD lag_growing: backlog and A > W·(1+growthMargin), once writes
//     have been measured for two rate windows (a store starting up is not
//     overloaded).
//   - SOFT draining: backlog, after a HARD that producers caused (A when
//     HARD was entered was within nearMargin of the sustainable rate, or
//     above it): producers come back at SOFT until the lag they built is
//     gone, instead of at full speed into a store still behind.
//   - SOFT near_capacity: backlog and A ≥ W·(1−nearMargin): the lag hardly
//     shrinks; unless the arrivals of the last interval are above
//     W·(1+growthMargin): then A is on its way up to HARD, and a SOFT
//     held for the dwell would only delay it.
//   - SOFT lag_age: the oldest unwritten record is older than lagAgeSoft
//     (when set), so that a long replay does not run into retention.
//   - OK keeping_up: otherwise, including a replay of a backlog while
//     producers run at a rate the store sustains.
//
// A level is held for at least minDwell after it was entered, so it never
// changes faster than producers can follow. The sustainable rate is the
// write rate measured while a backlog kept the store busy (smoothed over
// capacityWindow), and never less than W.
type Upstream struct {
	dwell, lagAgeSoft time.Duration

	started         bool
	last            time.Time // previous sample
	firstWrite      time.Time // first sample with records written
	arrival, write  float64   // smoothed rates
	rawArrival      float64   // over the last interval
	sustainable     float64
	entryArrival    float64 // A when HARD was last entered
	draining        bool
	cur             Estimate
	hasRates, hasSR bool
}

// NewUpstream returns an estimator at OK that holds each level for at least
// minDwell and says SOFT when the lag is older than lagAgeSoft (0: never).
func NewUpstream(minDwell, lagAgeSoft time.Duration) *Upstream {
	return &Upstream{
		dwell:      minDwell,
		lagAgeSoft: lagAgeSoft,
		cur:        Estimate{Level: backpressure.OK, Reason: backpressure.ReasonKeepingUp},
	}
}

// Current returns the last estimate.
func (u *Upstream) Current() Estimate { return u.cur }

// Observe takes a sample and returns the estimate, and whether its level
// changed. Samples must come in time order; one not after the previous is
// ignored.
func (u *Upstream) Observe(s Sample) (Estimate, bool) {
	if !u.started {
		u.started, u.last, u.cur.Since = true, s.At, s.At
		u.cur.LagRecords, u.cur.LagSeconds = s.LagRecords, s.LagAge.Seconds()
		return u.cur, false
	}
	dt := s.At.Sub(u.last).Seconds()
	if dt <= 0 {
		return u.cur, false
	}
	u.last = s.At
	a, w := float64(s.Arrived)/dt, float64(s.Written)/dt
	u.rawArrival = a
	if u.hasRates {
		u.arrival = smooth(u.arrival, a, dt, rateWindow)
		u.write = smooth(u.write, w, dt, rateWindow)
	} else {
		u.arrival, u.write, u.hasRates = a, w, true
	}
	if s.Written > 0 && u.firstWrite.IsZero() {
		u.firstWrite = s.At
	}
	backlog := s.LagRecords > s.Backlog
	switch {
	case backlog && s.Written > 0 && u.hasSR:
		u.sustainable = smooth(u.sustainable, w, dt, capacityWindow)
	case backlog && s.Written > 0:
		u.sustainable, u.hasSR = w, true
	}
	u.sustainable = max(u.sustainable, u.write)
	if !backlog {
		u.draining = false
	}

	level, reason := u.target(s, backlog)
	changed := level != u.cur.Level && s.At.Sub(u.cur.Since) >= u.dwell
	if changed {
		switch {
		case level == backpressure.Hard:
			u.entryArrival = u.arrival
		case reason == backpressure.ReasonDraining:
			u.draining = true
		}
		u.cur.Level, u.cur.Reason, u.cur.Since = level, reason, s.At
	}
	u.cur.ArrivalRate, u.cur.WriteRate = u.arrival, u.write
	u.cur.SustainableRate = 0
	if u.hasSR {
		u.cur.SustainableRate = u.sustainable
	}
	u.cur.LagRecords, u.cur.LagSeconds = s.LagRecords, s.LagAge.Seconds()
	return u.cur, changed
}

// target is the level the sample calls for, before the dwell.
func (u *Upstream) target(s Sample, backlog bool) (backpressure.Level, string) {
	warm := !u.firstWrite.IsZero() && s.At.Sub(u.firstWrite) >= 2*rateWindow
	switch {
	case s.FailingFor >= failAfter || s.OldestWrite >= stallAfter:
		return backpressure.Hard, backpressure.ReasonStoreFailing
	case warm && backlog && u.arrival > u.write*(1+growthMargin):
		return backpressure.Hard, backpressure.ReasonLagGrowing
	case backlog && (u.draining || u.cur.Level == backpressure.Hard && u.producersOverloaded()):
		return backpressure.Soft, backpressure.ReasonDraining
	case backlog && u.arrival >= u.write*(1-nearMargin) && u.rawArrival <= u.write*(1+growthMargin):
		return backpressure.Soft, backpressure.ReasonNearCapacity
	case u.lagAgeSoft > 0 && s.LagAge >= u.lagAgeSoft:
		return backpressure.Soft, backpressure.ReasonLagAge
	}
	return backpressure.OK, backpressure.ReasonKeepingUp
}

// producersOverloaded tells whether the arrival rate when HARD was entered
// was too much for the store: within nearMargin of the sustainable rate or
// above it, or the store's rate was never measured.
func (u *Upstream) producersOverloaded() bool {
	return !u.hasSR || u.entryArrival >= u.sustainable*(1-nearMargin)
}

// smooth moves avg towards x by an exponentially weighted step for dt
// seconds with time constant window: samples at irregular intervals weigh
// by the time they cover.
func smooth(avg, x, dt float64, window time.Duration) float64 {
	return avg + (1-math.Exp(-dt/window.Seconds()))*(x-avg)
}
