package upstream

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// limiter allows at most n events in any window of length per. It keeps the
// times of the last n events (including reserved future ones), sorted; the
// next event may happen once the oldest of them has left the window. A
// reservation that did not turn into a send is released again, so only
// sends the upstream took spend the provider's quota.
type limiter struct {
	n     int
	per   time.Duration
	mu    sync.Mutex
	times []time.Time // sorted, at most n
}

func newLimiter(n int, per time.Duration) *limiter {
	return &limiter{n: n, per: per}
}

var errRateLimited = errors.New("rate limited")

// reserve books the next free slot if it comes within maxWait of now and
// returns how long to wait for it; the slot is at now plus that wait.
func (l *limiter) reserve(now time.Time, maxWait time.Duration) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	at := now
	if len(l.times) >= l.n {
		if free := l.times[len(l.times)-l.n].Add(l.per); free.After(now) {
			at = free
		}
	}
	wait := at.Sub(now)
	if wait > maxWait {
		return 0, false
	}
	l.add(at)
	return wait, true
}

// add inserts t in order and forgets what falls beyond the last n; l.mu is
// held.
func (l *limiter) add(t time.Time) {
	i, _ := slices.BinarySearchFunc(l.times, t, time.Time.Compare)
	l.times = slices.Insert(l.times, i, t)
	if len(l.times) > l.n {
		l.times = slices.Delete(l.times, 0, len(l.times)-l.n)
	}
}

// release gives back a slot booked by wait that no send used.
func (l *limiter) release(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.times) - 1; i >= 0; i-- {
		if l.times[i].Equal(at) {
			l.times = slices.Delete(l.times, i, i+1)
			return
		}
	}
}

// wait blocks until a slot is free, at most a minute or until ctx is done,
// and returns the slot's time (for release). It returns errRateLimited at
// once when no slot frees up in that time; a slot it booked but could not
// wait for is released.
func (l *limiter) wait(ctx context.Context, now func() time.Time) (time.Time, error) {
	maxWait := rateMaxWait
	t := now()
	if dl, ok := ctx.Deadline(); ok {
		maxWait = min(maxWait, dl.Sub(t))
	}
	d, ok := l.reserve(t, maxWait)
	if !ok {
		return time.Time{}, errRateLimited
	}
	at := t.Add(d)
	if d <= 0 {
		return at, nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return at, nil
	case <-ctx.Done():
		l.release(at)
		return time.Time{}, ctx.Err()
	}
}

// seed books earlier events; only the newest n count.
func (l *limiter) seed(times []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range times {
		if !t.IsZero() {
			l.add(t)
		}
	}
}

// history returns the booked events, oldest first.
func (l *limiter) history() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.times) == 0 {
		return nil
	}
	return slices.Clone(l.times)
}
