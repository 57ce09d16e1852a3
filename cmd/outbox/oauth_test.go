package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/oauthtest"
	"github.com/outbox-mta/outbox/spool"
)

// bearerBackend is an SMTP server that takes XOAUTH2 with the tokens a
// fake authorization server issued.
type bearerBackend struct{ valid func(string) bool }

func (b bearerBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &bearerSession{b: b}, nil }

type bearerSession struct{ b bearerBackend }

func (s *bearerSession) AuthMechanisms() []string { return []string{"XOAUTH2"} }
func (s *bearerSession) Auth(mech string) (sasl.Server, error) {
	return bearerServer{valid: s.b.valid}, nil
}
func (s *bearerSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *bearerSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *bearerSession) Data(r io.Reader) error               { _, err := io.Copy(io.Discard, r); return err }
func (s *bearerSession) Reset()                               {}
func (s *bearerSession) Logout() error                        { return nil }

type bearerServer struct{ valid func(string) bool }

func (b bearerServer) Next(resp []byte) ([]byte, bool, error) {
	_, tok, _ := strings.Cut(string(resp), "auth=Bearer ")
	tok, _, _ = strings.Cut(tok, "\x01")
	if b.valid(tok) {
		return nil, true, nil
	}
	return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful"}
}

func startBearerSMTP(t *testing.T, valid func(string) bool) int {
	t.Helper()
	srv := smtp.NewServer(bearerBackend{valid: valid})
	srv.Domain = "fake.test"
	srv.AllowInsecureAuth = true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestOAuthLoginThenTestUpstream(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", "")
	ts := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: "shh-client-secret", Scope: "https://outlook.office.com/SMTP.Send offline_access"})
	port := startBearerSMTP(t, ts.Valid)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "client.secret"), []byte("shh-client-secret\n"), 0o600)
	os.MkdirAll(filepath.Join(dir, "var"), 0o700)
	cfgPath := inWriteConfig(t, inValid+fmt.Sprintf(`
upstream "m365" {
  host     = "127.0.0.1"
  port     = %d
  tls      = "none"
  username = "me@contoso.example"
  oauth2 {
    flow               = "refresh_token"
    token_url          = "%s"
    device_url         = "%s"
    scopes             = ["https://outlook.office.com/SMTP.Send", "offline_access"]
    client_id          = "app"
    client_secret_file = "%s"
    token_file         = "%s"
  }
}
`, port, ts.TokenURL, ts.DeviceURL, filepath.Join(dir, "client.secret"), filepath.Join(dir, "var", "m365.json")))

	code, out, errOut := inRun(t, "check", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "oauth2 refresh_token") {
		t.Fatalf("check: %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "outbox oauth login m365") {
		t.Errorf("check does not say to sign in: %s", errOut)
	}
	// Before the login, test-upstream explains what to run.
	code, out, _ = inRun(t, "test-upstream", "m365", "--config", cfgPath)
	if code == 0 || !strings.Contains(out, "outbox oauth login m365") {
		t.Errorf("test-upstream before login: %d\n%s", code, out)
	}

	start := time.Now()
	code, out, errOut = inRun(t, "oauth", "login", "m365", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "ABCD-EFGH") || !strings.Contains(out, "OK: signed in") {
		t.Fatalf("login: %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("device login took %v (two polls, 1 s apart)", time.Since(start).Round(time.Millisecond))
	file := filepath.Join(dir, "var", "m365.json")
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", fi, err)
	}
	var tf struct {
		RefreshToken string `json:"refresh_token"`
	}
	b, _ := os.ReadFile(file)
	if json.Unmarshal(b, &tf); tf.RefreshToken == "" || strings.Contains(string(b), "shh-client-secret") {
		t.Fatalf("token file %s", b)
	}

	code, out, errOut = inRun(t, "test-upstream", "m365", "--config", cfgPath)
	if code != 0 || !strings.Contains(out, "XOAUTH2 accepted") || !strings.Contains(out, "token expires") ||
		!strings.Contains(out, "SMTP.Send") {
		t.Fatalf("test-upstream: %d\n%s\n%s", code, out, errOut)
	}
	for _, s := range []string{out, errOut} {
		if strings.Contains(s, "shh-client-secret") || strings.Contains(s, tf.RefreshToken) {
			t.Errorf("a secret was printed:\n%s", s)
		}
	}
}

func TestOAuthLoginRefusesOtherFlows(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", "")
	cfgPath := inWriteConfig(t, inValid+`
upstream "app" {
  provider = "office365"
  username = "relay@contoso.example"
  oauth2 {
    flow              = "client_credentials"
    tenant            = "contoso.example"
    client_id         = "x"
    client_secret_env = "NOPE"
  }
}
`)
	code, _, errOut := inRun(t, "oauth", "login", "app", "--config", cfgPath)
	if code != exitUsage || !strings.Contains(errOut, "needs no sign-in") {
		t.Errorf("%d %s", code, errOut)
	}
}

// TestQueueListShowsHint: a known provider reply in last_error gets its
// explanation beside it in `outbox queue ls`.
func TestQueueListShowsHint(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", "")
	conf := inWriteConfig(t, inValid)
	dir := filepath.Join(filepath.Dir(conf), "var")
	os.MkdirAll(dir, 0o755)
	s, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := &spool.Message{From: "a@163.com", Recipients: []spool.Recipient{{Address: "b@example.org"}}}
	if err := s.Enqueue(t.Context(), m, strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(m.ID, func(m *spool.Message) error {
		m.Recipients[0].LastError = "554 DT:SPM 163 smtp3,GdxpCgD3"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	code, out, errOut := inRun(t, "queue", "ls", "--config", conf)
	if code != 0 || !strings.Contains(out, "DT:SPM") || !strings.Contains(out, "hint: 163/126 classed the message as spam") {
		t.Errorf("queue ls: %d\n%s%s", code, out, errOut)
	}
}
