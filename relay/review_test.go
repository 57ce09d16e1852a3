package relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/maildrop"
	"github.com/outbox-mta/outbox/spool"
)

// rvPipelined sends one PIPELINING group (MAIL, RCPT, DATA in one write,
// as RFC 2920 allows), reads its three replies, then sends body and
// returns the stored body.
func rvPipelined(t *testing.T, ir *inRelay, c *inClient, from, to, body string) string {
	t.Helper()
	if _, err := io.WriteString(c.conn, "MAIL FROM:<"+from+">\r\nRCPT TO:<"+to+">\r\nDATA\r\n"); err != nil {
		t.Fatal(err)
	}
	c.want(c.read(), 250, "")
	c.want(c.read(), 250, "")
	c.want(c.read(), 354, "")
	w := c.tp.DotWriter()
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, stored := ir.stored(t, inQueuedID(t, c.read()))
	return stored
}

// TestReviewPipelinedBodyUntouched: the bare-name qualifier of local
// clients must leave a message body alone when the client pipelines MAIL,
// RCPT and DATA. It took the reply to MAIL for the reply to DATA, lost
// track of the body and rewrote body lines that look like commands.
func TestReviewPipelinedBodyUntouched(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `aliases {
  root = "ops@example.com"
}`})
	c := inGreeted(t, "tcp", ir.tcp)
	c.want(c.cmd("EHLO client.test"), 250, "")
	body := "Subject: transcript\r\n\r\nThe session went:\r\nMAIL FROM:<cron>\r\nRCPT TO:<root>\r\nDATA\r\nRCPT TO:<root>\r\nend\r\n"
	for i := 0; i < 2; i++ {
		stored := rvPipelined(t, ir, c, "app@example.org", "bob@example.com", body)
		if _, got, _ := strings.Cut(stored, "\r\n\r\n"); got != "The session went:\r\nMAIL FROM:<cron>\r\nRCPT TO:<root>\r\nDATA\r\nRCPT TO:<root>\r\nend\r\n" {
			t.Fatalf("transaction %d: body changed: %q", i+1, got)
		}
	}
	// Bare names still work in the envelope after that.
	c.want(c.cmd("MAIL FROM:<cron>"), 250, "")
	c.want(c.cmd("RCPT TO:<root>"), 250, "")
}

