package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logNothingStored is what the daemon logs when a session ends inside a
// message.
const logNothingStored = "the message did not arrive whole (connection closed or transaction reset); nothing stored"

// maildirEnv is a daemon that delivers into a Maildir at once, with a unix
// listener for the shim; its folder is open to every user, so that the
// shim can run as one.
func maildirEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, `upstream "capture" {
  type = "maildir"
  path = "maildir"
}`, `listen {
  address = "unix:submit.sock"
}`)
	for d := e.dir; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(e.conf, 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// rawSession speaks SMTP by hand, so that a test can stop anywhere.
type rawSession struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawSession {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	s := &rawSession{t: t, conn: conn, r: bufio.NewReader(conn)}
	s.expect("220")
	return s
}

// expect reads one reply, all its lines, and checks its code.
func (s *rawSession) expect(code string) {
	s.t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the reply (want %s): %v", code, err)
		}
		if !strings.HasPrefix(line, code) {
			s.t.Fatalf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if len(line) < 4 || line[3] != '-' {
			return
		}
	}
}

func (s *rawSession) cmd(line, code string) {
	s.t.Helper()
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		s.t.Fatal(err)
	}
	s.expect(code)
}

func (s *rawSession) write(p string) {
	s.t.Helper()
	if _, err := io.WriteString(s.conn, p); err != nil {
		s.t.Fatal(err)
	}
}

const halfMessage = "From: <sender@example.com>\r\nTo: <rcpt@example.net>\r\nSubject: half\r\n\r\nthe first half of the body\r\n"

// checkNothingKept sends a whole message after the broken one, waits for it
// in the Maildir, stops the daemon and checks that the Maildir holds only
// that message and the spool nothing.
func checkNothingKept(t *testing.T, e *env, d *daemon) {
	t.Helper()
	waitFor(t, "the daemon to end the broken session", 20*time.Second, func() bool {
		return d.log.count(logNothingStored) > 0 || d.log.count("msg=accepted") > 0
	})
	if n := d.log.count("msg=accepted"); n != 0 {
		t.Fatalf("the daemon accepted %d messages from a session that ended inside its message", n)
	}
	c, err := dialSMTP(e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	whole := newMessage("whole", 0, 1024)
	if err := send(c, whole); err != nil {
		t.Fatalf("the whole message after it: %v", err)
	}
	c.Quit()
	newDir := filepath.Join(e.dir, "maildir", "new")
	var files []os.DirEntry
	waitFor(t, "delivery of the whole message", 20*time.Second, func() bool {
		files, _ = os.ReadDir(newDir)
		return len(files) >= 1
	})
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d after SIGTERM", code)
	}
	files, _ = os.ReadDir(newDir)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(newDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "Subject: half") {
			t.Errorf("the half message reached the Maildir as %s", f.Name())
		}
	}
	if len(files) != 1 {
		t.Errorf("%d messages in the Maildir, want only the whole one", len(files))
	}
	if left := readSpool(t, e.spoolPath()); len(left) != 0 {
		t.Errorf("%d messages left in the spool, want none", len(left))
	}
}

// TestHangUpInsideData: a client that closes its connection before the
// final dot gets nothing queued or relayed.
func TestHangUpInsideData(t *testing.T) {
	e := maildirEnv(t)
	d := e.start()
	s := dialRaw(t, e.addr)
	s.cmd("EHLO client.example", "250")
	s.cmd("MAIL FROM:<sender@example.com>", "250")
	s.cmd("RCPT TO:<rcpt@example.net>", "250")
	s.cmd("DATA", "354")
	s.write(halfMessage)
	s.conn.Close()
	checkNothingKept(t, e, d)
}

// TestHangUpInsideBDAT: a connection that ends inside the LAST chunk, or
// before it, stores nothing either.
func TestHangUpInsideBDAT(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(s *rawSession)
	}{
		{"short last chunk", func(s *rawSession) {
			s.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(halfMessage)+100, halfMessage))
		}},
		{"no last chunk", func(s *rawSession) {
			s.write(fmt.Sprintf("BDAT %d\r\n%s", len(halfMessage), halfMessage))
			s.expect("250")
		}},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			e := maildirEnv(t)
			d := e.start()
			s := dialRaw(t, e.addr)
			s.cmd("EHLO client.example", "250")
			s.cmd("MAIL FROM:<sender@example.com>", "250")
			s.cmd("RCPT TO:<rcpt@example.net>", "250")
			tc.run(s)
			s.conn.Close()
			checkNothingKept(t, e, d)
		})
	}
}

// TestSendmailBsStdinEndsInsideData: `sendmail -bs` whose input ends
// before the final dot relays nothing, and answers no 250 to the DATA.
// The shim runs as an ordinary user.
func TestSendmailBsStdinEndsInsideData(t *testing.T) {
	needRoot(t, "to run the shim as user nobody")
	shim := buildShim(t)
	if err := os.Chmod(filepath.Dir(shim), 0o755); err != nil {
		t.Fatal(err)
	}
	e := maildirEnv(t)
	d := e.start()
	session := "EHLO client.example\r\n" +
		"MAIL FROM:<sender@example.com>\r\n" +
		"RCPT TO:<rcpt@example.net>\r\n" +
		"DATA\r\n" + halfMessage
	cmd := exec.Command(shim, "-bs")
	cmd.Env = []string{"OUTBOX_CONFIG=" + e.conf, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Stdin = strings.NewReader(session)
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), "queued") {
		t.Fatalf("sendmail -bs answered the half message with a 250:\n%s", out)
	}
	if !strings.Contains(string(out), "354") {
		t.Fatalf("sendmail -bs did not reach DATA (is the daemon reachable?):\n%s", out)
	}
	checkNothingKept(t, e, d)
}
