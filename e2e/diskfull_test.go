package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	bolt "go.etcd.io/bbolt"
)

// smallFS mounts an 8 MiB tmpfs at a new folder under dir, unmounted at the
// end of the test.
func smallFS(t *testing.T, dir string) string {
	t.Helper()
	needRoot(t, "to mount a small tmpfs")
	mnt := filepath.Join(dir, "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return path
		}
	}
}

// wantReply checks that err is an SMTP reply with this code and enhanced
// code.
func wantReply(t *testing.T, what string, err error, code int, enh smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: %v, want the reply %d %v", what, err, code, enh)
	}
	if se.Code != code || se.EnhancedCode != enh {
		t.Fatalf("%s: %d %v %s, want %d %v", what, se.Code, se.EnhancedCode, se.Message, code, enh)
	}
}

// TestDiskFull: with the spool's file system full, DATA gets 452 4.3.1 on
// the same connection, which stays usable; what was accepted before stays;
// once space is back, mail is accepted again without a restart.
func TestDiskFull(t *testing.T) {
	up, queue := holdUpstream(t)
	e := newEnv(t, up, queue)
	mnt := smallFS(t, e.dir)
	conf, err := os.ReadFile(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	spoolPath := filepath.Join(mnt, "spool.db")
	fixed := strings.Replace(string(conf), `path     = "spool.db"`, `path     = "`+spoolPath+`"`, 1)
	if fixed == string(conf) {
		t.Fatal("cannot move the spool in the configuration")
	}
	if err := os.WriteFile(e.conf, []byte(fixed), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e.start()
	c, err := dialSMTP(e.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := newMessage("before", 0, 8<<10)
	if err := send(c, before); err != nil {
		t.Fatalf("before the disk is full: %v", err)
	}

	filler := fill(t, mnt)
	for i, size := range []int{200 << 10, 3 << 20} {
		err := send(c, newMessage("full", i, size))
		wantReply(t, "DATA on a full disk", err, 452, smtp.EnhancedCode{4, 3, 1})
	}
	// Room for a megabyte and a half: a large body fails half way through.
	if err := os.Truncate(filler, 0); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-(3<<19)), 0o644); err != nil {
		t.Fatal(err)
	}
	wantReply(t, "DATA of a body larger than the room left", send(c, newMessage("half", 0, 3<<20)), 452, smtp.EnhancedCode{4, 3, 1})

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := newMessage("after", 0, 8<<10)
	if err := send(c, after); err != nil {
		t.Fatalf("once space is back: %v", err)
	}
	big := newMessage("after", 1, 1200<<10)
	if err := send(c, big); err != nil {
		t.Fatalf("a large message once space is back: %v", err)
	}
	c.Quit()
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d", code)
	}
	stored := readSpool(t, spoolPath)
	for _, m := range []*message{before, after, big} {
		if _, ok := stored[m.id]; !ok {
			t.Errorf("message %s got its 250 but is not in the spool", m.id)
		}
	}
	if len(stored) != 3 {
		t.Errorf("%d messages in the spool, want 3", len(stored))
	}
	// Nothing of the refused bodies is left: one chunk for each small
	// message, two for the large one, and no pending marks.
	db, err := bolt.Open(spoolPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bolt.Tx) error {
		chunks := 0
		tx.Bucket([]byte("body")).ForEach(func(_, _ []byte) error { chunks++; return nil })
		pending := 0
		if b := tx.Bucket([]byte("pending")); b != nil {
			pending = b.Stats().KeyN
		}
		if chunks != 4 || pending != 0 {
			t.Errorf("%d body chunks and %d pending marks in the spool, want 4 and 0", chunks, pending)
		}
		return nil
	})
}
