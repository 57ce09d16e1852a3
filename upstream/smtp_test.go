package upstream

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/upstream/settings"

	"github.com/emersion/go-smtp"
)

func deliver(t testing.TB, s *SMTP, env *Envelope) Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out := s.Deliver(ctx, env)
	if len(out.Results) != len(env.Recipients) {
		t.Fatalf("got %d results for %d recipients", len(out.Results), len(env.Recipients))
	}
	return out
}

func wantClass(t testing.TB, out Outcome, want ...Class) {
	t.Helper()
	for i, r := range out.Results {
		if r.Class != want[i] {
			t.Errorf("recipient %d: got %v (%d %s %q), want %v", i, r.Class, r.Code, r.Enhanced, r.Message, want[i])
		}
	}
}

func TestDeliverSTARTTLSAuth(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	for _, mech := range []string{"auto", "plain", "login"} {
		t.Run(mech, func(t *testing.T) {
			fs := startFake(t, ca, fakeOptions{User: "me@example.com", Password: "pw", DSN: true})
			var logs syncBuffer
			cfg := clientConfig(fs, ca, &logs)
			cfg.Auth = settings.Auth(mech)
			s := newTarget(t, cfg)
			env := envelope(testMessage, "b@example.net", "c@example.net")
			env.Ret, env.EnvID = "HDRS", "env-1"
			env.Recipients[0].Notify = []dsn.Notify{"FAILURE", "delay"}
			env.Recipients[0].ORCPT = "rfc822;orig@example.net"
			out := deliver(t, s, env)
			wantClass(t, out, Sent, Sent)
			if out.Remote != "127.0.0.1" || out.Results[0].Code != 250 {
				t.Errorf("remote %q code %d", out.Remote, out.Results[0].Code)
			}
			msgs := fs.messages()
			if len(msgs) != 1 {
				t.Fatalf("server got %d messages", len(msgs))
			}
			m := msgs[0]
			if string(m.Data) != testMessage {
				t.Errorf("body differs:\n got %q\nwant %q", m.Data, testMessage)
			}
			if m.User != "me@example.com" || !m.TLS {
				t.Errorf("user %q tls %v", m.User, m.TLS)
			}
			if m.From != "a@example.com" || strings.Join(m.To, ",") != "b@example.net,c@example.net" {
				t.Errorf("envelope %q %q", m.From, m.To)
			}
			if m.Mail.Return != smtp.DSNReturnHeaders || m.Mail.EnvelopeID != "env-1" || m.Mail.Size != int64(len(testMessage)) {
				t.Errorf("mail options %+v", m.Mail)
			}
			if r := m.Rcpt[0]; len(r.Notify) != 2 || r.OriginalRecipient != "orig@example.net" {
				t.Errorf("rcpt options %+v", r)
			}
			if !strings.Contains(logs.String(), "upstream=test") {
				t.Errorf("logs lack the upstream attribute:\n%s", logs.String())
			}
		})
	}
}

func TestDeliverImplicitTLS(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{Mode: "tls", User: "u", Password: "pw"})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if m := fs.messages(); len(m) != 1 || !m[0].TLS || m[0].User != "u" {
		t.Fatalf("messages %+v", m)
	}
}

func TestDeliverNullSenderNoAuth(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	env := envelope(testMessage, "b@example.net")
	env.From = ""
	wantClass(t, deliver(t, s, env), Sent)
	if m := fs.messages(); len(m) != 1 || m[0].From != "" || m[0].User != "" {
		t.Fatalf("messages %+v", m)
	}
}

func TestRcptMixed(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.rcptErr["bad@example.net"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		fs.rcptErr["later@example.net"] = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
	})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	out := deliver(t, s, envelope(testMessage, "bad@example.net", "good@example.net", "later@example.net"))
	wantClass(t, out, Failed, Sent, Deferred)
	if r := out.Results[0]; r.Code != 550 || r.Enhanced != "5.1.1" {
		t.Errorf("result %+v", r)
	}
	if r := out.Results[2]; r.Code != 452 || r.Enhanced != "4.2.2" {
		t.Errorf("result %+v", r)
	}
	if m := fs.messages(); len(m) != 1 || strings.Join(m[0].To, ",") != "good@example.net" {
		t.Fatalf("messages %+v", m)
	}
}

