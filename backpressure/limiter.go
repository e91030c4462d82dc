package backpressure

import (
	"context"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// ScaleSource tells a Limiter how much of its target rate to use. *Follower
// is one.
type ScaleSource interface {
	// Scale returns a factor in [0, 1] applied to the target rate.
	Scale() float64
	// Changed returns a channel closed when Scale may have changed.
	Changed() <-chan struct{}
}

var _ ScaleSource = (*Follower)(nil)

// Limiter paces a produce loop at a target rate times the current scale of
// its source. At scale 0 it holds every caller until the scale rises. With
// a Follower as its source the scale is the simple mode's fixed scale per
// level, or, with WithProportionalSoft, at Soft a scale that follows what
// the store sustains; a change of scale takes effect at once. It is safe
// for concurrent use.
type Limiter struct {
	target float64
	src    ScaleSource
	lim    *rate.Limiter
}

// NewLimiter returns a limiter allowing perSecond sends per second at full
// scale, with bursts of up to burst sends (0 picks 10 ms worth, at least 1;
// bursts smooth out timer granularity at high rates). A nil src means a
// constant scale of 1.
func NewLimiter(perSecond float64, burst int, src ScaleSource) (*Limiter, error) {
	if !(perSecond > 0) || math.IsInf(perSecond, 0) {
		return nil, fmt.Errorf("backpressure: rate %v must be a positive number", perSecond)
	}
	if burst < 0 {
		return nil, fmt.Errorf("backpressure: burst %d must be ≥ 0", burst)
	}
	if burst == 0 {
		burst = max(1, int(perSecond/100))
	}
	return &Limiter{target: perSecond, src: src, lim: rate.NewLimiter(rate.Limit(perSecond), burst)}, nil
}

// Rate returns the rate currently allowed: the target times the scale.
func (l *Limiter) Rate() float64 { return l.target * l.scale() }

// Wait blocks until the next send is allowed or ctx is done, and returns
// ctx.Err() in the latter case. A scale change takes effect at once, also for
// callers already waiting.
func (l *Limiter) Wait(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var changed <-chan struct{} // nil: never changes
		if l.src != nil {
			changed = l.src.Changed() // before reading the scale, so no change is missed
		}
		s := l.scale()
		if s <= 0 {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if lim := rate.Limit(l.target * s); l.lim.Limit() != lim {
			l.lim.SetLimit(lim)
		}
		r := l.lim.Reserve()
		d := r.Delay()
		if d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
			return nil
		case <-changed:
			t.Stop()
			r.Cancel()
		case <-ctx.Done():
			t.Stop()
			r.Cancel()
			return ctx.Err()
		}
	}
}

func (l *Limiter) scale() float64 {
	if l.src == nil {
		return 1
	}
	return min(max(l.src.Scale(), 0), 1)
}
