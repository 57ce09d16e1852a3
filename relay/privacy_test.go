package relay

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/outbox-mta/outbox/internal/testpki"
)

// lockedBuffer collects log output from the relay's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestPasswordCommandStderrStaysInLog: a failing password_command's
// stderr goes to the daemon's log, never into last_error, which every
// local user can list with mailq.
func TestPasswordCommandStderrStaysInLog(t *testing.T) {
	ca := testpki.NewCA(t, "outbox relay test CA")
	u := dlvStartUpstream(t, ca, "relay@example.org", "right")
	dir := t.TempDir()
	ca.WritePEM(t, filepath.Join(dir, "ca.pem"))
	cfg := dlvConfig(t, dir, fmt.Sprintf(`
hostname = "relay.test"
listen { address = "127.0.0.1:%d" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
queue { retry_initial = "1h" }
upstream "smarthost" {
  host             = "127.0.0.1"
  port             = %d
  tls              = "starttls"
  ca_file          = "ca.pem"
  username         = "relay@example.org"
  password_command = "echo partial-secret-xyzzy; echo 'keyring locked: MARKER-7731 partial-secret-xyzzy' >&2; exit 1"
}
`, dlvFreePort(t), u.Port))
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r, err := New(cfg, log, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		t.Logf("daemon log:\n%s", logs.String())
	}()
	dlvWait(t, "the relay's listener", func() bool { return strings.Contains(logs.String(), "outbox started") })
	dlvSend(t, cfg.Listen[0].Addr, "app@example.org", []string{"bob@example.com"}, dlvSMTPBody)

	var lastErr string
	dlvWait(t, "a delivery attempt to be recorded", func() bool {
		list, err := r.Spool().List()
		if err != nil || len(list) != 1 || list[0].Attempts == 0 {
			return false
		}
		lastErr = list[0].Recipients[0].LastError
		return true
	})
	if strings.Contains(lastErr, "MARKER-7731") || strings.Contains(lastErr, "xyzzy") {
		t.Errorf("last_error shows the helper's output: %q", lastErr)
	}
	if !strings.Contains(lastErr, "password_command failed: exit status 1") || !strings.Contains(lastErr, "stderr is in the log") {
		t.Errorf("last_error %q does not say the command failed and where its stderr went", lastErr)
	}
	dlvWait(t, "the helper's stderr in the log", func() bool { return strings.Contains(logs.String(), "MARKER-7731") })
	l := logs.String()
	if !strings.Contains(l, "MARKER-7731") || !strings.Contains(l, "level=WARN") || !strings.Contains(l, "upstream=smarthost") {
		t.Errorf("the log lacks the helper's stderr at WARN with the upstream's name")
	}
	if strings.Contains(l, "xyzzy") {
		t.Errorf("the log shows what the helper printed on stdout")
	}
}
