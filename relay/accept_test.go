package relay

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/spool"
)

// acTimeout is a body whose reads time out after the bytes it has.
type acTimeout struct{ r io.Reader }

func (b *acTimeout) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

// acStore counts the messages it was handed whole.
type acStore struct{ n int }

func (s *acStore) Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error {
	_, err := io.Copy(io.Discard, body)
	if err == nil {
		s.n++
	}
	return err
}

// acSession is a session of a unix-socket client with its envelope given.
func acSession(t *testing.T, store Store) *session {
	t.Helper()
	cfg := dlvConfig(t, t.TempDir(), mdHCL)
	in := &Inbound{cfg: cfg, store: store, log: dlvLogger(t), now: time.Now, policy: NewPolicy(cfg)}
	from := "app@example.org"
	return &session{in: in, l: newListener(nil, cfg.Listen[0], 10, cfg.Hostname), peer: peer{unix: true, uid: 65534, user: "nobody"},
		trusted: true, from: &from, rcpts: []spool.Recipient{{Address: "bob@example.com", Status: spool.Pending}}}
}

// TestAcceptCutBodyIsTemporary: a body that ends in an error (a timeout,
// a hang-up), in its header section or after it, stores nothing and
// answers 451: a client still listening must keep the message and send
// it again, never take a 5yz and bounce it.
func TestAcceptCutBodyIsTemporary(t *testing.T) {
	for _, body := range []string{"Subject: cut in the hea", "Subject: x\r\n\r\ncut in the bo"} {
		store := &acStore{}
		s := acSession(t, store)
		err := s.Data(&acTimeout{strings.NewReader(body)})
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 4, 2}) {
			t.Errorf("%q: Data = %v, want 451 4.4.2", body, err)
		}
		if store.n > 0 {
			t.Errorf("%q: the spool was handed a whole message", body)
		}
	}
	// The real spool stores nothing of it either.
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	s := acSession(t, sp)
	s.Data(&acTimeout{strings.NewReader("Subject: x\r\n\r\n" + strings.Repeat("b", 3000))})
	if list, err := sp.List(); err != nil || len(list) != 0 {
		t.Errorf("spool holds %d messages (%v), want none", len(list), err)
	}
}
