package upstream

import (
	"testing"

	"github.com/outbox-mta/outbox/upstream/settings"
)

// The client allows plain text to the same loopback forms the
// configuration accepts.
func TestPlaintextLoopbackForms(t *testing.T) {
	for host, ok := range map[string]bool{"localhost.": true, "::1%lo": true, "[::1]": true, "mail.example.com": false} {
		s, err := NewSMTP(SMTPConfig{SMTP: settings.SMTP{Name: "u", Host: host, Port: 25, TLS: "none"}})
		if (err == nil) != ok {
			t.Errorf("tls none to %q: %v, want allowed %v", host, err, ok)
		}
		if s != nil {
			s.Close()
		}
	}
}
