package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outbox-mta/outbox/internal/dsn"
)

func openTemp(t testing.TB) *Spool {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "spool.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newMsg(rcpts ...string) *Message {
	m := &Message{From: "alice@example.com", Submitter: "127.0.0.1:1234", EnvID: "env1", Ret: "HDRS"}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, Recipient{Address: r, Notify: []dsn.Notify{dsn.NotifyFailure}, ORCPT: "rfc822;" + r})
	}
	return m
}

func readBody(t *testing.T, s *Spool, id string) []byte {
	t.Helper()
	r, err := s.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnqueueRoundTrip(t *testing.T) {
	s := openTemp(t)
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), chunkSize/9) // spans several chunks
	m := newMsg("bob@example.org", "carol@example.net")
	if err := s.Enqueue(context.Background(), m, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if m.ID == "" || m.Size != int64(len(body)) {
		t.Fatalf("id %q size %d", m.ID, m.Size)
	}
	got, err := s.Get(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != m.From || len(got.Recipients) != 2 || got.Recipients[1].ORCPT != "rfc822;carol@example.net" ||
		got.Recipients[0].Status != Pending || got.EnvID != "env1" || got.Ret != "HDRS" || got.Submitter != m.Submitter {
		t.Fatalf("envelope not kept: %+v", got)
	}
	if b := readBody(t, s, m.ID); !bytes.Equal(b, body) {
		t.Fatalf("body differs: %d vs %d bytes", len(b), len(body))
	}
}

func TestEmptyBody(t *testing.T) {
	s := openTemp(t)
	m := newMsg("bob@example.org")
	if err := s.Enqueue(context.Background(), m, strings.NewReader("")); err != nil {
		t.Fatal(err)
	}
	if b := readBody(t, s, m.ID); len(b) != 0 {
		t.Fatalf("want empty body, got %q", b)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n--
		return copy(p, "data"), nil
	}
	return 0, errors.New("client went away")
}

func TestEnqueueReadErrorStoresNothing(t *testing.T) {
	s := openTemp(t)
	if err := s.Enqueue(context.Background(), newMsg("b@example.org"), &failingReader{n: 3}); err == nil {
		t.Fatal("want error")
	}
	if n, _ := s.Count(); n != 0 {
		t.Fatalf("%d messages stored after a failed read", n)
	}
}

func TestDueIndex(t *testing.T) {
	s := openTemp(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 10; i++ {
		m := newMsg("b@example.org")
		m.Arrived = base
		m.NextAttempt = base.Add(time.Duration(i) * time.Minute)
		m.Held = i == 3
		if err := s.Enqueue(context.Background(), m, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	due, err := s.Due(base.Add(4*time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range due {
		got = append(got, m.ID)
	}
	want := []string{ids[0], ids[1], ids[2], ids[4]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("due = %v, want %v (held message must not be due)", got, want)
	}
	if due, _ := s.Due(base.Add(time.Hour), 2); len(due) != 2 {
		t.Fatalf("limit not honoured: %d", len(due))
	}
	next, ok, err := s.NextDue()
	if err != nil || !ok || !next.Equal(base) {
		t.Fatalf("NextDue = %v %v %v", next, ok, err)
	}
	// Rescheduling moves the index entry.
	if _, err := s.Update(ids[0], func(m *Message) error { m.NextAttempt = base.Add(time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}
	if next, _, _ := s.NextDue(); !next.Equal(base.Add(time.Minute)) {
		t.Fatalf("NextDue after reschedule = %v", next)
	}
	// Releasing a held message puts it back in the index.
	if _, err := s.Update(ids[3], func(m *Message) error { m.Held = false; return nil }); err != nil {
		t.Fatal(err)
	}
	due, _ = s.Due(base.Add(3*time.Minute), 100)
	if len(due) != 3 || due[2].ID != ids[3] {
		t.Fatalf("released message not due: %d", len(due))
	}
}

func TestUpdateRemovesFinishedMessage(t *testing.T) {
	s := openTemp(t)
	m := newMsg("b@example.org", "c@example.org")
	if err := s.Enqueue(context.Background(), m, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	after, err := s.Update(m.ID, func(m *Message) error {
		m.Recipients[0].Status = Sent
		m.Attempts++
		return nil
	})
	if err != nil || after.Done() {
		t.Fatalf("after first update: %v %+v", err, after)
	}
	if _, err := s.Get(m.ID); err != nil {
		t.Fatal("message left the queue with a pending recipient")
	}
	if _, err := s.Update(m.ID, func(m *Message) error { m.Recipients[1].Status = Failed; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finished message still queued: %v", err)
	}
	if _, err := s.Body(m.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("body still there: %v", err)
	}
	if _, ok, _ := s.NextDue(); ok {
		t.Fatal("due index still holds the finished message")
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketBody).Stats().KeyN; n != 0 {
			return fmt.Errorf("%d body chunks left", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestFailedWriteDoesNotSinkItsBatch(t *testing.T) {
	s := openTemp(t)
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%4 == 0 {
				_, errs[i] = s.Update("no-such-id", func(*Message) error { return nil })
				return
			}
			errs[i] = s.Enqueue(context.Background(), newMsg("b@example.org"), strings.NewReader("x"))
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if i%4 == 0 && !errors.Is(err, ErrNotFound) {
			t.Errorf("update %d: %v, want ErrNotFound", i, err)
		}
		if i%4 != 0 && err != nil {
			t.Errorf("enqueue %d: %v", i, err)
		}
	}
	if n, _ := s.Count(); n != 30 {
		t.Fatalf("%d messages, want 30", n)
	}
}

func TestGroupCommitBatches(t *testing.T) {
	s := openTemp(t)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := s.Enqueue(context.Background(), newMsg("b@example.org"), strings.NewReader("x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Writes < 400 {
		t.Fatalf("writes = %d", st.Writes)
	}
	if st.Commits >= st.Writes {
		t.Fatalf("no batching: %d commits for %d writes", st.Commits, st.Writes)
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), m, strings.NewReader("kept")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Enqueue(context.Background(), newMsg("x@example.org"), strings.NewReader("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("enqueue after close: %v", err)
	}
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	list, err := ro.List()
	if err != nil || len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("list after reopen: %v %v", list, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()

	path := filepath.Join(dir, "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(path, Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Errorf("second open: %v, want ErrLocked", err)
	}

	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{}); !errors.Is(err, ErrNotSpool) {
		t.Errorf("junk file: %v, want ErrNotSpool", err)
	}

	other := filepath.Join(dir, "other.db")
	db, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err })
	db.Close()
	if _, err := Open(other, Options{}); !errors.Is(err, ErrNotSpool) || !strings.Contains(err.Error(), "another program") {
		t.Errorf("foreign bbolt file: %v, want ErrNotSpool", err)
	}

	if _, err := Open(filepath.Join(dir, "missing.db"), Options{ReadOnly: true}); err == nil {
		t.Error("read-only open of a missing file succeeded")
	}
}

func TestCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	b, _ := os.ReadFile(path)
	// Scribble over both meta pages.
	for i := 16; i < 64; i++ {
		b[i] ^= 0xff
		b[4096+i] ^= 0xff
	}
	os.WriteFile(path, b, 0o600)
	_, err = Open(path, Options{})
	if err == nil || !(errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotSpool)) {
		t.Fatalf("corrupt file: %v", err)
	}
}

func TestBackupAndCompact(t *testing.T) {
	s := openTemp(t)
	m := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), m, strings.NewReader("backup me")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	f, _ := os.Create(dst)
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cp := filepath.Join(t.TempDir(), "compact.db")
	if err := s.CompactTo(cp); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dst, cp} {
		c, err := Open(p, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Get(m.ID); err != nil || got.From != m.From {
			t.Fatalf("%s: %v", p, err)
		}
		c.Close()
	}
}

func TestNewIDUniqueAndOrdered(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	base := time.Now()
	for i := 0; i < 10000; i++ {
		id := NewID(base.Add(time.Duration(i) * time.Microsecond))
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		if id <= prev {
			t.Fatalf("ids not ordered: %s after %s", id, prev)
		}
		seen[id], prev = true, id
	}
}

func TestState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.State("rate/gmail"); err != nil || v != nil {
		t.Fatalf("unset state = %q, %v", v, err)
	}
	if err := s.SetState("rate/gmail", []byte(`["2026-11-26T12:00:00Z"]`)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.State("rate/gmail"); err != nil || string(v) != `["2026-11-26T12:00:00Z"]` {
		t.Fatalf("state after reopen = %q, %v", v, err)
	}
	if n, _ := s.Count(); n != 0 {
		t.Fatalf("state shows up as %d messages", n)
	}
}
