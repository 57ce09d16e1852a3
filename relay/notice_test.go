package relay

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// noticeQueue is a spool that refuses new messages (the notices) while
// fail is set, and still records results.
type noticeQueue struct {
	*spool.Spool
	mu   sync.Mutex
	fail bool
}

func (q *noticeQueue) setFail(v bool) {
	q.mu.Lock()
	q.fail = v
	q.mu.Unlock()
}

func (q *noticeQueue) Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error {
	q.mu.Lock()
	fail := q.fail
	q.mu.Unlock()
	if fail {
		return errors.New("no space left on device")
	}
	return q.Spool.Enqueue(ctx, m, body)
}

// TestNoticeEnqueueFailureDoesNotResend: when a bounce cannot be queued,
// the round's results are still recorded, so the recipient that was
// accepted is not sent the message again; the bounce is queued later.
func TestNoticeEnqueueFailureDoesNotResend(t *testing.T) {
	h := schedStart(t, "", "")
	q := &noticeQueue{Spool: h.sp, fail: true}
	targets := map[string]upstream.Target{"a": h.targets["a"], "b": h.targets["b"]}
	h.s = NewScheduler(q, testLive(h.cfg, NewRouter(h.cfg, targets)), dlvLogger(t), h.clock.Now)
	a := h.targets["a"]
	a.on("nobody@example.com", dlvFailed550)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"), dlvRcpt("nobody@example.com"))
	dlvWait(t, "first attempt", func() bool { return len(a.callsTo("bob@example.com")) == 1 })
	// Three more rounds with the notice still refused: each is marked by
	// another message going out after the clock moved.
	for i := 0; i < 3; i++ {
		h.advance(10 * time.Minute)
		h.enqueue("app@example.org", dlvRcpt("other@example.com"))
		want := i + 1
		dlvWait(t, "a later round", func() bool { return len(a.callsTo("other@example.com")) == want })
		dlvWait(t, "the round to end", func() bool { h.s.mu.Lock(); defer h.s.mu.Unlock(); return len(h.s.busy) == 0 })
	}
	if n := len(a.callsTo("bob@example.com")); n != 1 {
		t.Fatalf("bob got %d copies while the bounce could not be queued, want 1", n)
	}
	if m := h.get(id); m != nil {
		t.Errorf("original still queued with every recipient decided: %+v", m.Recipients)
	}

	// The spool takes messages again: the bounce goes out, once.
	q.setFail(false)
	h.advance(10 * time.Minute)
	dlvWait(t, "the bounce", func() bool { return len(a.bounces("app@example.org")) == 1 })
	dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
	h.advance(10 * time.Minute)
	h.stop()
	if n := len(a.bounces("app@example.org")); n != 1 {
		t.Errorf("%d bounces, want 1", n)
	}
	if n := len(a.callsTo("bob@example.com")); n != 1 {
		t.Errorf("bob got %d copies, want 1", n)
	}
}

// TestNoticeOwedSurvivesRestart: a notice that could not be queued is
// kept in the spool and queued by the next scheduler.
func TestNoticeOwedSurvivesRestart(t *testing.T) {
	h := schedStart(t, "", "")
	q := &noticeQueue{Spool: h.sp, fail: true}
	targets := map[string]upstream.Target{"a": h.targets["a"], "b": h.targets["b"]}
	h.s = NewScheduler(q, testLive(h.cfg, NewRouter(h.cfg, targets)), dlvLogger(t), h.clock.Now)
	a := h.targets["a"]
	a.on("nobody@example.com", dlvFailed550)
	h.run()
	h.enqueue("app@example.org", dlvRcpt("nobody@example.com"))
	dlvWait(t, "first attempt", func() bool { return len(a.callsTo("nobody@example.com")) == 1 })
	dlvWait(t, "the original to leave", func() bool { return h.queued() == 0 })
	h.stop()

	q.setFail(false)
	h.s = NewScheduler(q, testLive(h.cfg, NewRouter(h.cfg, targets)), dlvLogger(t), h.clock.Now)
	h.run()
	dlvWait(t, "the bounce", func() bool { return len(a.bounces("app@example.org")) == 1 })
}

// TestNoticeToLocalSenderFollowsAliases: a bounce to a local sender (the
// shim's default user@hostname) goes where the aliases send that name,
// not upstream to a mailbox that does not exist.
func TestNoticeToLocalSenderFollowsAliases(t *testing.T) {
	h := schedStart(t, "", `aliases {
  www-data = "webmaster@example.com"
  root     = ["ops@example.com", "oncall@example.com"]
}`)
	a := h.targets["a"]
	a.on("nobody@example.com", dlvFailed550, dlvFailed550)
	h.run()
	h.enqueue("www-data@relay.test", dlvRcpt("nobody@example.com"))
	dlvWait(t, "the bounce", func() bool { return len(a.bounces("webmaster@example.com")) == 1 })
	h.enqueue("root@relay.test", dlvRcpt("nobody@example.com"))
	dlvWait(t, "the bounce to root", func() bool {
		return len(a.bounces("ops@example.com")) == 1 && len(a.bounces("oncall@example.com")) == 1
	})
	dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
	for _, c := range a.Calls() {
		for _, to := range c.To {
			if strings.HasSuffix(to, "@relay.test") {
				t.Errorf("mail sent upstream to the local address %s", to)
			}
		}
	}
}

// TestNoticeNotDoubledWhenResultsCannotBeRecorded: a round whose results
// could not be written is decided again later; its notice is sent once,
// by the round that was recorded.
func TestNoticeNotDoubledWhenResultsCannotBeRecorded(t *testing.T) {
	h := schedStart(t, "", "")
	q := &coolQueue{Spool: h.sp}
	targets := map[string]upstream.Target{"a": h.targets["a"], "b": h.targets["b"]}
	h.s = NewScheduler(q, testLive(h.cfg, NewRouter(h.cfg, targets)), dlvLogger(t), h.clock.Now)
	a := h.targets["a"]
	a.on("nobody@example.com", dlvFailed550, dlvFailed550)
	m := &spool.Message{From: "app@example.org", Recipients: []spool.Recipient{dlvRcpt("nobody@example.com")}, Submitter: "test", Arrived: h.clock.Now()}
	m.ID = spool.NewID(h.clock.Now())
	q.failID = m.ID
	if err := h.sp.Enqueue(context.Background(), m, strings.NewReader(dlvBody)); err != nil {
		t.Fatal(err)
	}
	h.run()
	dlvWait(t, "first attempt", func() bool { return len(a.callsTo("nobody@example.com")) == 1 })
	dlvWait(t, "the unrecorded round to cool down", func() bool {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		until, ok := h.s.busy[m.ID]
		return ok && !until.IsZero()
	})
	if n := len(a.bounces("app@example.org")); n != 0 {
		t.Fatalf("%d bounces for a round that was not recorded", n)
	}
	q.mu.Lock()
	q.failID = ""
	q.mu.Unlock()
	h.advance(10 * time.Minute)
	dlvWait(t, "second attempt", func() bool { return len(a.callsTo("nobody@example.com")) == 2 })
	dlvWait(t, "the bounce", func() bool { return len(a.bounces("app@example.org")) == 1 })
	dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
	h.stop()
	if n := len(a.bounces("app@example.org")); n != 1 {
		t.Errorf("%d bounces, want 1", n)
	}
}
