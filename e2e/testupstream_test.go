package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestTestUpstreamVerdicts runs `outbox test-upstream NAME --rcpt ADDR` as the
// README writes it (flags after the name): against a server without
// STARTTLS it gives the verdict and sends no credential; with tls = "none"
// it reports the RCPT answer; neither sends a message.
func TestTestUpstreamVerdicts(t *testing.T) {
	s := newSink(t, 0)
	e := newEnv(t, fmt.Sprintf(`upstream "secure" {
  host          = "127.0.0.1"
  port          = %d
  username      = "user"
  password_env  = "QA_NO_SUCH_SECRET"
}

upstream "plain" {
  host = "127.0.0.1"
  port = %d
  tls  = "none"
}`, s.addr.Port, s.addr.Port), "")

	out, errOut, code := runOutbox(t, "test-upstream", "secure", "--rcpt", "x@example.org", "--config", e.conf)
	want := fmt.Sprintf("STARTTLS not offered by %s: refusing to send credentials", s.addr)
	if code != 69 || !strings.Contains(out, want) {
		t.Errorf("test-upstream secure: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 69 and %q", code, out, errOut, want)
	}

	out, errOut, code = runOutbox(t, "test-upstream", "plain", "--rcpt", "x@example.org", "--config", e.conf)
	if code != 0 || !strings.Contains(out, "RCPT") || !strings.Contains(out, "250") {
		t.Errorf("test-upstream plain --rcpt: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 0 and the RCPT answer", code, out, errOut)
	}
	if n := s.count(); n != 0 {
		t.Errorf("test-upstream sent %d message(s); it must send nothing", n)
	}
}
