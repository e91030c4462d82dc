package consume

import (
	"sync"
	"time"
)

// sometimes rate-limits a log line: one per interval, counting the rest.
type sometimes struct {
	every time.Duration

	mu      sync.Mutex
	next    time.Time
	skipped int
}

// allow reports whether to log now and how many lines were suppressed since
// the last one logged.
func (s *sometimes) allow() (ok bool, skipped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Before(s.next) {
		s.skipped++
		return false, 0
	}
	s.next = now.Add(s.every)
	skipped, s.skipped = s.skipped, 0
	return true, skipped
}
