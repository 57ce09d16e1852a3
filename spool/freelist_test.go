package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// freelistOf returns the page number of the stored freelist and the page
// size, as the current meta says.
func freelistOf(t *testing.T, path string) (pgid uint64, pageSize int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := db.Info().PageSize
	m0, m1 := b[16:], b[ps+16:]
	cur := m0
	if binary.LittleEndian.Uint64(m1[48:]) > binary.LittleEndian.Uint64(m0[48:]) {
		cur = m1
	}
	return binary.LittleEndian.Uint64(cur[32:]), ps
}

// churn fills a spool and deletes half, so its freelist has entries.
func churn(t *testing.T, path string) {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ids []string
	for i := 0; i < 200; i++ {
		m := newMsg("b@example.org")
		if err := s.Enqueue(context.Background(), m, bytes.NewReader(make([]byte, 3000))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	for _, id := range ids[:100] {
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFreelistStoredAtEveryCommit: the file as of any commit (what a
// crash leaves) has its freelist stored, so an open never walks it.
func TestFreelistStoredAtEveryCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	churn(t, path)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fillSpool(t, s, 3, nil)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if stored, err := checkFreelist(crashed); !stored || err != nil {
		t.Fatalf("as of the last commit: stored %v, %v; want a stored, valid freelist", stored, err)
	}
	c, err := Open(crashed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantCounts(t, c, Counts{Pending: 103, Total: 103})
}

// TestSpoolWithoutFreelistUpgrades: a spool an older release wrote
// (freelist not stored) opens, and stores its freelist from then on.
func TestSpoolWithoutFreelistUpgrades(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	churn(t, path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put([]byte("x"), []byte("y")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if stored, err := checkFreelist(path); stored || err != nil {
		t.Fatalf("after a NoFreelistSync commit: stored %v, %v", stored, err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(); err != nil || n != 100 {
		t.Fatalf("count %d, %v; want 100", n, err)
	}
	s.Close()
	if stored, err := checkFreelist(path); !stored || err != nil {
		t.Fatalf("after an open: stored %v, %v; want the freelist stored", stored, err)
	}
}

// TestDamagedFreelist: a damaged freelist page is ErrCorrupt at a
// writable open, and the failed open leaves the file unlocked.
func TestDamagedFreelist(t *testing.T) {
	for name, damage := range map[string]func(page []byte){
		"type":  func(p []byte) { p[8] = 0x02 },                                   // a leaf, not a freelist
		"entry": func(p []byte) { binary.LittleEndian.PutUint64(p[16:], 1<<40) },  // a page far beyond the file
		"count": func(p []byte) { binary.LittleEndian.PutUint16(p[10:], 0xFFFE) }, // more entries than the page holds
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "spool.db")
			churn(t, path)
			pgid, ps := freelistOf(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if binary.LittleEndian.Uint16(b[int(pgid)*ps+10:]) == 0 {
				t.Fatal("the freelist is empty: nothing to damage")
			}
			damage(b[int(pgid)*ps:])
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("writable open: %v, want ErrCorrupt", err)
			}
			ro, err := Open(path, Options{ReadOnly: true})
			if errors.Is(err, ErrLocked) {
				t.Fatal("the failed open left the file locked")
			}
			if err == nil {
				ro.Close()
			}
		})
	}
}
