package oauth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/outbox-mta/outbox/internal/oauthtest"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func static(s string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) { return s, nil }
}

const secret = "client-secret-value-9f8e7d"

func newSource(t *testing.T, cfg Config, logs *logBuf) *Source {
	t.Helper()
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.Name == "" {
		cfg.Name = "m365"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClientCredentialsCachesAndRefreshesBeforeExpiry(t *testing.T) {
	clk := &clock{t: time.Now()}
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: secret, Lifetime: time.Hour, Now: clk.Now})
	file := filepath.Join(t.TempDir(), "tokens.json")
	s := newSource(t, Config{Flow: ClientCredentials, TokenURL: srv.TokenURL, ClientID: "app",
		ClientSecret: static(secret), Scopes: []string{"https://outlook.office365.com/.default"},
		TokenFile: file, Now: clk.Now}, nil)
	ctx := context.Background()
	t1, err := s.Token(ctx)
	if err != nil || !srv.Valid(t1) {
		t.Fatalf("token %q, %v", t1, err)
	}
	if f := srv.Forms()[0]; f.Get("scope") != "https://outlook.office365.com/.default" || f.Get("client_secret") != secret {
		t.Errorf("request %v", f)
	}
	if t2, _ := s.Token(ctx); t2 != t1 || len(srv.Grants()) != 1 {
		t.Fatalf("second call fetched again: %q, grants %v", t2, srv.Grants())
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v, %v", fi, err)
	}
	// 54 minutes on, the token has 6 minutes left: still used.
	clk.Add(54 * time.Minute)
	if t2, _ := s.Token(ctx); t2 != t1 {
		t.Fatalf("refreshed too early")
	}
	// 56 minutes on, it has 4 minutes left: replaced before it expires.
	clk.Add(2 * time.Minute)
	t3, err := s.Token(ctx)
	if err != nil || t3 == t1 || !srv.Valid(t3) {
		t.Fatalf("not refreshed before expiry: %q %v", t3, err)
	}
	// A restart reads the cached token instead of asking again.
	s2 := newSource(t, Config{Flow: ClientCredentials, TokenURL: srv.TokenURL, ClientID: "app",
		ClientSecret: static(secret), TokenFile: file, Now: clk.Now}, nil)
	if t4, _ := s2.Token(ctx); t4 != t3 || len(srv.Grants()) != 2 {
		t.Fatalf("restart did not use the cache: %q, grants %v", t4, srv.Grants())
	}
}

// writeTokens seeds a token file as `outbox oauth login` leaves it.
func writeTokens(t *testing.T, file, clientID, tokenURL, refresh string) {
	t.Helper()
	b, _ := json.Marshal(tokenFile{Flow: RefreshToken, ClientID: clientID, TokenURL: tokenURL, RefreshToken: refresh})
	if err := writeAtomic(file, b); err != nil {
		t.Fatal(err)
	}
}

func TestRefreshTokenRotatedIsSavedAtomically(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", Rotate: true, Scope: "https://mail.google.com/"})
	srv.AddRefreshToken("refresh-0")
	dir := t.TempDir()
	file := filepath.Join(dir, "oauth2-gmail.json")
	writeTokens(t, file, "app", srv.TokenURL, "refresh-0")
	s := newSource(t, Config{Name: "gmail", Flow: RefreshToken, TokenURL: srv.TokenURL, ClientID: "app", TokenFile: file}, nil)
	tok, err := s.Token(context.Background())
	if err != nil || !srv.Valid(tok) {
		t.Fatalf("%q %v", tok, err)
	}
	var tf tokenFile
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &tf); err != nil {
		t.Fatal(err)
	}
	if tf.RefreshToken == "refresh-0" || tf.RefreshToken == "" || tf.RefreshToken != srv.RefreshTokens()[0] {
		t.Fatalf("rotated refresh token not saved: file has %q, server knows %v", tf.RefreshToken, srv.RefreshTokens())
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if in := s.Info(); len(in.Scopes) != 1 || in.Scopes[0] != "https://mail.google.com/" || in.Expiry.IsZero() {
		t.Errorf("info %+v", in)
	}
}

