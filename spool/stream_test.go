package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// cutReader gives data, then err instead of io.EOF: a connection that
// closed before the end of the message.
type cutReader struct {
	r   io.Reader
	err error
}

func (c *cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		err = c.err
	}
	return n, err
}

// bodyKeys counts the chunks and pending marks in the file.
func bodyKeys(t *testing.T, s *Spool) (chunks, pending int) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		chunks = 0
		tx.Bucket(bucketBody).ForEach(func(_, _ []byte) error { chunks++; return nil })
		if b := tx.Bucket(bucketPending); b != nil {
			pending = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chunks, pending
}

// TestEnqueueUnexpectedEOFStoresNothing: io.ErrUnexpectedEOF is what an
// SMTP DATA reader returns when the client hangs up before the final dot;
// it is not the end of a message, whatever the body's size.
func TestEnqueueUnexpectedEOFStoresNothing(t *testing.T) {
	for _, size := range []int{100, chunkSize, 3*chunkSize + 17} {
		s := openTemp(t)
		body := bytes.Repeat([]byte("x"), size)
		err := s.Enqueue(context.Background(), newMsg("b@example.org"), &cutReader{r: bytes.NewReader(body), err: io.ErrUnexpectedEOF})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%d bytes then ErrUnexpectedEOF: Enqueue returned %v", size, err)
		}
		if n, _ := s.Count(); n != 0 {
			t.Errorf("%d bytes then ErrUnexpectedEOF: %d messages stored", size, n)
		}
		if c, p := bodyKeys(t, s); c != 0 || p != 0 {
			t.Errorf("%d bytes then ErrUnexpectedEOF: %d chunks and %d pending marks left", size, c, p)
		}
	}
}

// TestEnqueueStreams: a large body reaches the file chunk by chunk while
// it is read, not all at once at the end.
func TestEnqueueStreams(t *testing.T) {
	s := openTemp(t)
	var seen []int
	r := &probeReader{left: 5*chunkSize + 10, probe: func() {
		c, _ := bodyKeys(t, s)
		seen = append(seen, c)
	}}
	m := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), m, r); err != nil {
		t.Fatal(err)
	}
	if m.Size != 5*chunkSize+10 {
		t.Fatalf("size %d", m.Size)
	}
	if max := seen[len(seen)-1]; max < 4 {
		t.Fatalf("chunks on disk while the body was read: %v; want the body streamed", seen)
	}
	if c, p := bodyKeys(t, s); c != 6 || p != 0 {
		t.Fatalf("%d chunks, %d pending marks after the commit; want 6 and 0", c, p)
	}
	if got := readBody(t, s, m.ID); len(got) != int(m.Size) {
		t.Fatalf("body %d bytes", len(got))
	}
}

// probeReader yields left bytes of 'y', calling probe before each read.
type probeReader struct {
	left  int
	probe func()
}

func (p *probeReader) Read(b []byte) (int, error) {
	p.probe()
	if p.left == 0 {
		return 0, io.EOF
	}
	n := min(len(b), p.left, 64<<10)
	for i := range n {
		b[i] = 'y'
	}
	p.left -= n
	return n, nil
}

