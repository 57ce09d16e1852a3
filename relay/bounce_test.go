package relay

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestAdminBounce checks that queue bounce fails the pending recipients
// with 5.0.0, sends the sender a notice for them (not for the one already
// sent), and removes the message.
func TestAdminBounce(t *testing.T) {
	h := schedStart(t, "", "")
	a := h.targets["a"]
	a.on("later@example.com", dlvDeferred451)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("ok@example.com"), dlvRcpt("later@example.com"))
	dlvWait(t, "the first round", func() bool { return h.attempts(id) == 1 })

	if err := h.s.Bounce("NOSUCHID"); err == nil {
		t.Error("bounce of an unknown ID succeeded")
	}
	// The worker records the round before it lets go of the message.
	var err error
	dlvWait(t, "the worker to let go", func() bool { err = h.s.Bounce(id); return !errors.Is(err, errInFlight) })
	if err != nil {
		t.Fatal(err)
	}
	if h.get(id) != nil {
		t.Fatal("the bounced message is still queued")
	}
	dlvWait(t, "the notice", func() bool { return len(a.bounces("app@example.org")) == 1 })
	rep, _ := dlvReport(t, a.bounces("app@example.org")[0])
	body := string(a.bounces("app@example.org")[0].Body)
	if !strings.Contains(body, "later@example.com") || !strings.Contains(body, "5.0.0") || strings.Contains(body, "Final-Recipient: rfc822;ok@example.com") {
		t.Errorf("notice %+v:\n%s", rep, body)
	}
	h.advance(time.Hour)
	if n := len(a.callsTo("later@example.com")); n != 1 {
		t.Errorf("%d delivery attempts to the bounced recipient, want 1", n)
	}
}