func TestInvalidGrantIsAConfigProblemThatExplains(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: secret})
	file := filepath.Join(t.TempDir(), "tokens.json")
	writeTokens(t, file, "app", srv.TokenURL, "revoked-refresh-token")
	var logs logBuf
	s := newSource(t, Config{Name: "m365", Flow: RefreshToken, TokenURL: srv.TokenURL, ClientID: "app",
		ClientSecret: static(secret), TokenFile: file}, &logs)
	_, err := s.Token(context.Background())
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != "invalid_grant" || !strings.Contains(err.Error(), "outbox oauth login m365") {
		t.Fatalf("error %v", err)
	}
	for _, leak := range []string{secret, "revoked-refresh-token"} {
		if strings.Contains(err.Error(), leak) || strings.Contains(logs.String(), leak) {
			t.Errorf("%q leaked: %v\n%s", leak, err, logs.String())
		}
	}
	// Asking again does not hammer the endpoint.
	if _, err2 := s.Token(context.Background()); err2 != err || len(srv.Grants()) != 1 {
		t.Errorf("second call: %v, grants %v", err2, srv.Grants())
	}
	// A new login (the file changes) is picked up at once.
	srv.AddRefreshToken("good")
	writeTokens(t, file, "app", srv.TokenURL, "good")
	if !s.Changed() {
		t.Fatal("Changed is false after the token file was rewritten")
	}
	if tok, err := s.Token(context.Background()); err != nil || !srv.Valid(tok) {
		t.Fatalf("after login: %q %v", tok, err)
	}
}

func TestWrongClientSecretNeverShown(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: "the-right-one"})
	var logs logBuf
	s := newSource(t, Config{Flow: ClientCredentials, TokenURL: srv.TokenURL, ClientID: "app",
		ClientSecret: static(secret), TokenFile: filepath.Join(t.TempDir(), "t.json")}, &logs)
	_, err := s.Token(context.Background())
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != "invalid_client" {
		t.Fatalf("error %v", err)
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
		t.Errorf("client secret leaked (the fake endpoint echoes it): %v\n%s", err, logs.String())
	}
	if !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("expected the echoed secret to be redacted: %v", err)
	}
}

func TestServerErrorIsTemporary(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: secret})
	srv.FailNext(1)
	s := newSource(t, Config{Flow: ClientCredentials, TokenURL: srv.TokenURL, ClientID: "app", ClientSecret: static(secret)}, nil)
	_, err := s.Token(context.Background())
	var oe *Error
	if err == nil || errors.As(err, &oe) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("error %v", err)
	}
	if _, err := s.Token(context.Background()); err != nil {
		t.Fatalf("retry: %v", err)
	}
}

func TestServiceAccountSignsForTheMailbox(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	srv := oauthtest.New(t, oauthtest.Options{Key: &key.PublicKey})
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyJSON, _ := json.Marshal(map[string]string{
		"type": "service_account", "client_email": "relay@project.iam.gserviceaccount.com", "private_key_id": "kid1",
		"private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"token_uri":   srv.TokenURL, "client_id": "1234",
	})
	keyFile := filepath.Join(t.TempDir(), "key.json")
	os.WriteFile(keyFile, keyJSON, 0o600)
	s := newSource(t, Config{Name: "ws", Flow: ServiceAccount, KeyFile: keyFile, Subject: "alice@example.com",
		Scopes: []string{"https://mail.google.com/"}}, nil)
	tok, err := s.Token(context.Background())
	if err != nil || !srv.Valid(tok) {
		t.Fatalf("%q %v", tok, err)
	}
	if sub := srv.Subjects(); len(sub) != 1 || sub[0] != "alice@example.com" {
		t.Errorf("subjects %v", sub)
	}
}

func TestDeviceLogin(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app"})
	file := filepath.Join(t.TempDir(), "t.json")
	s := newSource(t, Config{Flow: RefreshToken, TokenURL: srv.TokenURL, DeviceURL: srv.DeviceURL, ClientID: "app",
		Scopes: []string{"https://outlook.office.com/SMTP.Send", "offline_access"}, TokenFile: file}, nil)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.DeviceLogin(ctx, LoginOptions{Out: &out}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ABCD-EFGH") || !strings.Contains(out.String(), srv.URL+"/device") {
		t.Errorf("instructions: %s", out.String())
	}
	// The daemon's source reads what the login saved and refreshes with it.
	d := newSource(t, Config{Flow: RefreshToken, TokenURL: srv.TokenURL, ClientID: "app", TokenFile: file}, nil)
	d.Invalidate(d.tok.AccessToken)
	if tok, err := d.Token(ctx); err != nil || !srv.Valid(tok) {
		t.Fatalf("%q %v", tok, err)
	}
	if g := srv.Grants(); g[len(g)-1] != "refresh_token" {
		t.Errorf("grants %v", g)
	}
}

