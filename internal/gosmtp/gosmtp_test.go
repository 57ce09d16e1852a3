package gosmtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/testpki"
)

// The tests here check both halves of each workaround: that go-smtp still
// has the limitation (so the workaround is still needed: when one of
// these fails after an upgrade, drop the workaround), and that the
// workaround answers it.

// tSession records what go-smtp hands the backend.
type tSession struct {
	rcpts []string
	data  func(r io.Reader) error
}

func (s *tSession) Mail(from string, opts *smtp.MailOptions) error { return nil }
func (s *tSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *tSession) Data(r io.Reader) error {
	if s.data != nil {
		return s.data(r)
	}
	_, err := io.Copy(io.Discard, r)
	return err
}
func (s *tSession) Reset()        {}
func (s *tSession) Logout() error { return nil }

// tServe runs a server for sess over an in-memory connection, which wrap
// may wrap on the server's side, and returns the client's end, greeted
// and introduced with EHLO.
func tServe(t *testing.T, sess *tSession, wrap func(net.Conn) net.Conn) *textproto.Conn {
	t.Helper()
	server, client := net.Pipe()
	var sc net.Conn = server
	if wrap != nil {
		sc = wrap(server)
	}
	srv := NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return sess, nil }),
		ServerConfig{Domain: "relay.test", ReadTimeout: 10 * time.Second})
	done := make(chan error, 1)
	go func() { done <- ServeConn(srv, sc) }()
	t.Cleanup(func() {
		client.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeConn: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeConn did not return after the client left")
		}
	})
	client.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(client)
	tExpect(t, c, 220)
	tCmd(t, c, 250, "EHLO client.test")
	return c
}

func tExpect(t *testing.T, c *textproto.Conn, code int) string {
	t.Helper()
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		t.Fatalf("want %d: %v", code, err)
	}
	return msg
}

func tCmd(t *testing.T, c *textproto.Conn, code int, cmd string) string {
	t.Helper()
	if err := c.PrintfLine("%s", cmd); err != nil {
		t.Fatal(err)
	}
	return tExpect(t, c, code)
}

// replyTo returns the reply to a one-recipient transaction whose Data
// returns err.
func replyTo(t *testing.T, err error) (int, string) {
	t.Helper()
	c := tServe(t, &tSession{data: func(r io.Reader) error { io.Copy(io.Discard, r); return err }}, nil)
	tCmd(t, c, 250, "MAIL FROM:<a@example.org>")
	tCmd(t, c, 250, "RCPT TO:<b@example.org>")
	tCmd(t, c, 354, "DATA")
	c.PrintfLine("Subject: x\r\n\r\nhi\r\n.")
	code, msg, _ := c.ReadResponse(0)
	return code, msg
}

func TestQueuedReply(t *testing.T) {
	// Limitation: a stored message gets a fixed text, no queue ID.
	if code, msg := replyTo(t, nil); code != 250 || msg != "2.0.0 OK: queued" {
		t.Errorf("nil from Data: %d %q; if go-smtp now lets Data choose its 250, drop Queued", code, msg)
	}
	if code, msg := replyTo(t, Queued("ABC123")); code != 250 || msg != "2.0.0 OK queued as ABC123" {
		t.Errorf("Queued: %d %q", code, msg)
	}
}

func TestReplyUnwraps(t *testing.T) {
	se := &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "disk full"}
	wrapped := fmt.Errorf("storing: %w", se)
	// Limitation: a wrapped reply loses its code.
	if code, _ := replyTo(t, wrapped); code != 554 {
		t.Errorf("wrapped reply written as %d; if go-smtp now unwraps replies, drop Reply", code)
	}
	if code, msg := replyTo(t, Reply(wrapped)); code != 452 || msg != "4.3.1 disk full" {
		t.Errorf("Reply: %d %q", code, msg)
	}
	if Reply(errors.New("plain")) != nil {
		t.Error("Reply found a reply in a plain error")
	}
}

// qualified wraps a connection with a Qualifier, as the daemon's local
// listeners and `sendmail -bs` do.
type qualified struct {
	net.Conn
	q *Qualifier
}

