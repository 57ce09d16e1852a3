package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/spool"
)

// Users that exist on every Debian machine.
const (
	uidNobody  = 65534
	uidWWWData = 33
)

// asUserOK skips a test that needs to switch users when it cannot, except
// in CI, where such a test must run.
func asUserOK(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		// Under CI a skip would hide the test: say what is missing.
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run commands as other users")
		}
		t.Skip("needs root to run commands as other users")
	}
}

var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// outboxBinary builds cmd/outbox once into a folder every user can reach.
func outboxBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "outbox-bin-")
		if built.err != nil {
			return
		}
		if built.err = os.Chmod(built.dir, 0o755); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "outbox")
		out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// privEnv is a daemon running in the test, with its configuration, run
// folder and admin socket reachable by every user, and its spool folder
// as the daemon makes it (0750, the daemon's user).
type privEnv struct {
	t    *testing.T
	dir  string
	conf string
	r    *relay.Relay
	stop func()
}

func startPrivEnv(t *testing.T, extra string) *privEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "outbox-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Explicit modes: the test's umask must not decide what others reach.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	src := fmt.Sprintf(`hostname = "relay.test"
listen { address = %q }
spool {
  path     = "spool/spool.db"
  maildrop = "spool/maildrop"
}
admin {
  socket = "run/admin.sock"
  %s
}
queue { retry_initial = "1h" }
upstream "hold" {
  host = "127.0.0.1"
  port = 9
  tls  = "none"
}
`, addr, extra)
	e := &privEnv{t: t, dir: dir, conf: filepath.Join(dir, "relay.hcl")}
	if err := os.WriteFile(e.conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	e.r, err = relay.New(cfg, log, relay.Options{Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.r.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// enqueue stores a held message submitted by uid whose Subject is subject.
func (e *privEnv) enqueue(uid uint32, subject string) string {
	e.t.Helper()
	m := &spool.Message{From: "app@relay.test", UID: uid, Held: true,
		Recipients: []spool.Recipient{{Address: "bob@example.org", Status: spool.Pending}}}
	body := "From: app@relay.test\r\nTo: bob@example.org\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	if err := e.r.Spool().Enqueue(context.Background(), m, strings.NewReader(body)); err != nil {
		e.t.Fatal(err)
	}
	return m.ID
}

// run runs the outbox binary as uid (and its group, the same number for
// the users these tests use).
func (e *privEnv) run(uid uint32, args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	cmd := exec.Command(outboxBinary(e.t), append(args, "--config", e.conf)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("running outbox as uid %d: %v", uid, err)
	}
	return code, out.String(), errb.String()
}

// TestQueueShowPermission: a message's headers are for root, the daemon's
// user and the user who submitted it, through the daemon and without it.
func TestQueueShowPermission(t *testing.T) {
	asUserOK(t)
	e := startPrivEnv(t, "")
	www := e.enqueue(uidWWWData, "subject-of-www-data")
	anon := e.enqueue(0, "subject-of-smtp-client")

	const denied = "only root, the outbox user and the submitting user may read a message"
	for _, tc := range []struct {
		uid     uint32
		id      string
		allowed bool
	}{
		{0, www, true},
		{0, anon, true},
		{uidWWWData, www, true},
		{uidWWWData, anon, false},
		{uidNobody, www, false},
		{uidNobody, anon, false},
	} {
		code, out, errs := e.run(tc.uid, "queue", "show", tc.id)
		if tc.allowed {
			if code != 0 || !strings.Contains(out, "Subject: subject-of-") {
				t.Errorf("uid %d, show %s: exit %d, want 0 and the headers\n%s%s", tc.uid, tc.id, code, out, errs)
			}
			continue
		}
		if code != exitNoPerm || !strings.Contains(errs, denied) || strings.Contains(out+errs, "subject-of-") {
			t.Errorf("uid %d, show %s: exit %d, want %d and %q without the headers\n%s%s", tc.uid, tc.id, code, exitNoPerm, denied, out, errs)
		}
	}

	// Managing the queue is for root and the daemon's user, even for the
	// submitter.
	for _, uid := range []uint32{uidNobody, uidWWWData} {
		if code, out, errs := e.run(uid, "queue", "delete", www); code != exitNoPerm || !strings.Contains(errs, "need root or the outbox user") {
			t.Errorf("uid %d: queue delete: exit %d, want %d and a refusal\n%s%s", uid, code, exitNoPerm, out, errs)
		}
	}
	if _, err := e.r.Spool().Get(www); err != nil {
		t.Errorf("after refused deletes: %v", err)
	}

	// The listing stays open to everyone (admin.queue_list defaults to
	// "all") and shows the envelope only.
	code, out, errs := e.run(uidNobody, "queue", "ls", "--json")
	if code != 0 || !strings.Contains(out, www) || !strings.Contains(out, anon) {
		t.Errorf("nobody: queue ls: exit %d, want 0 and both messages\n%s%s", code, out, errs)
	}
	if strings.Contains(out, "subject-of-") {
		t.Errorf("queue ls shows message content:\n%s", out)
	}

	// Without the daemon, the spool file's own permissions decide, and
	// the refusal says why.
	e.stop()
	code, out, errs = e.run(uidNobody, "queue", "show", www)
	if code != exitNoPerm || !strings.Contains(errs, "readable only by root and the outbox user") || strings.Contains(out, "subject-of-") {
		t.Errorf("nobody, daemon down: exit %d, want %d and a clear refusal\n%s%s", code, exitNoPerm, out, errs)
	}
	code, out, errs = e.run(uidNobody, "queue", "ls")
	if code != exitNoPerm || !strings.Contains(errs, "readable only by root and the outbox user") {
		t.Errorf("nobody, daemon down: queue ls: exit %d, want %d and a clear refusal\n%s%s", code, exitNoPerm, out, errs)
	}
	if code, out, errs := e.run(0, "queue", "show", www); code != 0 || !strings.Contains(out, "Subject: subject-of-www-data") {
		t.Errorf("root, daemon down: exit %d\n%s%s", code, out, errs)
	}
	// The package leaves the spool folder 0755 (the maildrop is in it): the
	// file's own mode, 0600, keeps others out.
	if err := os.Chmod(filepath.Join(e.dir, "spool"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, errs = e.run(uidWWWData, "queue", "show", www)
	if code != exitNoPerm || !strings.Contains(errs, "readable only by root and the outbox user") || strings.Contains(out, "subject-of-") {
		t.Errorf("www-data, daemon down, spool folder 0755: exit %d, want %d and a clear refusal\n%s%s", code, exitNoPerm, out, errs)
	}
}

// TestQueueListPrivileged: with admin.queue_list = "privileged", only
// root and the daemon's user may list the queue.
func TestQueueListPrivileged(t *testing.T) {
	asUserOK(t)
	e := startPrivEnv(t, `queue_list = "privileged"`)
	id := e.enqueue(uidWWWData, "subject-of-www-data")
	for _, uid := range []uint32{uidNobody, uidWWWData} {
		code, out, errs := e.run(uid, "queue", "ls")
		if code != exitNoPerm || !strings.Contains(errs, "only root and the outbox user may list the queue") || strings.Contains(out, id) {
			t.Errorf("uid %d: queue ls: exit %d, want %d and a refusal\n%s%s", uid, code, exitNoPerm, out, errs)
		}
	}
	if code, out, errs := e.run(0, "queue", "ls"); code != 0 || !strings.Contains(out, id) {
		t.Errorf("root: queue ls: exit %d\n%s%s", code, out, errs)
	}
	// Reading one's own message is still allowed.
	if code, out, errs := e.run(uidWWWData, "queue", "show", id); code != 0 || !strings.Contains(out, "subject-of-www-data") {
		t.Errorf("www-data: show own message: exit %d\n%s%s", code, out, errs)
	}
}
