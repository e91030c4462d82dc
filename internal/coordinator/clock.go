package coordinator

import (
	"context"
	"time"
)

// clock is the time source of the retry and breaker logic, so that tests
// can check the schedule without waiting for it.
type clock interface {
	Now() time.Time
	// Sleep waits for d, until wake (which may be nil) is closed, or until
	// ctx is done, whichever comes first.
	Sleep(ctx context.Context, d time.Duration, wake <-chan struct{})
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration, wake <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	case <-ctx.Done():
	}
}
