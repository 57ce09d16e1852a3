package sendmailshim

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// testDir makes a short temporary folder (unix socket paths are limited
// to about 100 bytes) that is kept when the test fails, for debugging.
func testDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shim")
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

// writeConfig writes relay.hcl into dir with the submission socket, the
// maildrop folder and the admin socket inside dir, and returns its path.
func writeConfig(t testing.TB, dir, extra string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "var", "maildrop"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`hostname = "shim.test"
listen {
  address = "unix:%s"
}
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin {
  socket = "var/admin.sock"
}
aliases {
  root       = "ops@example.com"
  postmaster = "root"
}
upstream "c" {
  type = "maildir"
  path = "md"
}
%s`, filepath.Join(dir, "var", "submit.sock"), extra)
	p := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// received is one message as the test daemon got it.
type received struct {
	From     string
	MailOpts smtp.MailOptions
	Rcpts    []string
	Notify   [][]smtp.DSNNotify
	Data     []byte
}

// fakeDaemon stands in for the daemon's SMTP listener on the unix socket:
// it takes local names only when they are aliases, as the daemon does,
// and can be told to sync each message to disk before answering, as the
// daemon's spool does.
type fakeDaemon struct {
	srv     *smtp.Server
	mu      sync.Mutex
	msgs    []received
	arrived chan struct{}
	local   map[string]bool
	syncDir string // if set, each message is written and fsynced here
	// dataErr, if set, is the reply to the end of DATA; mu guards it,
	// which tests change while the server runs.
	dataErr *smtp.SMTPError
}

func (d *fakeDaemon) setDataErr(e *smtp.SMTPError) {
	d.mu.Lock()
	d.dataErr = e
	d.mu.Unlock()
}

func startDaemon(t testing.TB, sock string) *fakeDaemon {
	t.Helper()
	d := &fakeDaemon{arrived: make(chan struct{}, 1000), local: map[string]bool{"root": true, "postmaster": true}}
	d.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &fakeSession{d: d}, nil
	}))
	d.srv.Domain = "shim.test"
	d.srv.EnableDSN = true
	d.srv.EnableSMTPUTF8 = true
	d.srv.MaxMessageBytes = 30 << 20
	d.srv.ErrorLog = nopLogger{}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go d.srv.Serve(l)
	t.Cleanup(func() { d.srv.Close() })
	return d
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// wait returns the n-th message (from 1), waiting for it up to a deadline.
func (d *fakeDaemon) wait(t testing.TB, n int) received {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		d.mu.Lock()
		if len(d.msgs) >= n {
			m := d.msgs[n-1]
			d.mu.Unlock()
			return m
		}
		d.mu.Unlock()
		select {
		case <-d.arrived:
		case <-deadline:
			t.Fatalf("message %d did not arrive", n)
		}
	}
}

func (d *fakeDaemon) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.msgs)
}

type fakeSession struct {
	d   *fakeDaemon
	cur received
}

func (s *fakeSession) Mail(from string, opts *smtp.MailOptions) error {
	s.cur = received{From: from}
	if opts != nil {
		s.cur.MailOpts = *opts
	}
	return nil
}

func (s *fakeSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if local, ok := strings.CutSuffix(to, "@shim.test"); ok && !s.d.local[strings.ToLower(local)] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such local name"}
	}
	s.cur.Rcpts = append(s.cur.Rcpts, to)
	var n []smtp.DSNNotify
	if opts != nil {
		n = opts.Notify
	}
	s.cur.Notify = append(s.cur.Notify, n)
	return nil
}

func (s *fakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.d.mu.Lock()
	dataErr := s.d.dataErr
	s.d.mu.Unlock()
	if dataErr != nil {
		return dataErr
	}
	if s.d.syncDir != "" {
		f, err := os.CreateTemp(s.d.syncDir, "m")
		if err != nil {
			return err
		}
		f.Write(b)
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	s.cur.Data = b
	s.d.mu.Lock()
	s.d.msgs = append(s.d.msgs, s.cur)
	s.d.mu.Unlock()
	s.d.arrived <- struct{}{}
	return nil
}

func (s *fakeSession) Reset()        { s.cur = received{} }
func (s *fakeSession) Logout() error { return nil }

// run calls Main in-process with the configuration at cfg.
func run(t testing.TB, cfg, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := []string{"OUTBOX_CONFIG=" + cfg, "LOGNAME=tester"}
	code = Main(append([]string{"sendmail"}, args...), strings.NewReader(stdin), &out, &errb, env)
	return code, out.String(), errb.String()
}

// header returns the header section of a CRLF message.
func header(t testing.TB, msg []byte) string {
	t.Helper()
	i := bytes.Index(msg, []byte("\r\n\r\n"))
	if i < 0 {
		t.Fatalf("no end of header in %q", msg)
	}
	return string(msg[:i+2])
}

// checkCRLF fails if msg has a bare LF.
func checkCRLF(t testing.TB, msg []byte) {
	t.Helper()
	for i, c := range msg {
		if c == '\n' && (i == 0 || msg[i-1] != '\r') {
			t.Fatalf("bare LF at byte %d of %q", i, msg)
		}
	}
}

func hasField(hdr, name string) bool {
	for _, line := range strings.Split(hdr, "\r\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func fieldValue(hdr, name string) string {
	for _, line := range strings.Split(hdr, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