func (c *qualified) Read(p []byte) (int, error) { return c.q.Read(c.Conn, p) }
func (c *qualified) Write(p []byte) (int, error) {
	c.q.Wrote(p)
	return c.Conn.Write(p)
}

func TestBareNameNeedsQualifier(t *testing.T) {
	// Limitation: go-smtp refuses a bare name before the Session sees it.
	sess := &tSession{}
	c := tServe(t, sess, nil)
	tCmd(t, c, 250, "MAIL FROM:<a@example.org>")
	if err := c.PrintfLine("RCPT TO:<root>"); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := c.ReadResponse(0); code != 501 {
		t.Errorf("bare RCPT TO answered %d; if go-smtp now passes bare names on, drop the Qualifier", code)
	}

	sess = &tSession{}
	c = tServe(t, sess, func(nc net.Conn) net.Conn { return &qualified{Conn: nc, q: NewQualifier("relay.test")} })
	tCmd(t, c, 250, "MAIL FROM:<a@example.org>")
	tCmd(t, c, 250, "RCPT TO:<root>")
	if len(sess.rcpts) != 1 || sess.rcpts[0] != "root@relay.test" {
		t.Errorf("session got %q, want root@relay.test", sess.rcpts)
	}
}

// failWatch records a failed read of its connection.
type failWatch struct {
	net.Conn
	failed atomic.Bool
}

func (c *failWatch) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// TestShortLastChunk: a client that announces "BDAT 100 LAST" and hangs up
// after 10 bytes has not sent the message.
func TestShortLastChunk(t *testing.T) {
	for _, watch := range []bool{false, true} {
		var fw *failWatch
		got := make(chan error, 1)
		sess := &tSession{data: func(r io.Reader) error {
			if watch {
				r = WholeBody(r, fw.failed.Load)
			}
			_, err := io.Copy(io.Discard, r)
			got <- err
			return err
		}}
		c := tServe(t, sess, func(nc net.Conn) net.Conn { fw = &failWatch{Conn: nc}; return fw })
		tCmd(t, c, 250, "MAIL FROM:<a@example.org>")
		tCmd(t, c, 250, "RCPT TO:<b@example.org>")
		c.PrintfLine("BDAT 100 LAST")
		c.W.WriteString("Subject: ")
		c.W.Flush()
		c.Close()
		var err error
		select {
		case err = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("Data never saw the end of the body")
		}
		switch {
		case !watch && err != nil:
			t.Errorf("without WholeBody the short chunk ended with %v; if go-smtp now reports it, drop WholeBody", err)
		case watch && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("WholeBody: body ended with %v, want io.ErrUnexpectedEOF", err)
		}
	}
}

func TestWholeBodyPassesCompleteBody(t *testing.T) {
	b, err := io.ReadAll(WholeBody(strings.NewReader("hello"), func() bool { return false }))
	if err != nil || string(b) != "hello" {
		t.Fatalf("%q, %v", b, err)
	}
}

// TestShutdownWaitsForIdleSessions: the limitation Drain answers.
func TestShutdownWaitsForIdleSessions(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &tSession{}, nil }),
		ServerConfig{Domain: "relay.test"})
	go srv.Serve(l)
	defer srv.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewConn(c)
	tExpect(t, tp, 220)
	tCmd(t, tp, 250, "EHLO client.test") // idle from here on
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with an idle session = %v; if go-smtp now closes idle sessions itself, Drain can shrink", err)
	}
}

func TestDrain(t *testing.T) {
	var d Drain
	if !d.Drain() {
		t.Error("an idle connection may not close at once")
	}
	if !d.Wrote() {
		t.Error("a drained idle connection stays open after a write")
	}

	d = Drain{}
	d.BeginData()
	d.EndData() // the message is stored; its 250 is not written yet
	if d.Drain() {
		t.Error("a drain may close the connection before the reply to DATA")
	}
	if !d.Wrote() {
		t.Error("the connection stays open after the reply to DATA")
	}

	d = Drain{}
	d.BeginData()
	d.Drain()
	if d.Wrote() {
		t.Error("a write inside DATA (a BDAT chunk's 250) closed the connection")
	}
}