// TestReviewMaildropKeepsFileOnStorageError: a maildrop file whose import
// fails for a local, temporary reason (the spool cannot write) stays in
// the maildrop for the next round; only a file that can never be accepted
// goes to rejected/. The shim already told its caller the mail was stored.
func TestReviewMaildropKeepsFileOnStorageError(t *testing.T) {
	dir := t.TempDir()
	cfg := dlvConfig(t, dir, rvMaildropHCL)
	if err := os.MkdirAll(cfg.Spool.Maildrop, 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	// A read-only spool stands for one that cannot write (a full disk).
	ro, err := spool.Open(cfg.Spool.Path, spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	clock := newDlvClock()
	r := &Relay{cfg: cfg, log: dlvLogger(t), now: clock.Now, spool: ro,
		in: &Inbound{cfg: cfg, store: ro, log: dlvLogger(t), now: clock.Now, policy: NewPolicy(cfg)}}
	r.sched = NewScheduler(ro, cfg, NewRouter(cfg, nil), r.log, clock.Now)
	name, err := maildrop.Write(cfg.Spool.Maildrop, &maildrop.Envelope{From: "app@example.org", Recipients: []string{"bob@example.com"}, UID: os.Getuid()},
		strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := r.importMaildrop(context.Background()); n != 0 {
		t.Fatalf("imported %d into a spool that cannot write", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.Spool.Maildrop, name)); err != nil {
		t.Fatalf("maildrop file gone after a temporary storage error: %v (rejected/ holds it: %v)", err,
			rvExists(filepath.Join(cfg.Spool.Maildrop, "rejected", name)))
	}
}

func rvExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

const rvMaildropHCL = `
hostname = "relay.test"
listen { address = "127.0.0.1:2525" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
`

// TestReviewHeaderNearLimitStaysDeliverable: a header section just under
// the inbound limit grows by our Received:, Message-ID: and Date: fields.
// If such a message is accepted, the From: rewriting of an upstream with
// from_header = "rewrite" must still be able to read its header section;
// otherwise the message is deferred on every attempt and never delivered.
func TestReviewHeaderNearLimitStaysDeliverable(t *testing.T) {
	ir := inStartRelay(t, inSetup{})
	c := inGreeted(t, "tcp", ir.tcp)
	c.want(c.cmd("EHLO client.test"), 250, "")
	var hdr strings.Builder
	hdr.WriteString("From: app@example.org\r\nTo: bob@example.com\r\n")
	line := "X-Filler: " + strings.Repeat("x", 990) + "\r\n"
	for hdr.Len()+len(line)+2+40 < maxHeaderSection {
		hdr.WriteString(line)
	}
	for hdr.Len()+2 < maxHeaderSection-40 {
		hdr.WriteString("X-F: y\r\n")
	}
	c.ok("MAIL FROM:<app@example.org>")
	c.ok("RCPT TO:<bob@example.com>")
	rep := c.data(hdr.String() + "\r\nbody\r\n")
	if rep.code != 250 {
		if rep.code != 552 {
			t.Fatalf("reply %v, want 250 or 552", rep)
		}
		return // refused at the door: the client knows
	}
	id := inQueuedID(t, rep)
	rc, err := rewriteFrom(ir.r.Spool(), id, "relay@example.net")
	if err != nil {
		t.Fatalf("accepted message cannot have its From rewritten: %v", err)
	}
	rc.Close()
}

// rvMemStore is a Store that keeps messages in memory.
type rvMemStore struct{ n int }

func (s *rvMemStore) Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error {
	_, err := io.Copy(io.Discard, body)
	s.n++
	return err
}

// TestReviewDrainKeepsReplyOfCommittedMessage: a shutdown that drains the
// listener right after DATA committed the message, before the server wrote
// the 250, must let that reply out. Closing there tells the client the
// mail failed although it is queued: it sends it again (a duplicate) or,
// for the shim, reports a failure for a stored message.
func TestReviewDrainKeepsReplyOfCommittedMessage(t *testing.T) {
	cfg := dlvConfig(t, t.TempDir(), rvMaildropHCL)
	store := &rvMemStore{}
	in := &Inbound{cfg: cfg, store: store, log: dlvLogger(t), now: time.Now, policy: NewPolicy(cfg)}
	l := newListener(nil, cfg.Listen[0], 10, cfg.Hostname)
	server, client := net.Pipe()
	defer client.Close()
	tc := &trackedConn{Conn: server, l: l, peer: peer{unix: true, uid: 0}}
	l.conns[tc] = struct{}{}
	from := "app@example.org"
	s := &session{in: in, l: l, tc: tc, peer: tc.peer, trusted: true, from: &from,
		rcpts: []spool.Recipient{{Address: "bob@example.com", Status: spool.Pending}}}

	err := s.Data(strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 250 || store.n != 1 {
		t.Fatalf("Data: %v (stored %d)", err, store.n)
	}
	// Shutdown drains between Data's return and the server's reply.
	l.drain()
	got := make(chan string, 1)
	go func() {
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(client).ReadString('\n')
		got <- line
	}()
	tc.Write([]byte("250 2.0.0 OK queued\r\n"))
	if line := <-got; !strings.HasPrefix(line, "250 ") {
		t.Fatalf("client read %q, want the 250 for its committed message", line)
	}
	// And the connection then closes.
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after the last reply")
	}
}

// TestReviewCoolingEntryOfGoneMessageExpires: a message that cooled down
// (its results could not be written) and then left the due index (deleted
// or held by the operator) must not keep the scheduler waking every 10 ms
// once its cooling time has passed.
func TestReviewCoolingEntryOfGoneMessageExpires(t *testing.T) {
	h := schedStart(t, "", "")
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"))
	m := h.get(id)
	h.s.coolDown(m, h.clock.Now())
	if _, err := h.sp.Update(id, func(m *spool.Message) error { m.Held = true; return nil }); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Hour)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if wait := h.s.dispatch(ctx, ctx); wait < time.Minute {
			t.Fatalf("round %d: scheduler sleeps only %v with nothing due", i, wait)
		}
	}
}
