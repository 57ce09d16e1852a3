package upstream

import (
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/outbox-mta/outbox/internal/testpki"
)

// TestRcpt552Defers: 552 to RCPT is a temporary failure (RFC 5321
// §4.5.3.1.10: too many recipients, treat as 452), not a bounce.
func TestRcpt552Defers(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.rcptErr["many@example.net"] = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 5, 3}, Message: "too many recipients"}
	})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	out := deliver(t, s, envelope(testMessage, "good@example.net", "many@example.net"))
	wantClass(t, out, Sent, Deferred)
	if r := out.Results[1]; r.Code != 452 || r.Enhanced != "4.5.3" {
		t.Errorf("552 at RCPT became %+v, want 452 4.5.3", r)
	}
}
