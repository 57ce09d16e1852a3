package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/upstream/settings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// received is one message as the fake server saw it.
type received struct {
	From string
	To   []string
	Data []byte
	User string // authenticated user, "" if none
	TLS  bool
	Mail *smtp.MailOptions
	Rcpt []*smtp.RcptOptions
}

// fakeOptions sets up a fakeServer.
type fakeOptions struct {
	Mode     string // "starttls" (default), "tls", "plain" (no STARTTLS offered)
	Cert     *tls.Certificate
	User     string // accepted user; "" for no AUTH
	Password string
	DSN      bool
	UTF8     bool
	// Bearer, when set, offers XOAUTH2 and accepts a token when it
	// returns true.
	Bearer func(user, token string) bool
}

// fakeServer is a go-smtp server with scripted faults.
type fakeServer struct {
	t    testing.TB
	Host string
	Port int
	srv  *smtp.Server

	// release unblocks handlers that simulate a stuck server.
	release chan struct{}

	mu        sync.Mutex
	conns     int // TCP connections accepted
	current   int // TCP connections open
	maxOpen   int // most connections open at once
	authTries int
	msgs      []received

	// Faults, set by tests (under mu).
	mailErr  error
	rcptErr  map[string]error
	dataErr  error
	dropMail bool // close the connection at MAIL
	hangMail bool // never answer MAIL until released
}

func startFake(t testing.TB, ca *testpki.CA, o fakeOptions) *fakeServer {
	t.Helper()
	if o.Mode == "" {
		o.Mode = "starttls"
	}
	fs := &fakeServer{t: t, release: make(chan struct{}), rcptErr: map[string]error{}}
	srv := smtp.NewServer(smtp.BackendFunc(fs.newSession))
	srv.Domain = "fake.test"
	srv.AllowInsecureAuth = true // so a client that ignores STARTTLS would be tempted
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.EnableDSN = o.DSN
	srv.EnableSMTPUTF8 = o.UTF8
	srv.ErrorLog = nopLogger{}
	fakeUsers.Store(fs, o)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = countingListener{Listener: ln, fs: fs}
	var tlsConf *tls.Config
	if o.Mode != "plain" {
		cert := o.Cert
		if cert == nil {
			c := ca.ServerCert(t)
			cert = &c
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	switch o.Mode {
	case "starttls":
		srv.TLSConfig = tlsConf
	case "tls":
		ln = tls.NewListener(ln, tlsConf)
	}
	fs.srv = srv
	addr := ln.Addr().(*net.TCPAddr)
	fs.Host, fs.Port = "127.0.0.1", addr.Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		close(fs.release)
		srv.Close()
		<-done
	})
	return fs
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...interface{}) {}
func (nopLogger) Println(...interface{})        {}

// fakeUsers keeps each server's options away from the struct the tests lock.
var fakeUsers sync.Map

func (fs *fakeServer) opts() fakeOptions {
	v, _ := fakeUsers.Load(fs)
	return v.(fakeOptions)
}

func (fs *fakeServer) newSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &fakeSession{fs: fs, conn: c, tls: isTLS}, nil
}

// stats returns connections accepted, most open at once, AUTH attempts.
func (fs *fakeServer) stats() (conns, maxOpen, authTries int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.conns, fs.maxOpen, fs.authTries
}

func (fs *fakeServer) messages() []received {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]received(nil), fs.msgs...)
}

func (fs *fakeServer) set(f func(fs *fakeServer)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f(fs)
}

type fakeSession struct {
	fs   *fakeServer
	conn *smtp.Conn
	tls  bool
	user string
	cur  received
}

