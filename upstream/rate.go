package upstream

import (
	"context"
	"errors"
	"sync"
	"time"
)

// limiter allows at most n events in any window of length per. It keeps the
// times of the last n events (including reserved future ones) in a ring;
// the next event may happen once the oldest of them has left the window.
type limiter struct {
	per  time.Duration
	mu   sync.Mutex
	ring []time.Time
	next int // index of the oldest entry
}

func newLimiter(n int, per time.Duration) *limiter {
	return &limiter{per: per, ring: make([]time.Time, n)}
}

var errRateLimited = errors.New("rate limited")

// reserve books the next free slot if it comes within maxWait of now and
// returns how long to wait for it.
func (l *limiter) reserve(now time.Time, maxWait time.Duration) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := now
	if oldest := l.ring[l.next]; !oldest.IsZero() && oldest.Add(l.per).After(now) {
		at = oldest.Add(l.per)
	}
	wait := at.Sub(now)
	if wait > maxWait {
		return 0, false
	}
	l.ring[l.next] = at
	l.next = (l.next + 1) % len(l.ring)
	return wait, true
}

// wait blocks until a slot is free, at most a minute or until ctx is done.
// It returns errRateLimited at once when no slot frees up in that time.
func (l *limiter) wait(ctx context.Context, now func() time.Time) error {
	maxWait := rateMaxWait
	t := now()
	if dl, ok := ctx.Deadline(); ok {
		maxWait = min(maxWait, dl.Sub(t))
	}
	d, ok := l.reserve(t, maxWait)
	if !ok {
		return errRateLimited
	}
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// seed books earlier events, oldest first; only the newest n count.
func (l *limiter) seed(times []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(times) > len(l.ring) {
		times = times[len(times)-len(l.ring):]
	}
	for _, t := range times {
		l.ring[l.next] = t
		l.next = (l.next + 1) % len(l.ring)
	}
}

// history returns the booked events, oldest first.
func (l *limiter) history() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for i := range l.ring {
		if t := l.ring[(l.next+i)%len(l.ring)]; !t.IsZero() {
			out = append(out, t)
		}
	}
	return out
}
