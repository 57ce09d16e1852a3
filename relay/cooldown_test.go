package relay

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// coolQueue is a spool whose updates of one message fail, as on a full disk.
type coolQueue struct {
	*spool.Spool
	mu     sync.Mutex
	failID string
}

func (q *coolQueue) Update(id string, fn func(*spool.Message) error) (*spool.Message, error) {
	q.mu.Lock()
	fail := id == q.failID
	q.mu.Unlock()
	if fail {
		return nil, errors.New("no space left on device")
	}
	return q.Spool.Update(id, fn)
}

// TestCoolDownWhenResultsCannotBeRecorded: a message whose results cannot
// be written is not re-sent in a tight loop; it waits for its backoff,
// then goes out again once the spool can write.
func TestCoolDownWhenResultsCannotBeRecorded(t *testing.T) {
	h := schedStart(t, "", "")
	q := &coolQueue{Spool: h.sp}
	targets := map[string]upstream.Target{"a": h.targets["a"], "b": h.targets["b"]}
	h.s = NewScheduler(q, testLive(h.cfg, NewRouter(h.cfg, targets)), dlvLogger(t), h.clock.Now)

	stuck := h.enqueue("app@example.org", dlvRcpt("stuck@example.com"))
	q.mu.Lock()
	q.failID = stuck
	q.mu.Unlock()
	h.run()
	a := h.targets["a"]
	dlvWait(t, "first attempt", func() bool { return len(a.callsTo("stuck@example.com")) == 1 })

	// Later rounds happen (another message is delivered) without the
	// stuck one going out again.
	for i := 0; i < 3; i++ {
		h.enqueue("app@example.org", dlvRcpt("other@example.com"))
		h.s.Kick()
		want := i + 1
		dlvWait(t, "other delivered", func() bool { return len(a.callsTo("other@example.com")) == want })
	}
	if n := len(a.callsTo("stuck@example.com")); n != 1 {
		t.Fatalf("stuck message sent %d times while its state could not be written", n)
	}

	// The spool writes again and the backoff passes: it goes out and leaves.
	q.mu.Lock()
	q.failID = ""
	q.mu.Unlock()
	h.advance(10 * time.Minute)
	dlvWait(t, "retry after the backoff", func() bool { return len(a.callsTo("stuck@example.com")) == 2 })
	dlvWait(t, "queue empty", func() bool { return h.queued() == 0 })
}

// TestCoolingEntryOfGoneMessageExpires: a message that cooled down
// (its results could not be written) and then left the due index (deleted
// or held by the operator) must not keep the scheduler waking every 10 ms
// once its cooling time has passed.
func TestCoolingEntryOfGoneMessageExpires(t *testing.T) {
	h := schedStart(t, "", "")
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"))
	h.s.finish(id, h.clock.Now().Add(time.Minute))
	if _, err := h.sp.Update(id, func(m *spool.Message) error { m.Held = true; return nil }); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if wait := h.s.dispatch(ctx, ctx); wait < time.Minute {
			t.Fatalf("round %d: scheduler sleeps only %v with nothing due", i, wait)
		}
	}
}

// TestInFlightOutlastsItsCoolDownTime: a message whose results could not
// be recorded stays in flight until its own worker finishes, even when the
// cool-down time record chose is already past (a slow failing write, a
// clock step): until then no second delivery of it may start.
func TestInFlightOutlastsItsCoolDownTime(t *testing.T) {
	h := schedStart(t, "", "")
	q := &coolQueue{Spool: h.sp}
	targets := map[string]upstream.Target{"a": h.targets["a"], "b": h.targets["b"]}
	h.s = NewScheduler(q, testLive(h.cfg, NewRouter(h.cfg, targets)), dlvLogger(t), h.clock.Now)
	id := h.enqueue("app@example.org", dlvRcpt("stuck@example.com"))
	q.failID = id
	m := h.get(id)

	h.s.mu.Lock()
	h.s.busy[id] = time.Time{} // claimed, as dispatch does
	h.s.mu.Unlock()
	until := h.s.deliver(context.Background(), m)
	if until.IsZero() {
		t.Fatal("a round whose results were not written asks for no cool-down")
	}
	h.clock.Advance(time.Hour) // the cool-down is over before the worker finishes
	h.s.mu.Lock()
	busy := h.s.isBusy(id)
	h.s.mu.Unlock()
	if !busy {
		t.Fatal("the message left busy before its worker finished: a second delivery could start")
	}
	h.s.finish(id, until)
	h.s.mu.Lock()
	busy = h.s.isBusy(id)
	h.s.mu.Unlock()
	if busy {
		t.Fatal("a cool-down already over still holds the message back")
	}
}
