package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/maildrop"
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
	in := &Inbound{store: store, log: dlvLogger(t), now: time.Now, live: testLive(cfg, nil)}
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

// TestMaildropCarriesSMTPUTF8AndBody: the SMTPUTF8 and BODY parameters of
// a maildrop file reach the queued message, as they do over SMTP; a file
// without the flag (written by an older shim) still gets SMTPUTF8 when an
// address needs it.
func TestMaildropCarriesSMTPUTF8AndBody(t *testing.T) {
	for _, tc := range []struct {
		env      maildrop.Envelope
		utf8     bool
		bodyType string
	}{
		{maildrop.Envelope{From: "app@example.org", Recipients: []string{"bob@example.com"}, SMTPUTF8: true, BodyType: "8bitmime"}, true, "8BITMIME"},
		{maildrop.Envelope{From: "app@example.org", Recipients: []string{"j\u00f6rg@example.com"}}, true, ""},
		{maildrop.Envelope{From: "j\u00f6rg@example.org", Recipients: []string{"bob@example.com"}, BodyType: "7BIT"}, true, "7BIT"},
		{maildrop.Envelope{From: "app@example.org", Recipients: []string{"bob@example.com"}}, false, ""},
	} {
		r := mdRelay(t)
		mdWrite(t, r, &tc.env, "Subject: Gr\u00fc\u00dfe\r\n\r\n\u00c4pfel\r\n")
		if n := r.importMaildrop(context.Background()); n != 1 {
			t.Fatalf("%+v: imported %d", tc.env, n)
		}
		orig, _ := mdQueue(t, r)
		if len(orig) != 1 {
			t.Fatalf("%+v: %d queued", tc.env, len(orig))
		}
		if m := orig[0]; m.UTF8 != tc.utf8 || m.BodyType != tc.bodyType {
			t.Errorf("%+v: queued with SMTPUTF8 %v, BODY %q; want %v, %q", tc.env, m.UTF8, m.BodyType, tc.utf8, tc.bodyType)
		}
	}
}

// acUpstream is an SMTP server that offers 8BITMIME but not SMTPUTF8 and
// records who each message was for.
type acUpstream struct {
	mu    sync.Mutex
	rcpts []string
}

func (u *acUpstream) NewSession(*smtp.Conn) (smtp.Session, error) { return &acUpSession{u: u}, nil }

func (u *acUpstream) got() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.rcpts...)
}

type acUpSession struct {
	u   *acUpstream
	cur []string
}

func (s *acUpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *acUpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur = append(s.cur, to)
	return nil
}
func (s *acUpSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.u.mu.Lock()
	s.u.rcpts = append(s.u.rcpts, s.cur...)
	s.u.mu.Unlock()
	return nil
}
func (s *acUpSession) Reset()        { s.cur = nil }
func (s *acUpSession) Logout() error { return nil }

// TestShimBsSMTPUTF8ThroughMaildrop: `sendmail -bs`, run by an ordinary
// user while the daemon is down, takes a transaction that declared
// SMTPUTF8 and has a UTF-8 Subject into the maildrop; the daemon, once
// up, imports it still marked SMTPUTF8, so an upstream without SMTPUTF8
// never receives the UTF-8 header field (the recipient fails, 5.6.7, and
// the sender gets a bounce) instead of being sent it as plain 8-bit mail.
func TestShimBsSMTPUTF8ThroughMaildrop(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run the shim as nobody")
		}
		t.Skip("needs root to run the shim as nobody")
	}
	if testing.Short() {
		t.Skip("builds the shim")
	}
	dir, err := os.MkdirTemp("", "acutf8")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// nobody must reach the shim, relay.hcl and the maildrop folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sendmail")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sendmail").CombinedOutput(); err != nil {
		t.Fatalf("building the shim: %v\n%s", err, out)
	}

	up := &acUpstream{}
	srv := smtp.NewServer(up)
	srv.Domain = "upstream.test"
	srv.ErrorLog = dlvNopLogger{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	src := fmt.Sprintf(`
hostname = "relay.test"
listen { address = "unix:var/submit.sock" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
upstream "up" {
  host = "127.0.0.1"
  port = %d
  tls  = "none"
}
`, ln.Addr().(*net.TCPAddr).Port)
	cfgPath := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "var"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := maildrop.Setup(filepath.Join(dir, "var", "maildrop")); err != nil {
		t.Fatal(err)
	}

	session := "EHLO client.test\r\n" +
		"MAIL FROM:<app@example.org> SMTPUTF8 BODY=8BITMIME\r\n" +
		"RCPT TO:<bob@example.com>\r\n" +
		"DATA\r\n" +
		"From: app@example.org\r\nTo: bob@example.com\r\nSubject: Gr\u00fc\u00dfe aus K\u00f6ln\r\n\r\n\u00c4pfel\r\n.\r\n" +
		"QUIT\r\n"
	cmd := exec.Command(bin, "-bs")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"OUTBOX_CONFIG=" + cfgPath, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(session)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "\n250 ") < 4 {
		t.Fatalf("sendmail -bs as nobody, daemon down: %v\n%s", err, out)
	}
	names, err := maildrop.List(filepath.Join(dir, "var", "maildrop"))
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop holds %v (%v), want one file", names, err)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	d := dlvStartRelay(t, cfg, Options{Now: time.Now, MaildropInterval: 20 * time.Millisecond})
	// The message (wrongly) or, once bob's delivery has failed, the bounce
	// to the sender.
	dlvWait(t, "mail at the upstream", func() bool {
		for _, r := range up.got() {
			if r == "app@example.org" || r == "bob@example.com" {
				return true
			}
		}
		return false
	})
	for _, r := range up.got() {
		if r == "bob@example.com" {
			t.Fatal("the message with a UTF-8 header field went to an upstream without SMTPUTF8")
		}
	}
	list, err := d.r.Spool().List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.From == "app@example.org" {
			t.Errorf("the message is still queued: %+v", m.Recipients)
		}
	}
}
