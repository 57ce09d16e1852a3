package upstream

import (
	"testing"

	"github.com/outbox-mta/outbox/internal/testpki"
)

// TestFailureCounts checks that AUTH and TLS failures are counted by
// cause, and that a delivery that works counts neither.
func TestFailureCounts(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	other := testpki.NewCA(t, "other CA")
	untrusted := other.ServerCert(t)
	for _, tc := range []struct {
		name      string
		opts      fakeOptions
		password  string
		auth, tls uint64
	}{
		{"ok", fakeOptions{User: "u", Password: "pw"}, "pw", 0, 0},
		{"auth refused", fakeOptions{User: "u", Password: "pw"}, "wrong", 1, 0},
		{"no starttls", fakeOptions{Mode: "plain", User: "u", Password: "pw"}, "pw", 0, 1},
		{"untrusted certificate", fakeOptions{Cert: &untrusted, User: "u", Password: "pw"}, "pw", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := startFake(t, ca, tc.opts)
			var logs syncBuffer
			cfg := clientConfig(fs, ca, &logs)
			cfg.Password = staticSecret(tc.password)
			s := newTarget(t, cfg)
			deliver(t, s, envelope(testMessage, "b@example.net"))
			if f := s.Failures(); f.Auth != tc.auth || f.TLS != tc.tls {
				t.Errorf("failures %+v, want auth %d tls %d", f, tc.auth, tc.tls)
			}
		})
	}
}