// TestOpenDropsUnfinishedBodies: chunks of a body a crash interrupted go
// at the next Open; whole messages stay.
func TestOpenDropsUnfinishedBodies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), m, bytes.NewReader(bytes.Repeat([]byte("z"), 2*chunkSize+1))); err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of a large body leaves.
	err = s.write(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPending).Put([]byte("HALF"), nil); err != nil {
			return err
		}
		for i := range 3 {
			if err := putChunk(tx, bodyKey("HALF", i), make([]byte, 100)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c, p := bodyKeys(t, s); c != 3 || p != 0 {
		t.Fatalf("after reopening: %d chunks, %d pending marks; want the whole message's 3 and none", c, p)
	}
	if got := readBody(t, s, m.ID); len(got) != 2*chunkSize+1 {
		t.Fatalf("whole message's body: %d bytes", len(got))
	}
}

// TestSchema1Bodies: a spool written by version 1 (every chunk a plain
// value) is read, upgraded on a writable open, and its messages deleted
// whole, next to streamed ones.
func TestSchema1Bodies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := newMsg("b@example.org")
	old.ID = "OLD"
	body := bytes.Repeat([]byte("o"), 2*chunkSize+5)
	err = s.write(func(tx *bolt.Tx) error {
		var v [4]byte
		v[3] = 1
		if err := tx.Bucket(bucketMeta).Put(keySchema, v[:]); err != nil {
			return err
		}
		for i := 0; i*chunkSize < len(body); i++ {
			if err := tx.Bucket(bucketBody).Put(bodyKey("OLD", i), body[i*chunkSize:min(len(body), (i+1)*chunkSize)]); err != nil {
				return err
			}
		}
		old.Size = int64(len(body))
		rec, _ := json.Marshal(old)
		return tx.Bucket(bucketMsg).Put([]byte("OLD"), rec)
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(path, Options{ReadOnly: true}); err != nil {
		t.Fatalf("read-only open of a version 1 spool: %v", err)
	}
	if got := readBody(t, s, "OLD"); !bytes.Equal(got, body) {
		t.Fatalf("version 1 body: %d bytes, want %d", len(got), len(body))
	}
	s.Close()
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var version uint32
	s.db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint32(tx.Bucket(bucketMeta).Get(keySchema))
		return nil
	})
	if version != SchemaVersion {
		t.Errorf("schema %d after a writable open, want %d", version, SchemaVersion)
	}
	streamed := newMsg("b@example.org")
	if err := s.Enqueue(context.Background(), streamed, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if got := readBody(t, s, streamed.ID); !bytes.Equal(got, body) {
		t.Fatalf("streamed body: %d bytes, want %d", len(got), len(body))
	}
	for _, id := range []string{"OLD", streamed.ID} {
		if err := s.Delete(id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
	}
	if c, p := bodyKeys(t, s); c != 0 || p != 0 {
		t.Fatalf("%d chunks, %d pending marks after deleting both", c, p)
	}
}

// TestDamagedPages: bbolt panics on damaged pages; the spool returns
// ErrCorrupt instead: from a writable Open when the pages it reads are
// damaged (an open reads the stored freelist, not every page), else from
// the first read or write that meets one, and from reads of a read-only
// open. Nothing takes the process down.
func TestDamagedPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		size := 2000
		if i%100 == 0 {
			size = chunkSize + 100
		}
		if err := s.Enqueue(context.Background(), newMsg("b@example.org"), bytes.NewReader(make([]byte, size))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Past the meta pages, every third page gets a garbage header.
	for off := 4 * 4096; off+4096 <= len(b); off += 3 * 4096 {
		for i := range 64 {
			b[off+i] = byte(off>>12 + i*7)
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if w, err := Open(path, Options{}); err == nil {
		if _, err := w.List(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("List after a writable open: %v, want ErrCorrupt", err)
		}
		select {
		case err := <-w.Damaged():
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Damaged: %v, want ErrCorrupt", err)
			}
		default:
			t.Error("Damaged reported nothing after a read met a damaged page")
		}
		// A write that meets a damaged page fails and rolls back.
		for i := 0; i < 20; i++ {
			err := w.Enqueue(context.Background(), newMsg("b@example.org"), bytes.NewReader(make([]byte, 2000)))
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Errorf("enqueue: %v, want nil or ErrCorrupt", err)
			}
		}
		w.Close()
	} else if !errors.Is(err, ErrCorrupt) {
		t.Errorf("writable open: %v, want ErrCorrupt", err)
	}
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("read-only open: %v, want ErrCorrupt", err)
		}
		return
	}
	defer ro.Close()
	if _, err := ro.List(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("List: %v, want ErrCorrupt", err)
	}
}