func TestNoRecipientAccepted(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.rcptErr["bad@example.net"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
	})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	wantClass(t, deliver(t, s, envelope(testMessage, "bad@example.net")), Failed)
	// The connection was reset and pooled: the next message reuses it.
	wantClass(t, deliver(t, s, envelope(testMessage, "good@example.net")), Sent)
	if conns, _, _ := fs.stats(); conns != 1 || len(fs.messages()) != 1 {
		t.Fatalf("conns %d messages %d", conns, len(fs.messages()))
	}
}

func TestMailAndDataReplies(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	tests := []struct {
		name   string
		fault  func(fs *fakeServer)
		want   Class
		code   int
		enh    string
		stored bool
	}{
		{"data 451", func(fs *fakeServer) {
			fs.dataErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}, Deferred, 451, "4.3.0", false},
		{"data 554", func(fs *fakeServer) {
			fs.dataErr = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "spam"}
		}, Failed, 554, "5.6.0", false},
		{"mail 550", func(fs *fakeServer) {
			fs.mailErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "sender rejected"}
		}, Failed, 550, "5.7.1", false},
		{"mail 451", func(fs *fakeServer) {
			fs.mailErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}
		}, Deferred, 451, "4.7.1", false},
		{"dropped at mail", func(fs *fakeServer) { fs.dropMail = true }, Deferred, 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := startFake(t, ca, fakeOptions{})
			fs.set(tc.fault)
			var logs syncBuffer
			s := newTarget(t, clientConfig(fs, ca, &logs))
			out := deliver(t, s, envelope(testMessage, "b@example.net", "c@example.net"))
			wantClass(t, out, tc.want, tc.want)
			for _, r := range out.Results {
				if r.Code != tc.code || r.Enhanced != tc.enh || r.Message == "" {
					t.Errorf("result %+v, want code %d enhanced %q", r, tc.code, tc.enh)
				}
			}
			if got := len(fs.messages()) > 0; got != tc.stored {
				t.Errorf("stored %v", got)
			}
		})
	}
}

func TestNoSTARTTLSRefusesAuth(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{Mode: "plain", User: "u", Password: "pw"})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	want := fmt.Sprintf("STARTTLS not offered by 127.0.0.1:%d: refusing to send credentials", fs.Port)
	if out.Results[0].Message != want {
		t.Errorf("message %q, want %q", out.Results[0].Message, want)
	}
	if _, _, auth := fs.stats(); auth != 0 || len(fs.messages()) != 0 {
		t.Errorf("server saw %d AUTH attempts, %d messages", auth, len(fs.messages()))
	}
}

func TestUntrustedCertificate(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	other := testpki.NewCA(t, "other CA")
	cert := other.ServerCert(t)
	for _, mode := range []string{"starttls", "tls"} {
		t.Run(mode, func(t *testing.T) {
			fs := startFake(t, ca, fakeOptions{Mode: mode, Cert: &cert, User: "u", Password: "pw"})
			var logs syncBuffer
			s := newTarget(t, clientConfig(fs, ca, &logs))
			out := deliver(t, s, envelope(testMessage, "b@example.net"))
			wantClass(t, out, Deferred)
			msg := out.Results[0].Message
			if !strings.HasPrefix(msg, fmt.Sprintf("TLS handshake with 127.0.0.1:%d failed: certificate for 127.0.0.1 not trusted", fs.Port)) {
				t.Errorf("message %q", msg)
			}
			if _, _, auth := fs.stats(); auth != 0 {
				t.Errorf("server saw AUTH")
			}
		})
	}
}

func TestAuthRejectedDefers(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{User: "u", Password: "right"})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.Password = staticSecret("wrong")
	s := newTarget(t, cfg)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if r := out.Results[0]; r.Code != 535 || !strings.Contains(r.Message, "check username/password_file for upstream test") {
		t.Errorf("result %+v", r)
	}
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "configuration problem") {
		t.Errorf("no loud log:\n%s", l)
	}
}