func (s *fakeSession) AuthMechanisms() []string {
	o := s.fs.opts()
	if o.Bearer != nil {
		return []string{"XOAUTH2"}
	}
	if o.User == "" {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *fakeSession) Auth(mech string) (sasl.Server, error) {
	s.fs.mu.Lock()
	s.fs.authTries++
	s.fs.mu.Unlock()
	o := s.fs.opts()
	check := func(user, pass string) error {
		if user != o.User || pass != o.Password {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(_, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	case "XOAUTH2":
		return &xoauth2Server{check: func(user, token string) bool {
			if o.Bearer(user, token) {
				s.user = user
				return true
			}
			return false
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of AUTH LOGIN, which go-sasl lacks.
type loginServer struct {
	check      func(user, pass string) error
	user       string
	step       int
	gotInitial bool
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch {
	case l.step == 1 && resp == nil:
		return []byte("Username:"), false, nil
	case l.user == "":
		l.user = string(resp)
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

func (s *fakeSession) Mail(from string, opts *smtp.MailOptions) error {
	s.fs.mu.Lock()
	err, drop, hang := s.fs.mailErr, s.fs.dropMail, s.fs.hangMail
	s.fs.mu.Unlock()
	if drop {
		s.conn.Conn().Close()
		return errors.New("dropped")
	}
	if hang {
		<-s.fs.release
		return errors.New("released")
	}
	if err != nil {
		return err
	}
	s.cur = received{From: from, Mail: opts, User: s.user, TLS: s.tls}
	return nil
}

func (s *fakeSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.fs.mu.Lock()
	err := s.fs.rcptErr[to]
	s.fs.mu.Unlock()
	if err != nil {
		return err
	}
	s.cur.To = append(s.cur.To, to)
	s.cur.Rcpt = append(s.cur.Rcpt, opts)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.fs.mu.Lock()
	defer s.fs.mu.Unlock()
	if s.fs.dataErr != nil {
		return s.fs.dataErr
	}
	s.cur.Data = b
	s.fs.msgs = append(s.fs.msgs, s.cur)
	return nil
}

func (s *fakeSession) Reset() { s.cur = received{} }

func (s *fakeSession) Logout() error { return nil }

// countingListener counts TCP connections, which go-smtp's sessions do not
// map to: a session starts again after STARTTLS.
type countingListener struct {
	net.Listener
	fs *fakeServer
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.fs.mu.Lock()
	l.fs.conns++
	l.fs.current++
	l.fs.maxOpen = max(l.fs.maxOpen, l.fs.current)
	l.fs.mu.Unlock()
	return &countedConn{Conn: c, fs: l.fs}, nil
}

type countedConn struct {
	net.Conn
	fs   *fakeServer
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.fs.mu.Lock()
		c.fs.current--
		c.fs.mu.Unlock()
	})
	return c.Conn.Close()
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func testLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func staticSecret(s string) SecretFunc {
	return func(context.Context) (string, error) { return s, nil }
}

// clientConfig returns a configuration that talks to fs and trusts ca.
func clientConfig(fs *fakeServer, ca *testpki.CA, logs *syncBuffer) SMTPConfig {
	o := fs.opts()
	cfg := SMTPConfig{
		SMTP:           settings.SMTP{Name: "test", Host: fs.Host, Port: fs.Port, TLS: settings.TLS(o.Mode), ConnectTimeout: 10 * time.Second, IdleTimeout: time.Minute},
		RootCAs:        ca.Pool,
		Hostname:       "client.test",
		CommandTimeout: 10 * time.Second,
		DataTimeout:    10 * time.Second,
		Logger:         testLogger(logs),
	}
	if o.Mode == "plain" {
		cfg.TLS = "starttls"
	}
	if o.User != "" {
		cfg.Username = o.User
		cfg.Password = staticSecret(o.Password)
	}
	return cfg
}

func newTarget(t testing.TB, cfg SMTPConfig) *SMTP {
	t.Helper()
	s, err := NewSMTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const testMessage = "From: a@example.com\r\nTo: b@example.net\r\nSubject: hello\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\nlast line\r\n"

func envelope(msg string, rcpts ...string) *Envelope {
	env := &Envelope{From: "a@example.com", Size: int64(len(msg)),
		Body: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil }}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, Rcpt{Address: r})
	}
	return env
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// xoauth2Server is the server side of XOAUTH2 as Gmail and Exchange
// Online run it: a refused token gets a 334 challenge with a JSON error,
// then 535 after the client's empty answer.
type xoauth2Server struct {
	check  func(user, token string) bool
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Username and Password not accepted"}
	}
	if resp == nil {
		return []byte{}, false, nil
	}
	var user, token string
	for _, f := range strings.Split(string(resp), "\x01") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(f, "auth=Bearer "); ok {
			token = v
		}
	}
	if x.check(user, token) {
		return nil, true, nil
	}
	x.failed = true
	return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
}
