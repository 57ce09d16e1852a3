package relay

// The upstream harness: an in-test SMTP server that requires AUTH and
// records what it receives.

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/testpki"
)

// dlvReceived is one message as the test upstream saw it.
type dlvReceived struct {
	From string
	To   []string
	Data []byte
	User string // authenticated user
	TLS  bool   // the session was over TLS when MAIL came
}

// dlvUpstream is an in-test SMTP server that requires AUTH PLAIN before
// MAIL, offering STARTTLS when it has a certificate.
type dlvUpstream struct {
	Host string
	Port int
	user string
	pass string

	mu        sync.Mutex
	msgs      []dlvReceived
	authTries int
	raw       bytes.Buffer // everything clients sent
}

// dlvStartUpstream starts the server; ca nil means no STARTTLS offered
// (AUTH is then offered in clear, to tempt a careless client).
func dlvStartUpstream(t testing.TB, ca *testpki.CA, user, pass string) *dlvUpstream {
	t.Helper()
	u := &dlvUpstream{user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		return &dlvUpSession{u: u, tls: isTLS}, nil
	}))
	srv.Domain = "upstream.test"
	srv.AllowInsecureAuth = ca == nil
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.ErrorLog = dlvNopLogger{}
	if ca != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t)}}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.Host, u.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(dlvRecListener{ln, u}) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return u
}

func (u *dlvUpstream) messages() []dlvReceived {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]dlvReceived(nil), u.msgs...)
}

func (u *dlvUpstream) rawInput() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return bytes.Clone(u.raw.Bytes())
}

type dlvNopLogger struct{}

func (dlvNopLogger) Printf(string, ...any) {}
func (dlvNopLogger) Println(...any)        {}

// dlvRecListener records what clients send, before any TLS.
type dlvRecListener struct {
	net.Listener
	u *dlvUpstream
}

func (l dlvRecListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return dlvRecConn{c, l.u}, nil
}

type dlvRecConn struct {
	net.Conn
	u *dlvUpstream
}

func (c dlvRecConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.u.mu.Lock()
	c.u.raw.Write(p[:n])
	c.u.mu.Unlock()
	return n, err
}

type dlvUpSession struct {
	u    *dlvUpstream
	tls  bool
	user string
	cur  dlvReceived
}

func (s *dlvUpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *dlvUpSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	s.u.mu.Lock()
	s.u.authTries++
	s.u.mu.Unlock()
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.u.user || pass != s.u.pass {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *dlvUpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.cur = dlvReceived{From: from, User: s.user, TLS: s.tls}
	return nil
}

func (s *dlvUpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *dlvUpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.u.mu.Lock()
	s.u.msgs = append(s.u.msgs, s.cur)
	s.u.mu.Unlock()
	return nil
}

func (s *dlvUpSession) Reset()        { s.cur = dlvReceived{} }
func (s *dlvUpSession) Logout() error { return nil }