func TestConnectionReuse(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{User: "u", Password: "pw"})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	for i := 0; i < 3; i++ {
		wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	}
	if conns, _, auth := fs.stats(); conns != 1 || auth != 1 {
		t.Fatalf("server saw %d connections and %d AUTH for 3 messages", conns, auth)
	}
	if len(fs.messages()) != 3 {
		t.Fatalf("messages %d", len(fs.messages()))
	}
}

func TestStalePooledConnectionRetried(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	// Kill the pooled connection under the client, as a server's idle
	// timeout would.
	s.mu.Lock()
	s.idle[0].raw.Close()
	s.mu.Unlock()
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if conns, _, _ := fs.stats(); conns != 2 {
		t.Fatalf("conns %d", conns)
	}
}

func TestIdleConnectionExpires(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg.IdleTimeout = 30 * time.Second
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if conns, _, _ := fs.stats(); conns != 2 {
		t.Fatalf("conns %d, want a fresh connection after the idle timeout", conns)
	}
}

func TestMaxConnections(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.MaxConnections = 2
	s := newTarget(t, cfg)
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
		}()
	}
	wg.Wait()
	conns, maxOpen, _ := fs.stats()
	if maxOpen > 2 || conns > 2 {
		t.Fatalf("server saw %d connections, %d at once; want at most 2", conns, maxOpen)
	}
	if len(fs.messages()) != 12 {
		t.Fatalf("messages %d", len(fs.messages()))
	}
}

func TestPauseOn421(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.mailErr = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "too many messages"}
	})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := newTarget(t, cfg)

	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if out.Results[0].Code != 421 {
		t.Errorf("result %+v", out.Results[0])
	}
	conns, _, _ := fs.stats()

	out = deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if want := "upstream test paused until 12:00:30 after: 421"; !strings.HasPrefix(out.Results[0].Message, want) {
		t.Errorf("message %q, want prefix %q", out.Results[0].Message, want)
	}
	if c, _, _ := fs.stats(); c != conns {
		t.Errorf("paused upstream was contacted")
	}

	// Still failing after the pause: the pause doubles.
	advance(31 * time.Second)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	if until, _, ok := s.Paused(); !ok || !until.Equal(now.Add(time.Minute)) {
		t.Errorf("paused %v until %v, want a 1m pause", ok, until)
	}

	// Recovery resets the backoff.
	advance(61 * time.Second)
	fs.set(func(fs *fakeServer) { fs.mailErr = nil })
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	s.mu.Lock()
	backoff := s.backoff
	s.mu.Unlock()
	if backoff != 0 {
		t.Errorf("backoff %v after success", backoff)
	}
}

func TestPauseAfterConnectionFailures(t *testing.T) {
	var logs syncBuffer
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	dials := 0
	s := newTarget(t, SMTPConfig{
		SMTP:   settings.SMTP{Name: "down", Host: "127.0.0.1", Port: 1},
		Logger: testLogger(&logs),
		Now:    func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials++
			return nil, fmt.Errorf("connection refused")
		},
	})
	for i := 0; i < 3; i++ {
		wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	}
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	if !strings.Contains(out.Results[0].Message, "paused until") || dials != 3 {
		t.Fatalf("dials %d, result %+v", dials, out.Results[0])
	}
}

func TestCommandTimeout(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) { fs.hangMail = true })
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.CommandTimeout = 200 * time.Millisecond
	s := newTarget(t, cfg)
	start := time.Now()
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if out.Results[0].Code != 0 || time.Since(start) > 5*time.Second {
		t.Errorf("result %+v after %v", out.Results[0], time.Since(start))
	}
}

func TestContextCancelInterrupts(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) { fs.hangMail = true })
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	out := s.Deliver(ctx, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if !strings.Contains(out.Results[0].Message, "deadline exceeded") {
		t.Errorf("result %+v", out.Results[0])
	}
}

