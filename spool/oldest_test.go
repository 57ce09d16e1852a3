package spool

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func wantStateCounts(t *testing.T, s *Spool, pending, deferred, held int) {
	t.Helper()
	c, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if c.Pending != pending || c.Deferred != deferred || c.Held != held || c.Total != pending+deferred+held {
		t.Fatalf("counts %+v, want pending %d deferred %d held %d", c, pending, deferred, held)
	}
}

func wantOldest(t *testing.T, s *Spool, id string, arrived time.Time) {
	t.Helper()
	gotID, got, err := s.Oldest()
	if err != nil {
		t.Fatal(err)
	}
	if gotID != id || !got.Equal(arrived) {
		t.Fatalf("oldest %q arrived %s, want %q arrived %s", gotID, got, id, arrived)
	}
}

// TestCountsAndOldest checks that the counts by state follow every kind
// of write, survive a reopen and are rebuilt for a spool that kept none,
// and that Oldest names the first message still queued.
func TestCountsAndOldest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, s, 0, 0, 0)
	wantOldest(t, s, "", time.Time{})
	first := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 4 {
		m := newMsg("a@example.com", "b@example.com")
		m.Arrived = first.Add(time.Duration(i) * time.Minute)
		m.ID = NewID(m.Arrived)
		if err := s.Enqueue(context.Background(), m, strings.NewReader("x\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	wantStateCounts(t, s, 4, 0, 0)
	wantOldest(t, s, ids[0], first)
	// A round that defers, a hold, a release, a delivery and a delete.
	upd := func(id string, fn func(m *Message)) {
		t.Helper()
		if _, err := s.Update(id, func(m *Message) error { fn(m); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	upd(ids[1], func(m *Message) { m.Attempts++ })
	wantStateCounts(t, s, 3, 1, 0)
	upd(ids[2], func(m *Message) { m.Held = true })
	wantStateCounts(t, s, 2, 1, 1)
	upd(ids[1], func(m *Message) { m.Held = true })
	wantStateCounts(t, s, 2, 0, 2)
	upd(ids[1], func(m *Message) { m.Held = false })
	wantStateCounts(t, s, 2, 1, 1)
	upd(ids[0], func(m *Message) {
		m.Attempts++
		for i := range m.Recipients {
			m.Recipients[i].Status = Sent
		}
	})
	wantStateCounts(t, s, 1, 1, 1)
	wantOldest(t, s, ids[1], first.Add(time.Minute))
	if err := s.Delete(ids[3]); err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, s, 0, 1, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened, the counts are the same; read-only too.
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, ro, 0, 1, 1)
	ro.Close()

	// A spool from a release that kept no counts: they are built once.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyCounts) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err = Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, ro, 0, 1, 1)
	ro.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.view(func(tx *bolt.Tx) error {
		if _, ok := readCounts(tx); !ok {
			t.Error("the counts were not built at open")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	upd(ids[2], func(m *Message) { m.Held = false })
	wantStateCounts(t, s, 1, 1, 0)
	upd(ids[2], func(m *Message) { m.Attempts = 1 })
	wantStateCounts(t, s, 0, 2, 0)
}

// A damaged first envelope is an error, not an empty queue.
func TestOldestDamagedEnvelope(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "spool.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := newMsg("a@example.com", "b@example.com")
	if err := s.Enqueue(context.Background(), m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMsg).Put([]byte(m.ID), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	if id, _, err := s.Oldest(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Oldest = %q, %v; want ErrCorrupt", id, err)
	}
}

// A spool whose counts record also holds the total, as earlier releases
// of schema 3 wrote it, opens with the right counts (the stored total is
// not trusted: the sum is) and keeps them right as it is written.
func TestCountsLegacyTotal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 3 {
		m := newMsg("a@example.com", "b@example.com")
		if err := s.Enqueue(context.Background(), m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	s.Close()

	// The record as the earlier layout had it: pending 3, deferred 0,
	// held 0, and a total (here a wrong one, to see it ignored).
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	legacy := make([]byte, legacyCountsLen)
	for i, n := range []uint64{3, 0, 0, 99} {
		binary.BigEndian.PutUint64(legacy[8*i:], n)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCounts, legacy) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, ro, 3, 0, 0)
	ro.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	wantStateCounts(t, s, 3, 0, 0)
	if _, err := s.Update(ids[0], func(m *Message) error { m.Attempts = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, s, 2, 1, 0)
	if err := s.Delete(ids[1]); err != nil {
		t.Fatal(err)
	}
	wantStateCounts(t, s, 1, 1, 0)
	if err := s.view(func(tx *bolt.Tx) error {
		if n := len(tx.Bucket(bucketMeta).Get(keyCounts)); n != 8*len(counts{}) {
			t.Errorf("counts record is %d bytes after a write, want %d", n, 8*len(counts{}))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
