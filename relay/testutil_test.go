package relay

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/outbox-mta/outbox/internal/testpki"
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
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// dlvClock is an injected clock that moves only when a test says so.
type dlvClock struct {
	mu sync.Mutex
	t  time.Time
}

func newDlvClock() *dlvClock {
	return &dlvClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *dlvClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *dlvClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// dlvCall is one Deliver call as a dlvTarget saw it.
type dlvCall struct {
	From   string
	To     []string
	Notify [][]string
	Body   []byte
}

// dlvTarget is a recording upstream.Target. Each recipient has a script of
// results, one per call that includes it; an exhausted or missing script
// means Sent.
type dlvTarget struct {
	name string

	mu     sync.Mutex
	script map[string][]upstream.Result
	calls  []dlvCall
	// block, when set, makes Deliver wait until it is closed or ctx ends
	// (the recipients are then deferred).
	block   chan struct{}
	started chan struct{} // receives a value as each Deliver begins (if set)
}

func newDlvTarget(name string) *dlvTarget {
	return &dlvTarget{name: name, script: map[string][]upstream.Result{}}
}

// on appends results to the script of rcpt.
func (d *dlvTarget) on(rcpt string, rs ...upstream.Result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.script[rcpt] = append(d.script[rcpt], rs...)
}

func (d *dlvTarget) Name() string { return d.name }
func (d *dlvTarget) Close() error { return nil }

func (d *dlvTarget) Deliver(ctx context.Context, env *upstream.Envelope) upstream.Outcome {
	d.mu.Lock()
	block, started := d.block, d.started
	d.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	out := upstream.Outcome{Remote: d.name + ".test"}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			for range env.Recipients {
				out.Results = append(out.Results, upstream.Result{Class: upstream.Deferred, Message: "cancelled: " + ctx.Err().Error()})
			}
			return out
		}
	}
	call := dlvCall{From: env.From}
	if rc, err := env.Body(); err == nil {
		call.Body, _ = io.ReadAll(rc)
		rc.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range env.Recipients {
		call.To = append(call.To, r.Address)
		call.Notify = append(call.Notify, r.Notify)
		res := upstream.Result{Class: upstream.Sent, Code: 250, Enhanced: "2.0.0", Message: "ok"}
		if s := d.script[r.Address]; len(s) > 0 {
			res, d.script[r.Address] = s[0], s[1:]
		}
		out.Results = append(out.Results, res)
	}
	d.calls = append(d.calls, call)
	return out
}

func (d *dlvTarget) Calls() []dlvCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dlvCall(nil), d.calls...)
}

