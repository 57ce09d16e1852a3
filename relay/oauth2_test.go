package relay

import (
	"bytes"
	"context"
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

	"github.com/outbox-mta/outbox/internal/oauthtest"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// oauthSMTP is a loopback SMTP server that accepts XOAUTH2 with the live
// tokens of a fake authorization server.
type oauthSMTP struct {
	valid func(string) bool
	mu    sync.Mutex
	got   int
}

func (o *oauthSMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return &oauthSMTPSession{o: o}, nil }

type oauthSMTPSession struct {
	o    *oauthSMTP
	auth bool
}

func (s *oauthSMTPSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }
func (s *oauthSMTPSession) Auth(string) (sasl.Server, error) {
	return oauthSASL{s: s}, nil
}
func (s *oauthSMTPSession) Mail(string, *smtp.MailOptions) error {
	if !s.auth {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	return nil
}
func (s *oauthSMTPSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *oauthSMTPSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.o.mu.Lock()
	s.o.got++
	s.o.mu.Unlock()
	return nil
}
func (s *oauthSMTPSession) Reset()        {}
func (s *oauthSMTPSession) Logout() error { return nil }

type oauthSASL struct{ s *oauthSMTPSession }

func (x oauthSASL) Next(resp []byte) ([]byte, bool, error) {
	_, tok, _ := strings.Cut(string(resp), "auth=Bearer ")
	tok, _, _ = strings.Cut(tok, "\x01")
	if x.s.o.valid(tok) {
		x.s.auth = true
		return nil, true, nil
	}
	return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful"}
}

func (o *oauthSMTP) delivered() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestOAuthInvalidGrantKeepsMailQueued: a revoked refresh token pauses the
// upstream, the metric shows it, last_error says what to run, the mail
// stays queued, and a new login lets it through.
func TestOAuthInvalidGrantKeepsMailQueued(t *testing.T) {
	const secret = "relay-client-secret-77e1"
	t.Setenv("OUTBOX_TEST_CLIENT_SECRET", secret)
	ts := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: secret})
	up := &oauthSMTP{valid: ts.Valid}
	srv := smtp.NewServer(up)
	srv.Domain = "upstream.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "var"), 0o750)
	tokenFile := filepath.Join(dir, "var", "oauth2-a.json")
	login := func(rt string) {
		ts.AddRefreshToken(rt)
		b := fmt.Sprintf(`{"flow":"refresh_token","client_id":"app","token_url":%q,"refresh_token":%q}`, ts.TokenURL, rt)
		if err := os.WriteFile(tokenFile+".tmp", []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tokenFile+".tmp", tokenFile)
	}
	login("rt-revoked")
	ts.RevokeAll()

	cfg := dlvConfig(t, dir, fmt.Sprintf(`
hostname = "relay.test"
listen { address = "127.0.0.1:2525" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
upstream "a" {
  host     = "127.0.0.1"
  port     = %d
  tls      = "none"
  username = "relay@contoso.example"
  oauth2 {
    flow              = "refresh_token"
    token_url         = %q
    scopes            = ["smtp"]
    client_id         = "app"
    client_secret_env = "OUTBOX_TEST_CLIENT_SECRET"
  }
}
`, ln.Addr().(*net.TCPAddr).Port, ts.TokenURL))
	if cfg.Upstreams[0].OAuth2.TokenFile != tokenFile {
		t.Fatalf("token file %q, want %q beside the spool", cfg.Upstreams[0].OAuth2.TokenFile, tokenFile)
	}
	var logs lockedBuf
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	targets, err := buildTargets(cfg, log, func(string) []time.Time { return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, tg := range targets {
			tg.Close()
		}
	})
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	sched := NewScheduler(sp, testLive(cfg, NewRouter(cfg, targets)), log, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sched.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	m := &spool.Message{From: "app@example.org", Recipients: []spool.Recipient{{Address: "bob@example.com"}}, Submitter: "test", Arrived: time.Now()}
	if err := sp.Enqueue(context.Background(), m, strings.NewReader(dlvBody)); err != nil {
		t.Fatal(err)
	}
	sched.Kick()
	var got *spool.Message
	dlvWait(t, "a first attempt", func() bool {
		got, _ = sp.Get(m.ID)
		return got != nil && got.Recipients[0].LastError != ""
	})
	r := got.Recipients[0]
	if r.Status != spool.Pending || !strings.Contains(r.LastError, "invalid_grant") || !strings.Contains(r.LastError, "outbox oauth login a") {
		t.Errorf("recipient %+v", r)
	}
	metrics := newMetrics(sp, func() map[string]upstream.Target { return targets })
	mf, err := metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	paused, refreshFailed := -1.0, -1.0
	for _, f := range mf {
		if f.GetName() == "outbox_upstream_paused" {
			for _, mm := range f.GetMetric() {
				paused = mm.GetGauge().GetValue()
			}
		}
		if f.GetName() == "outbox_oauth2_token_refreshes_total" {
			for _, mm := range f.GetMetric() {
				for _, l := range mm.GetLabel() {
					if l.GetValue() == "failed" {
						refreshFailed = mm.GetCounter().GetValue()
					}
				}
			}
		}
	}
	if refreshFailed < 1 {
		t.Errorf("outbox_oauth2_token_refreshes_total{result=failed} = %v, want at least 1 after invalid_grant", refreshFailed)
	}
	if paused != 1 {
		t.Errorf("outbox_upstream_paused = %v, want 1", paused)
	}
	for what, text := range map[string]string{"last_error": r.LastError, "log": logs.String()} {
		if strings.Contains(text, secret) || strings.Contains(text, "rt-revoked") {
			t.Errorf("a secret reached the %s: %s", what, text)
		}
	}

	// A new login: the upstream resumes and the queued mail goes out.
	login("rt-fresh")
	if n := sched.Flush([]*spool.Message{got}); n != 1 {
		t.Fatalf("flush made %d due", n)
	}
	dlvWait(t, "delivery after the new login", func() bool { return up.delivered() == 1 })
	dlvWait(t, "the message to leave the queue", func() bool { n, _ := sp.Count(); return n == 0 })
}
