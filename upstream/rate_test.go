package upstream

import (
	"testing"
	"time"
)

// TestLimiterHistoryRoundTrip: a limiter seeded with another's history
// refuses exactly what the first would have, as after a restart.
func TestLimiterHistoryRoundTrip(t *testing.T) {
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	a := newLimiter(3, 24*time.Hour)
	for i := 0; i < 3; i++ {
		if _, ok := a.reserve(base.Add(time.Duration(i)*time.Hour), 0); !ok {
			t.Fatalf("send %d refused", i)
		}
	}
	h := a.history()
	if len(h) != 3 || !h[0].Equal(base) || !h[2].Equal(base.Add(2*time.Hour)) {
		t.Fatalf("history = %v", h)
	}
	b := newLimiter(3, 24*time.Hour)
	b.seed(h)
	if _, ok := b.reserve(base.Add(3*time.Hour), time.Minute); ok {
		t.Fatal("a fourth send within the day was allowed after the restart")
	}
	// A day after the first send, one slot frees up.
	if _, ok := b.reserve(base.Add(24*time.Hour), 0); !ok {
		t.Fatal("the slot of the oldest send did not free up after a day")
	}
	// Seeding more than the limit keeps the newest.
	c := newLimiter(2, time.Hour)
	c.seed([]time.Time{base, base.Add(time.Minute), base.Add(2 * time.Minute)})
	if h := c.history(); len(h) != 2 || !h[0].Equal(base.Add(time.Minute)) {
		t.Fatalf("history after an oversized seed = %v", h)
	}
	if newLimiter(2, time.Hour).history() != nil {
		t.Fatal("an unused limiter has a history")
	}
}
