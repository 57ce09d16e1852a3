package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outbox-mta/outbox/spool"
)

// TestCompactBackupKeepOwner: root compacting or backing up the spool of
// a daemon that runs as another user leaves files that user can open:
// the compacted spool keeps its owner, group and mode, and the backup
// takes them.
func TestCompactBackupKeepOwner(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test needs it")
		}
		t.Skip("needs root to give the spool to another user")
	}
	t.Setenv("OUTBOX_CONFIG", "")
	conf := inWriteConfig(t, inValid)
	dir := filepath.Join(filepath.Dir(conf), "var")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "spool.db")
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(t.Context(), &spool.Message{From: "a@example.com", Recipients: []spool.Recipient{{Address: "b@example.org"}}}, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	const uid, gid = 65534, 8 // nobody, group mail
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	check := func(what, p string) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: owner %d:%d mode %o, want %d:%d 640", what, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
		}
	}
	if code, out, errs := inRun(t, "queue", "compact", "--config", conf); code != 0 {
		t.Fatalf("queue compact: exit %d\n%s%s", code, out, errs)
	}
	check("spool after compact", path)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if code, out, errs := inRun(t, "queue", "backup", "--config", conf, backup); code != 0 {
		t.Fatalf("queue backup: exit %d\n%s%s", code, out, errs)
	}
	check("backup", backup)
	s, err = spool.Open(path, spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("compacted spool: %v", err)
	}
	defer s.Close()
	if n, _ := s.Count(); n != 1 {
		t.Errorf("%d messages after compact, want 1", n)
	}
}
