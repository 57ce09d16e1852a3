package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestFullDisk: a commit that fails for want of space returns ErrNoSpace,
// leaves the spool usable and what it held intact; once there is room
// again, writes succeed without reopening.
func TestFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test needs it to mount a tmpfs")
		}
		t.Skip("needs root to mount a small tmpfs")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	path := filepath.Join(mnt, "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kept := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), kept, bytes.NewReader(bytes.Repeat([]byte("k"), 5000))); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.Write(make([]byte, 4096)); err != nil {
			break
		}
	}
	f.Close()
	// bbolt's own failure, past the check Enqueue makes first.
	err = s.write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("state/big"), make([]byte, 1<<20))
	})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("commit on a full disk: %v, want ErrNoSpace", err)
	}
	if err := s.Enqueue(context.Background(), newMsg("b@example.org"), bytes.NewReader(make([]byte, 3<<20))); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Enqueue on a full disk: %v, want ErrNoSpace", err)
	}
	if got := readBody(t, s, kept.ID); len(got) != 5000 {
		t.Fatalf("the message stored before: %d bytes", len(got))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	after := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), after, bytes.NewReader(bytes.Repeat([]byte("a"), 1<<20+10))); err != nil {
		t.Fatalf("once there is room again: %v", err)
	}
	if n, _ := s.Count(); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
	if c, p := bodyKeys(t, s); c != 3 || p != 0 {
		t.Fatalf("%d chunks and %d pending marks, want 3 and 0", c, p)
	}
}
