package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reloadAs returns the credentials the daemon runs with: nobody when the
// test runs as root (in production the daemon has a user of its own, and
// root would hide a file it cannot read again on reload), with the folders
// it needs opened to that user; nil otherwise.
func reloadAs(t *testing.T, e *env) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	const nobody = 65534
	// t.TempDir and the binary's folder are 0700 and root's.
	for _, dir := range []string{filepath.Dir(e.dir), filepath.Dir(outboxBin)} {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.Walk(e.dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, nobody, nobody)
	})
	if err != nil {
		t.Fatal(err)
	}
	return &syscall.Credential{Uid: nobody, Gid: nobody}
}

// delivered counts the messages in the maildir addressed (X-Envelope-To)
// to rcpt.
func delivered(t *testing.T, maildir, rcpt string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if bytes.Contains(b, []byte("X-Envelope-To: <"+rcpt+">\r\n")) {
			n++
		}
	}
	return n
}

// notifySocket listens where the daemon sends its sd_notify states, as
// systemd does for Type=notify, and returns the states received so far.
func notifySocket(t *testing.T, path string) func() []string {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// The daemon may run as another user.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var states []string
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			states = append(states, string(buf[:n]))
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), states...)
	}
}

// TestReloadOnSIGHUP: SIGHUP re-reads relay.hcl and its aliases_file in
// the same process; mail to an alias then goes to the new address. An
// invalid file after SIGHUP is reported and the daemon keeps running on
// the configuration it had. SIGTERM still stops it cleanly.
func TestReloadOnSIGHUP(t *testing.T) {
	const upstream = `upstream "capture" {
  type = "maildir"
  path = "maildir"
}`
	conf := func(root string) string {
		return "aliases_file = \"aliases\"\naliases {\n  root = \"" + root + "\"\n}\n"
	}
	e := newEnv(t, upstream, conf("old@example.com"))
	src, err := os.ReadFile(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(name, content string) {
		t.Helper()
		// WriteFile keeps the file's owner, so the daemon can read it again.
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rewrite("aliases", "postmaster: pm-old@example.com\n")
	notified := notifySocket(t, filepath.Join(e.dir, "notify.sock"))
	cred := reloadAs(t, e)
	d := e.startAs(cred, "NOTIFY_SOCKET="+filepath.Join(e.dir, "notify.sock"))
	pid := d.cmd.Process.Pid
	if cred != nil {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || !strings.Contains(string(status), fmt.Sprintf("\nUid:\t%d\t", cred.Uid)) {
			t.Fatalf("the daemon does not run as uid %d (%v)", cred.Uid, err)
		}
	}
	maildir := filepath.Join(e.dir, "maildir")

	sendTo := func(rcpt string) {
		t.Helper()
		c, err := dialSMTP(e.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m := newMessage("reload", 0, 512)
		m.to = rcpt
		if err := send(c, m); err != nil {
			t.Fatalf("sending to %s: %v", rcpt, err)
		}
	}
	sendTo("root")
	sendTo("postmaster")
	waitFor(t, "delivery to the aliases at start", 20*time.Second, func() bool {
		return delivered(t, maildir, "old@example.com") == 1 && delivered(t, maildir, "pm-old@example.com") == 1
	})

	newSrc := strings.Replace(string(src), "old@example.com", "new@example.com", 1)
	rewrite("relay.hcl", newSrc)
	rewrite("aliases", "postmaster: pm-new@example.com\n")
	d.signal(syscall.SIGHUP)
	d.waitLog("configuration reloaded", 1, 20*time.Second)
	sendTo("root")
	sendTo("postmaster")
	waitFor(t, "delivery to the reloaded aliases", 20*time.Second, func() bool {
		return delivered(t, maildir, "new@example.com") == 1 && delivered(t, maildir, "pm-new@example.com") == 1
	})
	if d.cmd.Process.Pid != pid || d.log.count("outbox started") != 1 {
		t.Fatal("the daemon restarted instead of reloading")
	}
	// systemd hears the reload begin (with the CLOCK_MONOTONIC time that
	// Type=notify-reload wants) and end.
	waitFor(t, "READY=1 after the reload", 10*time.Second, func() bool { return len(notified()) >= 3 })
	if got := notified(); got[0] != "READY=1" || !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=\d+$`).MatchString(got[1]) || got[2] != "READY=1" {
		t.Errorf("sd_notify states %q, want READY=1, RELOADING=1 with MONOTONIC_USEC, READY=1", got)
	}

	// An invalid file: reported, the running configuration kept.
	rewrite("relay.hcl", newSrc+"\nlimits {\n  max_recipients = \"many\"\n}\n")
	d.signal(syscall.SIGHUP)
	d.waitLog("configuration not reloaded", 1, 20*time.Second)
	if !strings.Contains(d.log.String(), "relay.hcl:") || !strings.Contains(d.log.String(), "level=ERROR") {
		t.Errorf("the invalid file was not reported at ERROR with its file:line:col")
	}
	select {
	case <-d.done:
		t.Fatalf("daemon exited after SIGHUP with an invalid file: %v", d.err)
	default:
	}
	sendTo("root")
	waitFor(t, "delivery after the failed reload", 20*time.Second, func() bool {
		return delivered(t, maildir, "new@example.com") == 2
	})

	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}
}