func TestSMTPUTF8NotOffered(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	env := envelope(testMessage, "ü@example.net")
	env.UTF8 = true
	out := deliver(t, s, env)
	wantClass(t, out, Failed)
	if out.Results[0].Enhanced != "5.6.7" {
		t.Errorf("result %+v", out.Results[0])
	}

	fs2 := startFake(t, ca, fakeOptions{UTF8: true})
	s2 := newTarget(t, clientConfig(fs2, ca, &logs))
	wantClass(t, deliver(t, s2, env), Sent)
	if m := fs2.messages(); len(m) != 1 || !m[0].Mail.UTF8 {
		t.Errorf("messages %+v", m)
	}
}

func TestRateLimit(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	cfg.RateN, cfg.RatePer = 2, time.Hour
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if want := "rate limit 2 per 1h0m0s reached for upstream test"; out.Results[0].Message != want {
		t.Errorf("message %q", out.Results[0].Message)
	}
}

func TestLimiterWaitsWithinWindow(t *testing.T) {
	l := newLimiter(1, 50*time.Millisecond)
	ctx := context.Background()
	if _, err := l.wait(ctx, time.Now); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := l.wait(ctx, time.Now); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("second event after %v, want about 50ms", d)
	}
}

func TestDeliverAfterClose(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	waitFor(t, "pooled session to end", func() bool { _, _, _ = fs.stats(); fs.mu.Lock(); defer fs.mu.Unlock(); return fs.current == 0 })
}

func TestSecretNeverLeaks(t *testing.T) {
	const secret = "Zq9-very-distinctive-secret-7Hk"
	ca := testpki.NewCA(t, "test CA")
	var logs syncBuffer
	var results []string
	record := func(out Outcome) {
		for _, r := range out.Results {
			results = append(results, r.Message)
		}
	}
	// Accepted, rejected, and refused for lack of STARTTLS.
	for _, tc := range []struct {
		mode, serverPass string
	}{{"starttls", secret}, {"starttls", "other"}, {"plain", secret}, {"tls", "other"}} {
		fs := startFake(t, ca, fakeOptions{Mode: tc.mode, User: "u", Password: tc.serverPass})
		cfg := clientConfig(fs, ca, &logs)
		cfg.Password = staticSecret(secret)
		for _, auth := range []settings.Auth{settings.AuthPlain, settings.AuthLogin} {
			cfg.Auth = auth
			s := newTarget(t, cfg)
			record(deliver(t, s, envelope(testMessage, "b@example.net")))
			p, err := s.Probe(context.Background(), "b@example.net")
			if err != nil {
				results = append(results, err.Error(), p.AuthError)
			}
		}
	}
	all := logs.String() + strings.Join(results, "\n")
	for _, bad := range []string{secret, base64Std(secret), base64Std("\x00u\x00" + secret)} {
		if strings.Contains(all, bad) {
			t.Fatalf("secret leaked:\n%s", all)
		}
	}
}

