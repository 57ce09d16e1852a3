package relay

// Helpers shared by the harnesses of this package: an injected clock, a
// configuration writer, a logger into the test log, polling and ports.

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// dlvClock is an injected clock that moves only when a test says so.
type dlvClock struct {
	mu sync.Mutex
	t  time.Time
}

func newDlvClock() *dlvClock {
	return &dlvClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *dlvClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *dlvClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var (
	dlvDeferred451 = upstream.Result{Class: upstream.Deferred, Code: 451, Enhanced: "4.3.0", Message: "try again later"}
	dlvFailed550   = upstream.Result{Class: upstream.Failed, Code: 550, Enhanced: "5.1.1", Message: "no such user"}
)

// dlvConfig writes src as relay.hcl into dir and parses it.
func dlvConfig(t testing.TB, dir, src string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(src))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", src, err)
	}
	return cfg
}

// dlvLogger writes the relay's logs to the test log.
func dlvLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(dlvTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type dlvTestWriter struct{ t testing.TB }

func (w dlvTestWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

const dlvBody = "From: App <app@example.org>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: Nightly report\r\n" +
	"Message-ID: <orig-1@example.org>\r\n" +
	"\r\n" +
	"Report body.\r\n"

func dlvRcpt(addr string, notify ...dsn.Notify) spool.Recipient {
	return spool.Recipient{Address: addr, Status: spool.Pending, Notify: notify}
}

// dlvWait polls cond until it holds or a deadline passes.
func dlvWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// dlvFreePort returns a loopback TCP port that was free a moment ago.
func dlvFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
