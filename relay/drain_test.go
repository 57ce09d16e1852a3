package relay

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/outbox-mta/outbox/spool"
)

type memStore struct{ n int }

func (s *memStore) Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error {
	_, err := io.Copy(io.Discard, body)
	s.n++
	return err
}

// TestDrainKeepsReplyOfCommittedMessage: a shutdown that drains the
// listener right after DATA committed the message, before the server wrote
// the 250, must let that reply out. Closing there tells the client the
// mail failed although it is queued: it sends it again (a duplicate) or,
// for the shim, reports a failure for a stored message.
func TestDrainKeepsReplyOfCommittedMessage(t *testing.T) {
	cfg := dlvConfig(t, t.TempDir(), minimalHCL)
	store := &memStore{}
	in := &Inbound{store: store, log: dlvLogger(t), now: time.Now, live: testLive(cfg, nil)}
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
