package coordinator

import (
	"sync"
	"time"
)

// circuitState is the state of the breaker, as exported in
// mds_coord_circuit_state.
type circuitState int

const (
	circuitClosed circuitState = iota
	circuitOpen
	circuitHalfOpen
)

func (s circuitState) String() string {
	switch s {
	case circuitClosed:
		return "closed"
	case circuitOpen:
		return "open"
	default:
		return "half-open"
	}
}

// breaker is the circuit breaker shared by the workers. It counts failed
// rounds (not attempts): threshold consecutive ones open it; after cooldown
// one probe attempt is let through (half-open), and its outcome closes or
// reopens it. Times come from the caller so that tests can fake them.
type breaker struct {
	threshold int
	cooldown  time.Duration
	onChange  func(circuitState) // called with mu held

	mu       sync.Mutex
	state    circuitState
	failures int
	openedAt time.Time
	probing  bool
	changed  chan struct{} // closed on the next transition or end of a probe
}

func newBreaker(cfg BreakerConfig, onChange func(circuitState)) *breaker {
	return &breaker{
		threshold: cfg.FailureThreshold,
		cooldown:  cfg.HalfOpenAfter,
		onChange:  onChange,
		changed:   make(chan struct{}),
	}
}

// allow reports whether an attempt may start at now, and whether it is the
// half-open probe. When it may not, the caller waits for wait or until
// changed (which may be nil) is closed, then asks again.
func (b *breaker) allow(now time.Time) (ok, probe bool, wait time.Duration, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case circuitClosed:
		return true, false, 0, nil
	case circuitOpen:
		if d := b.openedAt.Add(b.cooldown).Sub(now); d > 0 {
			return false, false, d, nil
		}
		b.setLocked(circuitHalfOpen)
	}
	if b.probing {
		return false, false, b.cooldown, b.changed
	}
	b.probing = true
	return true, true, 0, nil
}

// success records a write that reached the database: it closes the breaker.
func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.probing = false
	b.setLocked(circuitClosed)
}

// failure records a failed round. In half-open state only the probe's
// failure counts (it reopens the breaker); a round that started before the
// breaker opened is ignored then.
func (b *breaker) failure(now time.Time, probe bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.state == circuitHalfOpen && probe:
		b.probing = false
		b.openLocked(now)
	case b.state == circuitClosed:
		b.failures++
		if b.failures >= b.threshold {
			b.openLocked(now)
		}
	}
}

// abandon gives the probe back without a verdict (its batch had nothing
// left to write).
func (b *breaker) abandon() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.probing = false
	b.notifyLocked()
}

func (b *breaker) current() circuitState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *breaker) openLocked(now time.Time) {
	b.openedAt = now
	b.failures = 0
	b.setLocked(circuitOpen)
}

func (b *breaker) setLocked(s circuitState) {
	if s == b.state {
		return
	}
	b.state = s
	b.onChange(s)
	b.notifyLocked()
}

func (b *breaker) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}
