package coordinator

import (
	"context"
	"time"

	"github.com/market-data-store/mds/internal/retry"
)

// clock is the time source of the retry waits, so that tests can check
// the schedule without waiting for it.
type clock interface {
	// Sleep waits for d or until ctx is done.
	Sleep(ctx context.Context, d time.Duration)
}

type realClock struct{}

func (realClock) Sleep(ctx context.Context, d time.Duration) { retry.Sleep(ctx, d) }