// callsTo returns the calls that included rcpt.
func (d *dlvTarget) callsTo(rcpt string) []dlvCall {
	var out []dlvCall
	for _, c := range d.Calls() {
		for _, to := range c.To {
			if to == rcpt {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// bounces returns the calls from the null sender to rcpt.
func (d *dlvTarget) bounces(rcpt string) []dlvCall {
	var out []dlvCall
	for _, c := range d.callsTo(rcpt) {
		if c.From == "" {
			out = append(out, c)
		}
	}
	return out
}

var (
	dlvDeferred451 = upstream.Result{Class: upstream.Deferred, Code: 451, Enhanced: "4.3.0", Message: "try again later"}
	dlvFailed550   = upstream.Result{Class: upstream.Failed, Code: 550, Enhanced: "5.1.1", Message: "no such user"}
)

// dlvConfig writes src as relay.hcl into dir and parses it.
func dlvConfig(t testing.TB, dir, src string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(src))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", src, err)
	}
	return cfg
}

// schedHCL is a configuration for scheduler tests: spool in dir, upstreams
// a and b (replaced by fake targets), extra queue settings and extra blocks.
func schedHCL(queue, extra string) string {
	return fmt.Sprintf(`
hostname = "relay.test"
listen { address = "127.0.0.1:2525" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
queue {
  retry_initial = "1m"
  retry_max     = "8m"
  lifetime      = "2h"
  %s
}
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
upstream "b" {
  host = "127.0.0.1"
  tls  = "none"
}
%s
`, queue, extra)
}

// dlvLogger writes the relay's logs to the test log.
func dlvLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(dlvTestWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type dlvTestWriter struct{ t testing.TB }

func (w dlvTestWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// schedHarness runs a Scheduler over a real spool with fake targets.
type schedHarness struct {
	t       testing.TB
	cfg     *config.Config
	sp      *spool.Spool
	s       *Scheduler
	clock   *dlvClock
	targets map[string]*dlvTarget
	cancel  context.CancelFunc
	done    chan struct{}
}

// schedStart opens a spool and starts a scheduler with fake targets "a"
// and "b". It stops them when the test ends.
func schedStart(t testing.TB, queue, extra string) *schedHarness {
	t.Helper()
	dir := t.TempDir()
	cfg := dlvConfig(t, dir, schedHCL(queue, extra))
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o750); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &schedHarness{t: t, cfg: cfg, sp: sp, clock: newDlvClock(),
		targets: map[string]*dlvTarget{"a": newDlvTarget("a"), "b": newDlvTarget("b")}}
	targets := map[string]upstream.Target{}
	for n, d := range h.targets {
		targets[n] = d
	}
	h.s = NewScheduler(sp, cfg, NewRouter(cfg, targets), dlvLogger(t), h.clock.Now)
	t.Cleanup(func() {
		h.stop()
		sp.Close()
	})
	return h
}

// run starts the scheduler loop.
func (h *schedHarness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { h.s.Run(ctx); close(h.done) }()
}

// stop ends the scheduler loop and waits for it.
func (h *schedHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.t.Errorf("scheduler did not stop")
	}
	h.cancel = nil
}

// advance moves the clock and wakes the scheduler.
func (h *schedHarness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.s.Kick()
}

const dlvBody = "From: App <app@example.org>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: Nightly report\r\n" +
	"Message-ID: <orig-1@example.org>\r\n" +
	"\r\n" +
	"Report body.\r\n"

// enqueue spools a message from from to rcpts, arrived now by the clock.
func (h *schedHarness) enqueue(from string, rcpts ...spool.Recipient) string {
	h.t.Helper()
	return h.enqueueBody(from, dlvBody, rcpts...)
}

func (h *schedHarness) enqueueBody(from, body string, rcpts ...spool.Recipient) string {
	h.t.Helper()
	m := &spool.Message{From: from, Recipients: rcpts, Submitter: "test", Arrived: h.clock.Now()}
	if err := h.sp.Enqueue(context.Background(), m, strings.NewReader(body)); err != nil {
		h.t.Fatal(err)
	}
	h.s.Kick()
	return m.ID
}

func dlvRcpt(addr string, notify ...string) spool.Recipient {
	return spool.Recipient{Address: addr, Status: spool.Pending, Notify: notify}
}

// dlvWait polls cond until it holds or a deadline passes.
func dlvWait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// get returns a queued message, or nil when it has left the queue.
func (h *schedHarness) get(id string) *spool.Message {
	h.t.Helper()
	m, err := h.sp.Get(id)
	if err == spool.ErrNotFound {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// queued returns the number of messages in the spool.
func (h *schedHarness) queued() int {
	h.t.Helper()
	n, err := h.sp.Count()
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// attempts returns the attempt count of a queued message, -1 once it left.
func (h *schedHarness) attempts(id string) int {
	if m := h.get(id); m != nil {
		return m.Attempts
	}
	return -1
}

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

// dlvFreePort returns a loopback TCP port that was free a moment ago.
func dlvFreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// dlvRelay is a whole running Relay.
type dlvRelay struct {
	r      *Relay
	addr   string // the SMTP listener
	clock  *dlvClock
	cancel context.CancelFunc
	done   chan error
}

// dlvStartRelay builds a Relay from the configuration in dir and runs it
// until the test ends.
func dlvStartRelay(t testing.TB, cfg *config.Config, opts Options) *dlvRelay {
	t.Helper()
	clock := newDlvClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	r, err := New(cfg, dlvLogger(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &dlvRelay{r: r, addr: cfg.Listen[0].Addr, clock: clock, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop")
		}
	})
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return d
}

// dlvSend sends one message to the relay's listener with go-smtp's client
// and checks the final reply is 250.
func dlvSend(t testing.TB, addr, from string, to []string, body string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	// go-smtp's client returns an *SMTPError for anything but 2yz.
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Logf("QUIT: %v", err)
	}
}