func TestUnwrap(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	fw := &failWatch{Conn: a}
	tc := tls.Server(tls.Client(fw, &tls.Config{}), &tls.Config{})
	if got := Unwrap(tc); got != fw {
		t.Errorf("Unwrap = %T, want the connection under both TLS layers", got)
	}
	if got := Unwrap(fw); got != fw {
		t.Errorf("Unwrap of a plain connection = %T", got)
	}
}

func TestReplyError(t *testing.T) {
	for _, c := range []struct {
		code int
		msg  string
		enh  smtp.EnhancedCode
		text string
	}{
		{550, "5.1.1 no such user", smtp.EnhancedCode{5, 1, 1}, "no such user"},
		{421, "service down", smtp.EnhancedCode{}, "service down"},
		{250, "2.0.0 first\n2.0.0 second", smtp.EnhancedCode{2, 0, 0}, "first\nsecond"},
		{554, "5.x.1 odd", smtp.EnhancedCode{}, "5.x.1 odd"},
	} {
		se := ReplyError(c.code, c.msg)
		if se.Code != c.code || se.EnhancedCode != c.enh || se.Message != c.text {
			t.Errorf("ReplyError(%d, %q) = %d %v %q", c.code, c.msg, se.Code, se.EnhancedCode, se.Message)
		}
	}
}

// TestClientAfterStartTLS: the client introduces itself with our name,
// before and after STARTTLS, which go-smtp's own STARTTLS cannot.
func TestClientAfterStartTLS(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	cert := ca.ServerCert(t, "mx.test")
	helos := make(chan string, 4)
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		helos <- c.Hostname()
		return &tSession{}, nil
	})
	ehlo := func(dial func(net.Conn) (*smtp.Client, error)) string {
		t.Helper()
		server, client := net.Pipe()
		srv := NewServer(be, ServerConfig{Domain: "mx.test", TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
		go ServeConn(srv, server)
		defer client.Close()
		client.SetDeadline(time.Now().Add(10 * time.Second))
		c, err := dial(client)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Noop(); err != nil {
			t.Fatal(err)
		}
		return <-helos
	}
	tlsConf := &tls.Config{RootCAs: ca.Pool, ServerName: "mx.test"}

	// Limitation: go-smtp's STARTTLS says EHLO localhost (a scripted
	// server reads it, then refuses STARTTLS).
	var sawFirst string
	server, client := net.Pipe()
	go func() {
		defer server.Close()
		br := bufio.NewReader(server)
		fmt.Fprintf(server, "220 mx.test ready\r\n")
		line, _ := br.ReadString('\n')
		sawFirst = strings.TrimSpace(line)
		fmt.Fprintf(server, "250-mx.test\r\n250 STARTTLS\r\n")
		br.ReadString('\n')
		fmt.Fprintf(server, "454 4.7.0 not now\r\n")
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := smtp.NewClientStartTLS(client, tlsConf); err == nil {
		t.Fatal("STARTTLS refused, yet the client went on")
	}
	client.Close()
	if sawFirst != "EHLO localhost" {
		t.Errorf("go-smtp's STARTTLS said %q; if it can now say our name, drop NewClientAfterStartTLS", sawFirst)
	}

	got := ehlo(func(nc net.Conn) (*smtp.Client, error) {
		tp := textproto.NewConn(nc)
		if _, _, err := tp.ReadResponse(220); err != nil {
			return nil, err
		}
		tp.PrintfLine("EHLO outbox.test")
		if _, _, err := tp.ReadResponse(250); err != nil {
			return nil, err
		}
		tp.PrintfLine("STARTTLS")
		if _, _, err := tp.ReadResponse(220); err != nil {
			return nil, err
		}
		<-helos // the session before TLS
		tc := tls.Client(nc, tlsConf)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c := NewClientAfterStartTLS(tc, "mx.test")
		return c, c.Hello("outbox.test")
	})
	if got != "outbox.test" {
		t.Errorf("after STARTTLS the client said EHLO %q, want outbox.test", got)
	}
}