func TestProbe(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{User: "me@example.com", Password: "pw"})
	fs.set(func(fs *fakeServer) {
		fs.rcptErr["bad@example.net"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	p, err := s.Probe(context.Background(), "good@example.net")
	if err != nil {
		t.Fatal(err)
	}
	if p.TLSVersion != "TLS 1.3" || p.AuthMech != "PLAIN" || !p.AuthOK || p.CertIssuer != "CN=test CA" ||
		p.RcptResult == "" || p.Cipher == "" || len(p.Extensions) == 0 {
		t.Errorf("report %+v", p)
	}
	if _, err := s.Probe(context.Background(), "bad@example.net"); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("err %v", err)
	}
	if len(fs.messages()) != 0 {
		t.Errorf("probe sent a message")
	}

	plain := startFake(t, ca, fakeOptions{Mode: "plain", User: "u", Password: "pw"})
	s2 := newTarget(t, clientConfig(plain, ca, &logs))
	if _, err := s2.Probe(context.Background(), ""); err == nil || !strings.HasPrefix(err.Error(), "STARTTLS not offered by") {
		t.Errorf("err %v", err)
	}
}

func TestNewSMTPValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg SMTPConfig
		ok  bool
	}{
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", TLS: "none"}}, false},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "192.0.2.1", TLS: "none"}}, false},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "127.0.0.5", TLS: "none"}}, true},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "localhost", TLS: "none"}}, true},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "::1", TLS: "none"}}, true},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com"}}, true},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", TLS: "ssl"}}, false},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", Auth: "plain"}}, false},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", Username: "u"}}, false},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", Username: "u", Auth: "xoauth2"}, Token: staticSecret("t")}, true},
		{SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: ""}}, false},
	} {
		s, err := NewSMTP(tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.cfg, err)
		}
		if err == nil {
			s.Close()
		} else if !strings.Contains(err.Error(), "upstream x") {
			t.Errorf("error %q does not name the upstream", err)
		}
	}
	_, err := NewSMTP(SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", TLS: "none"}})
	if err == nil || !strings.Contains(err.Error(), `tls = "starttls"`) {
		t.Errorf("error %v does not name the fix", err)
	}
	s, err := NewSMTP(SMTPConfig{SMTP: settings.SMTP{Name: "x", Host: "smtp.example.com", TLS: "tls"}})
	if err != nil || s.Addr() != "smtp.example.com:465" {
		t.Errorf("default port: %v %v", s, err)
	}
	s.Close()
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Result
	}{
		{nil, Result{Class: Sent}},
		{&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "x"}, Result{Failed, 550, "5.1.1", "x"}},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "x"}, Result{Deferred, 451, "", "x"}},
		{fmt.Errorf("wrapped: %w", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.NoEnhancedCode, Message: "x"}), Result{Failed, 554, "", "x"}},
		{fmt.Errorf("something odd"), Result{Deferred, 0, "", "something odd"}},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %+v, want %+v", tc.err, got, tc.want)
		}
	}
	for c, s := range map[Class]string{Sent: "sent", Deferred: "deferred", Failed: "failed"} {
		if c.String() != s {
			t.Errorf("%d.String() = %q", c, c.String())
		}
	}
}

func TestSASLClients(t *testing.T) {
	c := &cramMD5Client{user: "tim", pass: "tanstaaftanstaaf"}
	// RFC 2195's example.
	resp, _ := c.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"))
	if string(resp) != "tim b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("CRAM-MD5 %q", resp)
	}
	x := &xoauth2Client{user: "u@example.com", token: "tok"}
	if m, ir, _ := x.Start(); m != "XOAUTH2" || string(ir) != "user=u@example.com\x01auth=Bearer tok\x01\x01" {
		t.Errorf("XOAUTH2 %q %q", m, ir)
	}
	l := &loginClient{user: "u", pass: "p"}
	if a, _ := l.Next([]byte("Username:")); string(a) != "u" {
		t.Errorf("LOGIN user %q", a)
	}
	if a, _ := l.Next([]byte("Password:")); string(a) != "p" {
		t.Errorf("LOGIN pass %q", a)
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestPlainToLoopbackWithAuth(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{Mode: "plain", User: "u", Password: "pw"})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.TLS = "none"
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if m := fs.messages(); len(m) != 1 || m[0].User != "u" || m[0].TLS {
		t.Fatalf("messages %+v", m)
	}
}

func TestNoUsableMechanism(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{User: "u", Password: "pw"})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.Password, cfg.Token = nil, staticSecret("tok")
	s := newTarget(t, cfg)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if !strings.Contains(out.Results[0].Message, "no usable AUTH mechanism") {
		t.Errorf("result %+v", out.Results[0])
	}
	cfg.Auth = "cram-md5"
	cfg.Password = staticSecret("pw")
	s = newTarget(t, cfg)
	out = deliver(t, s, envelope(testMessage, "b@example.net"))
	if !strings.Contains(out.Results[0].Message, "AUTH CRAM-MD5 not offered") {
		t.Errorf("result %+v", out.Results[0])
	}
}

func TestNoSTARTTLSWithoutAuth(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{Mode: "plain"})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if !strings.Contains(out.Results[0].Message, "refusing to send mail in clear") || len(fs.messages()) != 0 {
		t.Errorf("result %+v", out.Results[0])
	}
}
