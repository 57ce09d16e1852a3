package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServeExitsOnBusyPort: a listen address already in use (another MTA, or
// a second `outbox serve` on the development relay.hcl) must stop start-up
// with a clear error and exit 69, not a nil-pointer panic while cleaning up.
func TestServeExitsOnBusyPort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	e := newEnv(t, `upstream "capture" {
  type = "maildir"
  path = "maildir"
}`, "")
	e.addr = busy.Addr().String()
	conf, err := os.ReadFile(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	conf = []byte(strings.Replace(string(conf), "listen {", fmt.Sprintf("listen {\n  address = %q\n}\n\nlisten {", e.addr), 1))
	if err := os.WriteFile(e.conf, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(outboxBin, "serve", "--config", e.conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("outbox serve kept running on a busy address; stderr:\n%s", stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 69 {
		t.Errorf("outbox serve on a busy address: %v, want exit 69", err)
	}
	if s := stderr.String(); strings.Contains(s, "panic") || !strings.Contains(s, "address already in use") {
		t.Errorf("stderr should name the busy address and not panic:\n%s", s)
	}
}
