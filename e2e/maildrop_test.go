package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMaildropUnprivileged runs both sides of the maildrop as the package
// installs them, nobody as root: the shim as nobody with umask 077 while
// the daemon is down, then `outbox serve` as the daemon's own user (mail
// stands in for outbox here), which imports the file and delivers it
// with nobody named as the submitter.
func TestMaildropUnprivileged(t *testing.T) {
	needRoot(t, "to run the shim and the daemon as other users")
	const nobody, mail = 65534, 8
	shim := buildShim(t)
	// The binaries, relay.hcl (0644) and the folders on the way must be
	// reachable by both users.
	if err := os.Chmod(filepath.Dir(outboxBin), 0o755); err != nil {
		t.Fatal(err)
	}
	state, conf := packagedState(t, mail)
	md := filepath.Join(state, "maildrop")
	as := func(uid int, name string, args ...string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", append([]string{"-c", `umask 077; exec "$0" "$@"`, name}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		cmd.Env = []string{"OUTBOX_CONFIG=" + conf, "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		return cmd
	}

	send := as(nobody, shim, "-t", "-i")
	send.Stdin = strings.NewReader("To: root\nSubject: dropped by nobody\n\nwhile the daemon was down\n")
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("shim as nobody, daemon down: %v\n%s", err, out)
	}

	// What a hostile user can leave there: a FIFO, a link to a file only
	// the daemon's user may read, a folder with a file of theirs inside.
	hostile := as(nobody, "/bin/sh", "-c", `cd "$1" && mkfifo 0000000000000001-00000000000000000000000000000001 &&
		ln -s ../spool.db 0000000000000002-00000000000000000000000000000002 &&
		mkdir 0000000000000003-00000000000000000000000000000003 && touch 0000000000000003-00000000000000000000000000000003/x`, "sh", md)
	if out, err := hostile.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}

	log := &logBuf{}
	serve := as(mail, outboxBin, "serve", "--config", conf)
	serve.Stdout, serve.Stderr = log, log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serve.Wait(); close(done) }()
	t.Cleanup(func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			serve.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(log.String(), 40))
		}
	})
	var msg []byte
	waitFor(t, "the dropped message in the Maildir", 20*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(state, "md", "new", "*"))
		if len(files) == 0 {
			return false
		}
		msg, _ = os.ReadFile(files[0])
		return true
	})
	for _, want := range []string{"Subject: dropped by nobody", "from userid 65534)", "while the daemon was down"} {
		if !bytes.Contains(msg, []byte(want)) {
			t.Errorf("delivered message lacks %q:\n%s", want, msg)
		}
	}
	// The folder, whose content the daemon's user may not delete, is
	// renamed to a name the importer skips.
	waitFor(t, "the hostile entries gone from the maildrop", 10*time.Second, func() bool {
		names, _ := filepath.Glob(filepath.Join(md, "[0-9]*"))
		return len(names) == 0
	})
	if _, err := os.Lstat(filepath.Join(md, ".unsafe-0000000000000003-00000000000000000000000000000003")); err != nil {
		t.Errorf("the hostile folder was not set aside: %v", err)
	}
	// And the daemon still stops at once.
	serve.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the daemon does not stop")
	}
	rej, err := os.Lstat(filepath.Join(state, "maildrop-rejected"))
	if err != nil || rej.Mode() != os.ModeDir|0o700 || rej.Sys().(*syscall.Stat_t).Uid != mail {
		t.Errorf("rejected folder: %v %v, want a 0700 folder of the daemon's user", rej, err)
	}
}

// packagedState makes what the package makes for a daemon run as owner: a
// folder every user may enter holding relay.hcl (0644; a unix listener
// and the Maildir state/md), and state/ owned by owner with the maildrop
// (1733) in it. It returns state/ and relay.hcl.
func packagedState(t *testing.T, owner int) (state, conf string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-state")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	state = filepath.Join(dir, "state")
	md := filepath.Join(state, "maildrop")
	for _, d := range []string{state, md} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, owner, owner); err != nil {
			t.Fatal(err)
		}
	}
	// The maildrop as the package makes it.
	if err := os.Chmod(md, os.ModeSticky|0o733); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "relay.hcl")
	src := `hostname = "relay.test"
listen { address = "unix:state/submit.sock" }
spool {
  path     = "state/spool.db"
  maildrop = "state/maildrop"
}
admin { socket = "state/admin.sock" }
aliases { root = "ops@example.com" }
upstream "capture" {
  type = "maildir"
  path = "state/md"
}
`
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return state, conf
}
