package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/upstream"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// shortDir is a temporary folder with a path short enough for a unix
// socket, kept when the test fails.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "email")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test folder kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return dir
}

// startRelay runs the real daemon with a Maildir upstream and returns its
// configuration file and the Maildir's folder of new mail.
func startRelay(t *testing.T) (conf, maildir string) {
	t.Helper()
	dir := shortDir(t)
	conf = filepath.Join(dir, "relay.hcl")
	src := `hostname = "relay.test"
listen { address = "unix:var/submit.sock" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
upstream "capture" {
  type = "maildir"
  path = "md"
}
`
	if err := os.WriteFile(conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	r, err := relay.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), relay.Options{Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return conf, filepath.Join(dir, "md", "new")
}

// waitFile returns the contents of the first file to appear in dir.
func waitFile(t *testing.T, dir string) []byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if ents, _ := os.ReadDir(dir); len(ents) > 0 {
			b, err := os.ReadFile(filepath.Join(dir, ents[0].Name()))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no message arrived in %s", dir)
	return nil
}

// TestOutboxDeliversThroughDaemon submits the Chinese message to a running
// daemon, which delivers it into a Maildir, and checks the delivered copy
// with Python.
func TestOutboxDeliversThroughDaemon(t *testing.T) {
	conf, md := startRelay(t)
	o, err := NewOutbox(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Send(context.Background(), chinese(t)); err != nil {
		t.Fatal(err)
	}
	raw := waitFile(t, md)
	p := parsePython(t, raw)
	if p.Subject != cnSubject || len(p.Parts) != 7 {
		t.Fatalf("delivered copy: subject %q, %d parts", p.Subject, len(p.Parts))
	}
	if got := decode64(t, p.Parts[6].Data); !bytes.Equal(got, pdfBytes()) || deref(p.Parts[6].Filename) != cnFile {
		t.Error("the PDF did not arrive intact")
	}
	// The Maildir target records the envelope in X-Envelope-To fields
	// above the Received field; the message itself starts below it.
	if !bytes.Contains(raw, []byte("X-Envelope-To: <audit@example.net>")) {
		t.Error("the Bcc address was not an envelope recipient")
	}
	if _, msg, ok := bytes.Cut(raw, []byte("\nDate: ")); !ok || bytes.Contains(msg, []byte("audit@example.net")) {
		t.Error("the Bcc address reached the message")
	}
}

func TestOutboxRefusesInvalidMessage(t *testing.T) {
	o := &Outbox{Config: &config.Config{}}
	err := o.Send(context.Background(), &Message{From: "a@example.com", Subject: "x\nBcc: y@example.com"})
	var ve *ValidationError
	if !errors.As(err, &ve) || IsTemporary(err) {
		t.Fatalf("got %v", err)
	}
}

// fakeServer is an SMTP server on loopback that answers RCPT by the local
// part: "later" gets 450, "bad" 550; others are accepted.
type fakeServer struct {
	addr string
	mu   sync.Mutex
	data [][]byte
	user string // who authenticated, if anyone
	tls  bool   // whether the last message came over TLS
}

func startServer(t *testing.T) *fakeServer { return startServerTLS(t, nil) }

// startServerTLS offers STARTTLS with tc and then AUTH PLAIN for user
// "app" with password "s3cret".
func startServerTLS(t *testing.T, tc *tls.Config) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &fakeSession{f: f, tls: isTLS}, nil
	}))
	srv.Domain = "mx.test"
	srv.TLSConfig = tc
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return f
}

type fakeSession struct {
	f   *fakeServer
	tls bool
}

func (s *fakeSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *fakeSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "app" || pass != "s3cret" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.f.mu.Lock()
		s.f.user = user
		s.f.mu.Unlock()
		return nil
	}), nil
}

func (s *fakeSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *fakeSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "later@"):
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "try later"}
	case strings.HasPrefix(to, "bad@"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	s.f.mu.Lock()
	s.f.data = append(s.f.data, b)
	s.f.tls = s.tls
	s.f.mu.Unlock()
	return err
}
func (s *fakeSession) Reset()        {}
func (s *fakeSession) Logout() error { return nil }

func smtpSender(t *testing.T, addr string) *SMTP {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	s, err := NewSMTP(upstream.SMTPConfig{
		SMTP:     settings.SMTP{Name: "test", Host: host, Port: p, TLS: "none", Auth: "none"},
		Hostname: "client.test",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSMTPErrorsAreTyped checks that refusals come back per recipient and
// as temporary or permanent.
func TestSMTPErrorsAreTyped(t *testing.T) {
	f := startServer(t)
	s := smtpSender(t, f.addr)
	base := func(to ...string) *Message {
		return &Message{From: "app@example.com", To: to, Subject: "测试", Text: "x"}
	}
	if err := s.Send(context.Background(), chinese(t)); err != nil {
		t.Fatalf("send: %v", err)
	}
	f.mu.Lock()
	got := f.data[0]
	f.mu.Unlock()
	if p := parsePython(t, got); p.Subject != cnSubject {
		t.Errorf("the server got subject %q", p.Subject)
	}

	err := s.Send(context.Background(), base("ok@example.org", "later@example.org"))
	var e *Error
	if !errors.As(err, &e) || !IsTemporary(err) || len(e.Recipients) != 1 || e.Recipients[0].Address != "later@example.org" || e.Recipients[0].Code != 450 {
		t.Errorf("450: got %#v", err)
	}
	err = s.Send(context.Background(), base("later@example.org", "bad@example.org"))
	if !errors.As(err, &e) || IsTemporary(err) || len(e.Recipients) != 2 || e.Status != 69 {
		t.Errorf("550: got %#v", err)
	}
	if !strings.Contains(err.Error(), "5.1.1") {
		t.Errorf("error text %q", err)
	}
}

// TestSMTPUnreachableIsTemporary sends to a port nobody listens on.
func TestSMTPUnreachableIsTemporary(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := smtpSender(t, addr)
	err = s.Send(context.Background(), &Message{From: "a@example.com", To: []string{"b@example.org"}})
	var e *Error
	if !errors.As(err, &e) || !e.Temporary || e.Status != 75 {
		t.Fatalf("got %#v", err)
	}
}

// TestSMTPStartTLSAndAuth sends through a server that wants STARTTLS and
// AUTH, as providers do, with a wrong password first.
func TestSMTPStartTLSAndAuth(t *testing.T) {
	ca := testpki.NewCA(t, "email test CA")
	f := startServerTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t, "127.0.0.1")}})
	host, port, _ := net.SplitHostPort(f.addr)
	var p int
	fmt.Sscan(port, &p)
	sender := func(pass string) *SMTP {
		s, err := NewSMTP(upstream.SMTPConfig{
			SMTP:     settings.SMTP{Name: "tls", Host: host, Port: p, TLS: "starttls", Username: "app", Auth: "plain"},
			RootCAs:  ca.Pool,
			Password: func(context.Context) (string, error) { return pass, nil },
			Hostname: "client.test",
			Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	m := &Message{From: "app@example.com", To: []string{"b@example.org"}, Subject: "测试", Text: "x"}
	err := sender("wrong").Send(context.Background(), m)
	if !IsTemporary(err) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("refused AUTH: %v (temporary %v)", err, IsTemporary(err))
	}
	if err := sender("s3cret").Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.user != "app" || !f.tls || len(f.data) != 1 {
		t.Errorf("server saw user %q, tls %v, %d messages", f.user, f.tls, len(f.data))
	}
}
