// Package retry is the one wait policy between attempts of the service:
// database writes, stored-offset reads and webhook deliveries all wait
// according to a Policy. The intervals come from cenkalti/backoff; this
// package only fixes how a Policy maps onto it and how a wait honours ctx.
package retry

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy is an exponential wait: Initial, then Multiplier times longer after
// each failure, at most Max; with Jitter each wait is drawn within ±50 % of
// that.
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	Jitter     bool
}

// Backoff returns a fresh schedule following p. NextBackOff never stops
// (there is no elapsed-time limit): the caller decides when to give up.
func (p Policy) Backoff() *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval: p.Initial,
		Multiplier:      max(p.Multiplier, 1),
		MaxInterval:     max(p.Max, p.Initial),
	}
	if p.Jitter {
		b.RandomizationFactor = 0.5
	}
	b.Reset()
	return b
}

// Sleep waits for d or until ctx is done, and reports whether the whole
// wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
