package e2e

// QA checks of what the README and the issues promise a user, run against
// the built binaries.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// qaRun runs `outbox ARGS...` and returns its stdout, stderr and exit code.
func qaRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(outboxBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("outbox %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// TestQAStartOnBusyPort: a listen address already in use (another MTA, or
// a second `outbox serve` on the development relay.hcl) must stop start-up
// with a clear error and exit 69, not a nil-pointer panic while cleaning up.
func TestQAStartOnBusyPort(t *testing.T) {
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

// TestQATestUpstream runs `outbox test-upstream NAME --rcpt ADDR` as the
// README writes it (flags after the name): against a server without
// STARTTLS it gives the verdict and sends no credential; with tls = "none"
// it reports the RCPT answer; neither sends a message.
func TestQATestUpstream(t *testing.T) {
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

	out, errOut, code := qaRun(t, "test-upstream", "secure", "--rcpt", "x@example.org", "--config", e.conf)
	want := fmt.Sprintf("STARTTLS not offered by %s: refusing to send credentials", s.addr)
	if code != 69 || !strings.Contains(out, want) {
		t.Errorf("test-upstream secure: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 69 and %q", code, out, errOut, want)
	}

	out, errOut, code = qaRun(t, "test-upstream", "plain", "--rcpt", "x@example.org", "--config", e.conf)
	if code != 0 || !strings.Contains(out, "RCPT") || !strings.Contains(out, "250") {
		t.Errorf("test-upstream plain --rcpt: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit 0 and the RCPT answer", code, out, errOut)
	}
	if n := s.count(); n != 0 {
		t.Errorf("test-upstream sent %d message(s); it must send nothing", n)
	}
}

// TestQAQueueLsTable: in `outbox queue ls`, every message line keeps the
// header's columns, however long the recipients and errors under it are.
func TestQAQueueLsTable(t *testing.T) {
	up, queue := holdUpstream(t)
	e := newEnv(t, up, queue)
	d := e.start()
	for i, rcpts := range [][]string{{"a@example.org"}, {"a-much-longer-recipient-address@example.org", "b@example.net"}} {
		c, err := dialSMTP(e.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("sender@example.com", rcpts, strings.NewReader(fmt.Sprintf("Subject: qa %d\r\n\r\nbody\r\n", i))); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// Both messages have had their first (failed) attempt.
	d.waitLog("deferred", 3, 20*time.Second)

	out, errOut, code := qaRun(t, "queue", "ls", "--config", e.conf)
	if code != 0 {
		t.Fatalf("queue ls: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	col := strings.Index(header, "ARRIVED")
	from := strings.Index(header, "FROM")
	if col < 0 || from < 0 {
		t.Fatalf("queue ls header %q lacks ARRIVED or FROM", header)
	}
	msgs := 0
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, " ") || !strings.Contains(l, "sender@example.com") {
			continue
		}
		msgs++
		if len(l) < col+19 || strings.Count(l[col:col+19], ":") != 2 || strings.Index(l, "sender@example.com") != from {
			t.Errorf("message line out of the header's columns:\n%s\n%s", header, l)
		}
	}
	if msgs != 2 {
		t.Errorf("queue ls shows %d message lines, want 2:\n%s", msgs, out)
	}
	if !strings.Contains(out, "connection refused") {
		t.Errorf("queue ls does not show the recipients' last error:\n%s", out)
	}
}

// TestQACheckMissingSecretFile: `outbox check` warns about a password_file
// that does not exist (mail through that upstream could never leave)
// while still accepting the configuration.
func TestQACheckMissingSecretFile(t *testing.T) {
	e := newEnv(t, `upstream "provider" {
  host          = "smtp.example.com"
  username      = "me@example.com"
  password_file = "no-such-secret.txt"
}`, "")
	out, errOut, code := qaRun(t, "check", "--config", e.conf)
	if code != 0 {
		t.Fatalf("check: exit %d, want 0 (a warning only):\n%s%s", code, out, errOut)
	}
	want := filepath.Join(e.dir, "no-such-secret.txt") + " does not exist"
	if !strings.Contains(errOut, "warning") || !strings.Contains(errOut, want) {
		t.Errorf("check stderr:\n%s\nwant a warning containing %q", errOut, want)
	}
}

var (
	qaShimOnce sync.Once
	qaShimBin  string
	qaShimErr  error
)

// qaShim builds cmd/sendmail once, next to the outbox binary.
func qaShim(t *testing.T) string {
	t.Helper()
	qaShimOnce.Do(func() {
		qaShimBin = filepath.Join(filepath.Dir(outboxBin), "sendmail")
		out, err := exec.Command("go", "build", "-o", qaShimBin, "github.com/outbox-mta/outbox/cmd/sendmail").CombinedOutput()
		if err != nil {
			qaShimErr = fmt.Errorf("building sendmail: %v\n%s", err, out)
		}
	})
	if qaShimErr != nil {
		t.Fatal(qaShimErr)
	}
	return qaShimBin
}

// TestQASendmailBsBareNames: `sendmail -bs` (swaks --pipe, or any program
// speaking SMTP to the shim) takes "RCPT TO:<root>" and "MAIL
// FROM:<cron>" as the daemon's local listeners do, and the message
// reaches root's alias; the body is passed through untouched.
func TestQASendmailBsBareNames(t *testing.T) {
	shim := qaShim(t)
	e := newEnv(t, `upstream "capture" {
  type = "maildir"
  path = "maildir"
}`, `listen {
  address = "unix:submit.sock"
}

aliases {
  root = "ops@example.com"
}`)
	e.start()
	session := "EHLO client.example\r\n" +
		"MAIL FROM:<cron>\r\n" +
		"RCPT TO:<root>\r\n" +
		"DATA\r\n" +
		"Subject: qa -bs\r\n" +
		"\r\n" +
		"RCPT TO:<root>\r\n" +
		".\r\n" +
		"QUIT\r\n"
	cmd := exec.Command(shim, "-bs")
	cmd.Env = append(os.Environ(), "OUTBOX_CONFIG="+e.conf)
	cmd.Stdin = strings.NewReader(session)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sendmail -bs: %v\n%s%s", err, out, stderr.String())
	}
	if strings.Contains(string(out), "501") || !strings.Contains(string(out), "queued") {
		t.Fatalf("sendmail -bs refused the bare names or did not queue:\n%s", out)
	}
	newDir := filepath.Join(e.dir, "maildir", "new")
	var files []os.DirEntry
	waitFor(t, "delivery into the maildir", 20*time.Second, func() bool {
		files, _ = os.ReadDir(newDir)
		return len(files) == 1
	})
	got, err := os.ReadFile(filepath.Join(newDir, files[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Return-Path: <cron@relay.test>", "X-Envelope-To: <ops@example.com>", "\r\n\r\nRCPT TO:<root>\r\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("delivered message lacks %q:\n%s", want, got)
		}
	}
}
