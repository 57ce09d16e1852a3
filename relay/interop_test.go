package relay

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/maildrop"
)

// Interop tests: real third-party clients (swaks, Python's smtplib) and
// the sendmail shim binary against a whole relay delivering into a
// Maildir.

type ioRelay struct {
	dir, tcp, cfgPath string
	cancel            func()
	done              chan error
}

func ioConfig(t *testing.T, dir string) (string, string) {
	t.Helper()
	tcp := net.JoinHostPort("127.0.0.1", strconv.Itoa(dlvFreePort(t)))
	src := fmt.Sprintf(`
hostname = "relay.test"
listen { address = %q }
listen { address = "unix:submit.sock" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "admin.sock" }
aliases {
  root = ["ops@example.com", "oncall@example.net"]
}
upstream "capture" {
  type = "maildir"
  path = "md"
}
`, tcp)
	path := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tcp
}

func ioStart(t *testing.T, dir, cfgPath, tcp string) *ioRelay {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	r, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{
		Ready:            func() { close(ready) },
		MaildropInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ir := &ioRelay{dir: dir, tcp: tcp, cfgPath: cfgPath, cancel: cancel, done: make(chan error, 1)}
	go func() { ir.done <- r.Run(ctx) }()
	t.Cleanup(ir.stop)
	select {
	case <-ready:
	case err := <-ir.done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return ir
}

func (ir *ioRelay) stop() {
	ir.cancel()
	select {
	case <-ir.done:
	case <-time.After(30 * time.Second):
	}
}

// ioWaitMaildir waits until the Maildir holds n messages and returns them.
func ioWaitMaildir(t *testing.T, dir string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "md", "new", "*"))
		if len(files) >= n {
			var out []string
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, string(b))
			}
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("maildir has %d messages, want %d", len(files), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ioNeed(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI installs it in .ci/run)", bin)
		}
		t.Skipf("%s not installed", bin)
	}
	return p
}

func ioMust(t *testing.T, cond bool, format string, args ...any) {
	t.Helper()
	if !cond {
		t.Fatalf(format, args...)
	}
}

func TestInteropSwaks(t *testing.T) {
	swaks := ioNeed(t, "swaks")
	dir := t.TempDir()
	cfg, tcp := ioConfig(t, dir)
	ioStart(t, dir, cfg, tcp)
	out, err := exec.Command(swaks, "--server", tcp, "--from", "app@example.com",
		"--to", "bob@example.org,root", "--header", "Subject: swaks interop",
		"--body", "hello from swaks").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ioMust(t, bytes.Contains(out, []byte("<-  250 2.0.0")), "swaks saw no 250 to DATA:\n%s", out)
	msgs := ioWaitMaildir(t, dir, 1)
	m := msgs[0]
	for _, want := range []string{"Return-Path: <app@example.com>", "X-Envelope-To: <bob@example.org>",
		"X-Envelope-To: <ops@example.com>", "X-Envelope-To: <oncall@example.net>",
		"Subject: swaks interop", "hello from swaks", "by relay.test (Outbox) with ESMTP"} {
		ioMust(t, strings.Contains(m, want), "delivered message lacks %q:\n%s", want, m)
	}
}

func TestInteropPythonSmtplib(t *testing.T) {
	py := ioNeed(t, "python3")
	dir := t.TempDir()
	cfg, tcp := ioConfig(t, dir)
	ioStart(t, dir, cfg, tcp)
	host, port, _ := net.SplitHostPort(tcp)
	script := fmt.Sprintf(`
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "monitor@example.com"
m["To"] = "alice@example.org"
m["Subject"] = "disk almost full"
m.set_content("sda1 is 93%% full\n")
with smtplib.SMTP(%q, %s) as s:
    s.ehlo("monitor.example.com")
    assert s.has_extn("size") and s.has_extn("8bitmime") and s.has_extn("dsn")
    refused = s.send_message(m, rcpt_options=["NOTIFY=FAILURE"])
    assert not refused, refused
    s.docmd("MAIL FROM:<monitor@example.com>")
    code, _ = s.docmd("RCPT TO:<nobody@relay.test>")
    print("unaliased", code)
`, host, port)
	out, err := exec.Command(py, "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	ioMust(t, strings.Contains(string(out), "unaliased 550"), "an unaliased local name was not refused with 550: %s", out)
	m := ioWaitMaildir(t, dir, 1)[0]
	for _, want := range []string{"Return-Path: <monitor@example.com>", "X-Envelope-To: <alice@example.org>", "Subject: disk almost full", "sda1 is 93% full"} {
		ioMust(t, strings.Contains(m, want), "delivered message lacks %q:\n%s", want, m)
	}
}

// TestInteropShimDaemonDown: cron's exact invocation of the shim while the
// daemon is down lands in the maildrop; the daemon imports it at start-up
// and delivers it, aliases resolved and headers qualified. A second call
// with the daemon up goes over the socket.
func TestInteropShimDaemonDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the shim")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sendmail")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sendmail").CombinedOutput(); err != nil {
		t.Fatalf("building the shim: %v\n%s", err, out)
	}
	cfg, tcp := ioConfig(t, dir)
	cron := "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@relay> /usr/local/bin/backup\nContent-Type: text/plain; charset=UTF-8\n\nbackup done\n"
	run := func() {
		cmd := exec.Command(bin, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root")
		cmd.Env = append(os.Environ(), "OUTBOX_CONFIG="+cfg)
		cmd.Stdin = strings.NewReader(cron)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("shim: %v\n%s", err, out)
		}
	}
	// The package (or any earlier start of the daemon) creates the maildrop.
	if err := maildrop.Setup(filepath.Join(dir, "var", "maildrop")); err != nil {
		t.Fatal(err)
	}
	run() // daemon down: maildrop
	files, _ := filepath.Glob(filepath.Join(dir, "var", "maildrop", "*"))
	ioMust(t, len(files) == 1, "maildrop holds %d files, want 1", len(files))

	ioStart(t, dir, cfg, tcp)
	m := ioWaitMaildir(t, dir, 1)[0]
	for _, want := range []string{"X-Envelope-To: <ops@example.com>", "X-Envelope-To: <oncall@example.net>",
		"To: root@relay.test", "From: root@relay.test (Cron Daemon)", "Message-I", "Date: ", "backup done"} {
		ioMust(t, strings.Contains(m, want), "delivered message lacks %q:\n%s", want, m)
	}
	files, _ = filepath.Glob(filepath.Join(dir, "var", "maildrop", "*"))
	ioMust(t, len(files) == 0, "maildrop still holds %v", files)

	run() // daemon up: the unix socket, with the caller's uid in Received
	msgs := ioWaitMaildir(t, dir, 2)
	found := false
	for _, m := range msgs {
		if strings.Contains(m, fmt.Sprintf("from userid %d", os.Getuid())) && !strings.Contains(m, "maildrop") {
			found = true
		}
	}
	ioMust(t, found, "no message came over the socket with the caller's uid:\n%s", strings.Join(msgs, "\n----\n"))
}
