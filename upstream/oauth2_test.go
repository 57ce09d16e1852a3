package upstream

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/internal/oauthtest"
	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/upstream/oauth"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const oauthSecret = "client-secret-3c1f5e9a"

// oauthSetup starts a token endpoint and an SMTP upstream that accepts
// only the endpoint's live access tokens for mailbox.
func oauthSetup(t *testing.T, flow string, rotate bool) (*oauthtest.Server, *fakeServer, SMTPConfig, *syncBuffer, *testClock, string) {
	t.Helper()
	clk := &testClock{t: time.Now()}
	ts := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: oauthSecret, Lifetime: time.Hour, Now: clk.Now, Rotate: rotate})
	ca := testpki.NewCA(t, "test CA")
	const mailbox = "relay@contoso.example"
	fs := startFake(t, ca, fakeOptions{Bearer: func(user, token string) bool { return user == mailbox && ts.Valid(token) }})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.Username = mailbox
	cfg.Now = clk.Now
	file := filepath.Join(t.TempDir(), "oauth2-test.json")
	src, err := oauth.New(oauth.Config{Name: "test", Flow: flow, TokenURL: ts.TokenURL, ClientID: "app",
		ClientSecret: func(context.Context) (string, error) { return oauthSecret, nil },
		TokenFile:    file, Now: clk.Now, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg.OAuth = src
	return ts, fs, cfg, &logs, clk, file
}

func seedRefreshToken(t *testing.T, ts *oauthtest.Server, file, rt string) {
	t.Helper()
	ts.AddRefreshToken(rt)
	b, _ := json.Marshal(map[string]string{"flow": "refresh_token", "client_id": "app", "token_url": ts.TokenURL, "refresh_token": rt})
	tmp := file + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func TestOAuthTokenExpiryBetweenMessagesRefreshes(t *testing.T) {
	ts, fs, cfg, _, clk, _ := oauthSetup(t, oauth.ClientCredentials, false)
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	// Two hours later the first token is dead on the server's side too;
	// the pooled connection has gone idle past its timeout.
	clk.Add(2 * time.Hour)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if g := ts.Grants(); len(g) != 2 || g[0] != "client_credentials" || g[1] != "client_credentials" {
		t.Errorf("token requests %v, want two client_credentials", g)
	}
	if m := fs.messages(); len(m) != 2 || m[1].User != "relay@contoso.example" {
		t.Errorf("messages %+v", m)
	}
}

func TestOAuthTokenRefusedAtAuthIsRefreshedOnce(t *testing.T) {
	ts, fs, cfg, logs, _, file := oauthSetup(t, oauth.RefreshToken, true)
	seedRefreshToken(t, ts, file, "refresh-seed")
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	s.Close()
	// The provider revokes the access token early (a password reset);
	// the cached one still looks valid to Outbox.
	ts.RevokeAccess()
	s = newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if g := ts.Grants(); len(g) != 2 {
		t.Errorf("token requests %v, want one refresh after the 535", g)
	}
	if len(fs.messages()) != 2 || !strings.Contains(logs.String(), "AUTH refused the OAuth2 token") {
		t.Errorf("messages %d, logs:\n%s", len(fs.messages()), logs.String())
	}
	// The rotated refresh token reached the file.
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "refresh-seed") || !strings.Contains(string(b), ts.RefreshTokens()[0]) {
		t.Errorf("token file not updated with the rotated refresh token: %s (server: %v)", b, ts.RefreshTokens())
	}

	// A token refused twice defers; no third try.
	ts2, fs2, cfg2, _, _, file2 := oauthSetup(t, oauth.RefreshToken, false)
	seedRefreshToken(t, ts2, file2, "rt")
	fs2.set(func(*fakeServer) {})
	o := fs2.opts()
	o.Bearer = func(string, string) bool { return false }
	fakeUsers.Store(fs2, o)
	s2 := newTarget(t, cfg2)
	out := deliver(t, s2, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if _, _, tries := fs2.stats(); tries != 2 {
		t.Errorf("AUTH attempts %d, want 2", tries)
	}
}

func TestOAuthRevokedRefreshTokenPausesAndExplains(t *testing.T) {
	ts, fs, cfg, logs, _, file := oauthSetup(t, oauth.RefreshToken, false)
	seedRefreshToken(t, ts, file, "rt-1")
	ts.RevokeAll()
	s := newTarget(t, cfg)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	msg := out.Results[0].Message
	if !strings.Contains(msg, "invalid_grant") || !strings.Contains(msg, "outbox oauth login test") {
		t.Errorf("last_error %q does not explain", msg)
	}
	until, reason, paused := s.Paused()
	if !paused || !strings.Contains(reason, "outbox oauth login test") || until.Sub(cfg.Now()) < pauseMax {
		t.Errorf("paused %v until %v: %q", paused, until, reason)
	}
	// Mail stays queued: later attempts are deferred without a token request.
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	if len(ts.Grants()) != 1 || len(fs.messages()) != 0 {
		t.Errorf("grants %v, messages %d", ts.Grants(), len(fs.messages()))
	}
	for _, leak := range []string{oauthSecret, "rt-1"} {
		if strings.Contains(logs.String(), leak) || strings.Contains(msg, leak) {
			t.Errorf("%q leaked:\n%s", leak, logs.String())
		}
	}
	// `outbox oauth login` writes new tokens: the upstream resumes.
	seedRefreshToken(t, ts, file, "rt-2")
	if _, _, paused := s.Paused(); paused {
		t.Fatal("still paused after new tokens were written")
	}
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
}

func TestOAuthClientSecretNeverInLogsOrErrors(t *testing.T) {
	ts, _, cfg, logs, _, _ := oauthSetup(t, oauth.ClientCredentials, false)
	_ = ts
	// A wrong secret: the fake endpoint echoes what it got.
	src, err := oauth.New(oauth.Config{Name: "test", Flow: oauth.ClientCredentials, TokenURL: ts.TokenURL, ClientID: "app",
		ClientSecret: func(context.Context) (string, error) { return "wrong-" + oauthSecret, nil }, Now: cfg.Now, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	cfg.OAuth, cfg.Token = src, nil
	s := newTarget(t, cfg)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	_, reason, _ := s.Paused()
	for what, text := range map[string]string{"last_error": out.Results[0].Message, "log": logs.String(), "pause": reason} {
		if strings.Contains(text, oauthSecret) {
			t.Errorf("client secret in %s: %s", what, text)
		}
	}
	if !strings.Contains(out.Results[0].Message, "invalid_client") {
		t.Errorf("last_error %q", out.Results[0].Message)
	}
	rep, err := s.Probe(context.Background(), "")
	if err == nil || strings.Contains(err.Error(), oauthSecret) || strings.Contains(rep.AuthError, oauthSecret) {
		t.Errorf("probe %v %+v", err, rep)
	}
}

func TestOAuthProbeReportsToken(t *testing.T) {
	_, _, cfg, _, _, _ := oauthSetup(t, oauth.ClientCredentials, false)
	s := newTarget(t, cfg)
	rep, err := s.Probe(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OAuth || !rep.AuthOK || rep.AuthMech != "XOAUTH2" || time.Until(rep.TokenExpiry) < 50*time.Minute {
		t.Errorf("report %+v", rep)
	}
}

func TestOAuthTokenEndpointDownIsTemporary(t *testing.T) {
	ts, fs, cfg, logs, _, _ := oauthSetup(t, oauth.ClientCredentials, false)
	ts.FailNext(1)
	s := newTarget(t, cfg)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if !strings.Contains(out.Results[0].Message, "503") || strings.Contains(logs.String(), "configuration problem") {
		t.Errorf("result %+v\nlogs:\n%s", out.Results[0], logs.String())
	}
	if _, _, paused := s.Paused(); paused {
		t.Error("one failed token request paused the upstream")
	}
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	if len(fs.messages()) != 1 {
		t.Errorf("messages %d", len(fs.messages()))
	}
}

// After a refused token, a token endpoint that is down for the fresh one
// is temporary, as it is for the first token: no "configuration problem",
// no AUTH failure counted.
func TestOAuthRefetchWithEndpointDownIsTemporary(t *testing.T) {
	ts, _, cfg, logs, _, file := oauthSetup(t, oauth.RefreshToken, true)
	seedRefreshToken(t, ts, file, "refresh-seed")
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	s.Close()
	ts.RevokeAccess()
	ts.FailNext(1)
	s = newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	if strings.Contains(logs.String(), "configuration problem") || s.Failures().Auth != 0 {
		t.Errorf("an unreachable token endpoint was blamed on the configuration (auth failures %d):\n%s", s.Failures().Auth, logs.String())
	}
}