func TestLoopbackLoginWithPKCE(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: secret})
	file := filepath.Join(t.TempDir(), "t.json")
	s := newSource(t, Config{Name: "gmail", Flow: RefreshToken, TokenURL: srv.TokenURL, AuthURL: srv.AuthURL, ClientID: "app",
		ClientSecret: static(secret), Scopes: []string{"https://mail.google.com/"}, TokenFile: file}, nil)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	browser := make(chan error, 1)
	err := s.LoopbackLogin(ctx, LoginOptions{Out: &out, Ready: func(u string) {
		// Play the browser: follow the authorization URL, which
		// redirects to the loopback listener.
		go func() {
			resp, err := http.Get(u)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			browser <- err
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-browser; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "access_type=offline") || !strings.Contains(out.String(), "code_challenge_method=S256") {
		t.Errorf("printed URL: %s", out.String())
	}
	var tf tokenFile
	b, _ := os.ReadFile(file)
	json.Unmarshal(b, &tf)
	if tf.RefreshToken == "" || !srv.Valid(tf.AccessToken) {
		t.Fatalf("saved %+v", tf)
	}
	if strings.Contains(string(b), secret) {
		t.Error("the client secret was written to the token file")
	}
}

func TestInfoReadsMicrosoftRoles(t *testing.T) {
	// An app-only Exchange Online token carries its permissions as roles.
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"https://outlook.office365.com","roles":["SMTP.SendAsApp"]}`))
	s := &Source{}
	s.tok = &oauth2.Token{AccessToken: "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln", Expiry: time.Unix(2000000000, 0)}
	in := s.Info()
	if len(in.Roles) != 1 || in.Roles[0] != "SMTP.SendAsApp" || !in.Expiry.Equal(time.Unix(2000000000, 0)) {
		t.Errorf("%+v", in)
	}
	// Google's tokens are opaque: nothing is made up.
	s.tok = &oauth2.Token{AccessToken: "ya29.a0AfH6SM"}
	if in := s.Info(); in.Roles != nil || in.Scopes != nil {
		t.Errorf("%+v", in)
	}
}

// TestLoopbackLoginPastedAddress: the browser runs elsewhere and cannot
// reach the listener; the operator pastes the address it was sent to.
func TestLoopbackLoginPastedAddress(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", ClientSecret: secret})
	file := filepath.Join(t.TempDir(), "t.json")
	s := newSource(t, Config{Name: "gmail", Flow: RefreshToken, TokenURL: srv.TokenURL, AuthURL: srv.AuthURL, ClientID: "app",
		ClientSecret: static(secret), Scopes: []string{"https://mail.google.com/"}, TokenFile: file}, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var out bytes.Buffer
	err := s.LoopbackLogin(ctx, LoginOptions{Out: &out, In: pr, Ready: func(u string) {
		go func() {
			resp, err := noFollow.Get(u)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			io.WriteString(pw, "not an address\n"+resp.Header.Get("Location")+"\n")
		}()
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(file)
	var tf tokenFile
	if json.Unmarshal(b, &tf); tf.RefreshToken == "" {
		t.Fatalf("saved %s", b)
	}
}

// TestRefreshWithScope: Microsoft's endpoint is sent the scopes with a
// refresh, and a rotated refresh token is kept as with the plain refresh.
func TestRefreshWithScope(t *testing.T) {
	srv := oauthtest.New(t, oauthtest.Options{ClientID: "app", Rotate: true})
	file := filepath.Join(t.TempDir(), "t.json")
	writeTokens(t, file, "app", srv.TokenURL, "rt-0")
	srv.AddRefreshToken("rt-0")
	s := newSource(t, Config{Flow: RefreshToken, TokenURL: srv.TokenURL, ClientID: "app", TokenFile: file,
		Scopes: []string{"https://outlook.office.com/SMTP.Send", "offline_access"}, RefreshWithScope: true}, nil)
	tok, err := s.Token(context.Background())
	if err != nil || !srv.Valid(tok) {
		t.Fatalf("%q %v", tok, err)
	}
	f := srv.Forms()[0]
	if f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != "rt-0" || f.Get("scope") != "https://outlook.office.com/SMTP.Send offline_access" {
		t.Errorf("refresh request %v", f)
	}
	b, _ := os.ReadFile(file)
	if strings.Contains(string(b), "rt-0") || !strings.Contains(string(b), srv.RefreshTokens()[0]) {
		t.Errorf("rotated token not saved: %s", b)
	}
}
