package spool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// TestBodyDeletedWhileReadingIsNotShortened: a body read chunk by chunk
// across transactions must not end cleanly when the message leaves the
// queue in the middle (an admin delete during delivery). A clean EOF there
// hands the upstream a truncated message, which it would accept with 250.
func TestBodyDeletedWhileReadingIsNotShortened(t *testing.T) {
	s := openTemp(t)
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), chunkSize/6) // three chunks
	m := newMsg("bob@example.org")
	if err := s.Enqueue(context.Background(), m, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Body(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(r, first); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(m.ID); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	got := len(first) + len(rest)
	if err == nil {
		t.Fatalf("body read to a clean EOF after %d of %d bytes: a truncated message would be delivered", got, len(body))
	}
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("error %v, want one wrapping ErrNotFound", err)
	}
}

// TestBodyReadAfterUpdateStaysWhole: an envelope update (a retry) during a
// read does not disturb the body.
func TestBodyReadAfterUpdateStaysWhole(t *testing.T) {
	s := openTemp(t)
	body := bytes.Repeat([]byte("x"), 2*chunkSize+17)
	m := newMsg("bob@example.org")
	if err := s.Enqueue(context.Background(), m, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	r, err := s.Body(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(m.ID, func(m *Message) error { m.Attempts++; return nil }); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(head, rest...), body) {
		t.Fatal("body changed")
	}
}
