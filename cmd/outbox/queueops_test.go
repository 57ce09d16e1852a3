package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/outbox-mta/outbox/spool"
)

// TestQueueBodyBounceRetry runs queue body, bounce and retry as root and
// as ordinary users: the body is for root, the outbox user and the
// submitter; bounce and retry are for root and the outbox user.
func TestQueueBodyBounceRetry(t *testing.T) {
	asUserOK(t)
	e := startPrivEnv(t, "")
	www := e.enqueue(uidWWWData, "subject-of-www-data")

	const wantBody = "From: app@relay.test\r\nTo: bob@example.org\r\nSubject: subject-of-www-data\r\n"
	for _, uid := range []uint32{0, uidWWWData} {
		code, out, errs := e.run(uid, "queue", "body", www)
		if code != 0 || !strings.HasPrefix(out, wantBody) || !strings.Contains(out, "\r\nbody of subject-of-www-data\r\n") {
			t.Errorf("uid %d: queue body: exit %d, want 0 and the whole message\n%q%s", uid, code, out, errs)
		}
	}
	if code, out, errs := e.run(uidNobody, "queue", "body", www); code != exitNoPerm || strings.Contains(out, "subject-of") {
		t.Errorf("nobody: queue body: exit %d, want %d and nothing of the message\n%s%s", code, exitNoPerm, out, errs)
	}

	for _, sub := range []string{"bounce", "retry"} {
		if code, out, errs := e.run(uidWWWData, "queue", sub, www); code != exitNoPerm {
			t.Errorf("www-data: queue %s: exit %d, want %d\n%s%s", sub, code, exitNoPerm, out, errs)
		}
	}
	if code, out, errs := e.run(0, "queue", "retry", www); code != 0 {
		t.Errorf("root: queue retry: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := e.run(0, "queue", "bounce", "NOSUCHID"); code != exitError {
		t.Errorf("root: queue bounce of an unknown ID: exit %d, want %d\n%s%s", code, exitError, out, errs)
	}
	code, out, errs := e.run(0, "queue", "bounce", www)
	// The retry above may have the message in delivery right now; the
	// bounce then asks to try again.
	for i := 0; i < 50 && code != 0 && strings.Contains(errs, "being delivered"); i++ {
		code, out, errs = e.run(0, "queue", "bounce", www)
	}
	if code != 0 || !strings.Contains(out, www+": bounced") {
		t.Fatalf("root: queue bounce: exit %d\n%s%s", code, out, errs)
	}
	if _, err := e.r.Spool().Get(www); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("the bounced message is still queued (%v)", err)
	}
}
