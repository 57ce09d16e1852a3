package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckWarnsMissingSecretFile: `outbox check` warns about a password_file
// that does not exist (mail through that upstream could never leave)
// while still accepting the configuration.
func TestCheckWarnsMissingSecretFile(t *testing.T) {
	e := newEnv(t, `upstream "provider" {
  host          = "smtp.example.com"
  username      = "me@example.com"
  password_file = "no-such-secret.txt"
}`, "")
	out, errOut, code := runOutbox(t, "check", "--config", e.conf)
	if code != 0 {
		t.Fatalf("check: exit %d, want 0 (a warning only):\n%s%s", code, out, errOut)
	}
	want := filepath.Join(e.dir, "no-such-secret.txt") + " does not exist"
	if !strings.Contains(errOut, "warning") || !strings.Contains(errOut, want) {
		t.Errorf("check stderr:\n%s\nwant a warning containing %q", errOut, want)
	}
}
