package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fillSpool stores n one-recipient messages with a small body and returns
// their IDs in ID order.
func fillSpool(t *testing.T, s *Spool, n int, mod func(i int, m *Message)) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := 0; i < n; i++ {
		m := newMsg("bob@example.org")
		if mod != nil {
			mod(i, m)
		}
		if err := s.Enqueue(context.Background(), m, bytes.NewReader([]byte("Subject: x\r\n\r\nhi\r\n"))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	return ids
}

func TestRangeVisitsEachMessageOnceInIDOrder(t *testing.T) {
	s := openTemp(t)
	n := 2*rangeBatch + 17 // several read transactions
	want := fillSpool(t, s, n, nil)
	var got []string
	if err := s.Range("", func(m *Message) error { got = append(got, m.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("Range saw %d messages, want %d", len(got), n)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("message %d: %s, want %s (ID order)", i, got[i], want[i])
		}
	}
	// Resuming after an ID starts at the next one.
	got = got[:0]
	if err := s.Range(want[rangeBatch], func(m *Message) error { got = append(got, m.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != n-rangeBatch-1 || got[0] != want[rangeBatch+1] {
		t.Fatalf("Range after %s: %d messages from %v, want %d from %s", want[rangeBatch], len(got), got[:1], n-rangeBatch-1, want[rangeBatch+1])
	}
	// An error from fn stops the walk.
	stop := errors.New("stop")
	seen := 0
	if err := s.Range("", func(*Message) error { seen++; return stop }); err != stop || seen != 1 {
		t.Fatalf("Range returned %v after %d calls, want stop after 1", err, seen)
	}
}

// TestRangeHoldsNoTransactionDuringFn: a writer can commit (here one that
// grows the file) while a Range callback waits.
func TestRangeHoldsNoTransactionDuringFn(t *testing.T) {
	s := openTemp(t)
	fillSpool(t, s, 3, nil)
	big := bytes.Repeat([]byte("x"), 8<<20)
	err := s.Range("", func(m *Message) error {
		done := make(chan error, 1)
		go func() { done <- s.Enqueue(context.Background(), newMsg("c@example.org"), bytes.NewReader(big)) }()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("a write that grows the file waited for the Range callback")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func wantCounts(t *testing.T, s *Spool, want Counts) {
	t.Helper()
	got, err := s.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
	if n, _ := s.Count(); n != want.Total {
		t.Fatalf("Count %d, want %d", n, want.Total)
	}
}

func TestCountsFollowEveryWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{})
	ids := fillSpool(t, s, 5, func(i int, m *Message) {
		if i == 4 {
			m.Held = true
		}
	})
	wantCounts(t, s, Counts{Pending: 4, Held: 1, Total: 5})
	// A failed attempt defers; a hold moves a message to held.
	if _, err := s.Update(ids[0], func(m *Message) error { m.Attempts++; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ids[1], func(m *Message) error { m.Held = true; return nil }); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Pending: 2, Deferred: 1, Held: 2, Total: 5})
	// Delivery (every recipient done) and delete remove messages.
	if _, err := s.Update(ids[0], func(m *Message) error { m.Recipients[0].Status = Sent; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ids[4]); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Pending: 2, Held: 1, Total: 3})
	// A write that fails leaves the counts as they were.
	boom := errors.New("boom")
	if _, err := s.Update(ids[2], func(m *Message) error { m.Held = true; return boom }); err != boom {
		t.Fatalf("update: %v", err)
	}
	wantCounts(t, s, Counts{Pending: 2, Held: 1, Total: 3})
	s.Close()
	if s, err = Open(path, Options{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, Counts{Pending: 2, Held: 1, Total: 3})
	s.Close()
}

// TestCountsBuiltForOlderSpool: a version 2 spool has no counts; a
// read-only open counts by walking, a writable open stores them.
func TestCountsBuiltForOlderSpool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := fillSpool(t, s, 4, nil)
	if _, err := s.Update(ids[0], func(m *Message) error { m.Attempts = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	// Make it what a version 2 release left.
	err = s.db.Update(func(tx *bolt.Tx) error {
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], 2)
		if err := tx.Bucket(bucketMeta).Put(keySchema, v[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyCounts)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := Counts{Pending: 3, Deferred: 1, Total: 4}
	if s, err = Open(path, Options{ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, s, want)
	s.Close()
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.db.View(func(tx *bolt.Tx) error {
		if _, ok := readCounts(tx); !ok {
			t.Error("no counts stored after a writable open")
		}
		return nil
	})
	wantCounts(t, s, want)
	fillSpool(t, s, 1, nil)
	want.Pending++
	want.Total++
	wantCounts(t, s, want)
}

func TestFlushMakesWaitingMessagesDueInBatches(t *testing.T) {
	s := openTemp(t)
	now := time.Now()
	later := now.Add(time.Hour)
	n := flushBatch + 10 // two commits at least
	ids := fillSpool(t, s, n, func(i int, m *Message) {
		switch i {
		case 0:
			m.Held = true
			m.NextAttempt = later
		case 1:
			m.NextAttempt = now.Add(-time.Minute) // already due
		default:
			m.NextAttempt = later
			m.Attempts = 1
		}
	})
	if due, _ := s.Due(now, n); len(due) != 1 {
		t.Fatalf("%d due before the flush, want 1", len(due))
	}
	var calls []int
	got, err := s.Flush(now, func(k int) { calls = append(calls, k) })
	if err != nil {
		t.Fatal(err)
	}
	if got != n-2 {
		t.Fatalf("Flush changed %d, want %d (not the held one, not the one already due)", got, n-2)
	}
	if len(calls) < 2 || calls[len(calls)-1] != n-2 {
		t.Fatalf("progress calls %v: want one per commit, ending at %d", calls, n-2)
	}
	due, err := s.Due(now, 2*n)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != n-1 {
		t.Fatalf("%d due after the flush, want %d", len(due), n-1)
	}
	for _, m := range due {
		if m.ID == ids[0] {
			t.Fatal("the held message became due")
		}
	}
	if m, _ := s.Get(ids[0]); !m.Held || !m.NextAttempt.Equal(later.Round(0)) && !m.NextAttempt.Equal(later) {
		t.Fatalf("held message changed: %+v", m)
	}
	if next, ok, _ := s.NextDue(); !ok || next.After(now) {
		t.Fatalf("next due %v, want at or before %v", next, now)
	}
	wantCounts(t, s, Counts{Pending: 1, Deferred: n - 2, Held: 1, Total: n})
}
