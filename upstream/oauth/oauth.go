// Package oauth gets and refreshes the OAuth2 access tokens an upstream
// presents with XOAUTH2 or OAUTHBEARER, so that no outside helper is
// needed: client credentials (Microsoft 365 app-only), a refresh token
// obtained once with `outbox oauth login` (Google and Microsoft delegated
// access) and Google service accounts with domain-wide delegation. The
// token flows themselves are golang.org/x/oauth2's.
//
// Tokens are cached in a JSON file (mode 0600, replaced atomically), so a
// restart does not cost a token request and a rotated refresh token is
// never lost.
package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/google"
)

// The flows an upstream's oauth2 block may name.
const (
	ClientCredentials = "client_credentials"
	RefreshToken      = "refresh_token"
	ServiceAccount    = "service_account"
)

// Config describes where and how to get tokens for one upstream.
type Config struct {
	Name         string // upstream name, used in messages ("outbox oauth login NAME")
	Flow         string // ClientCredentials, RefreshToken or ServiceAccount
	TokenURL     string
	AuthURL      string // authorization endpoint, for the loopback login
	DeviceURL    string // device authorization endpoint, for the device login
	ClientID     string
	ClientSecret func(ctx context.Context) (string, error) // nil: a public client
	Scopes       []string
	// RefreshWithScope sends Scopes with each refresh request (RFC 6749
	// §6 allows it; Microsoft's endpoint wants it), where x/oauth2's
	// refresher sends none.
	RefreshWithScope bool
	KeyFile          string // service_account: the JSON key
	Subject          string // service_account: the mailbox to act as
	TokenFile        string // cache of the current tokens
	// HTTPClient makes the token requests; nil: a client with a 30 s
	// timeout.
	HTTPClient *http.Client
	Now        func() time.Time // nil: time.Now
	Logger     *slog.Logger     // nil: slog.Default()
}

// refreshMargin is how long before its expiry a token is replaced. A
// token is checked when a connection authenticates, and a connection may
// then live for minutes; five minutes also covers modest clock skew.
// Short-lived tokens are refreshed at half their lifetime instead.
const refreshMargin = 5 * time.Minute

// requestTimeout bounds one token request when no HTTPClient is given.
const requestTimeout = 30 * time.Second

// Source hands out a valid access token, refreshing it when due. It is
// safe for concurrent use; concurrent callers share one refresh.
type Source struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	tok       *oauth2.Token
	refreshAt time.Time
	fileStamp stamp // of the token file when last read or written
	// problem is the last configuration error (invalid_grant and the
	// like). It is returned without asking the endpoint again until the
	// token file or the secret changes, or problemRetry passes.
	problem   *Error
	problemAt time.Time
	secretSum string // of the client secret in use when problem was set

	// refreshed and failed count requests to the token endpoint, for
	// the outbox_oauth2_token_refreshes_total metric.
	refreshed, failed atomic.Uint64
}

// problemRetry is how often a configuration problem is tried again
// against the token endpoint even when nothing changed locally: an
// administrator may have fixed it on the provider's side.
const problemRetry = 10 * time.Minute

// New checks cfg and returns its Source. It reads the token file, if any,
// but makes no request.
func New(cfg Config) (*Source, error) {
	switch cfg.Flow {
	case ClientCredentials, RefreshToken, ServiceAccount:
	default:
		return nil, fmt.Errorf("oauth2 flow %q is not one of client_credentials, refresh_token, service_account", cfg.Flow)
	}
	if cfg.Flow != ServiceAccount && (cfg.TokenURL == "" || cfg.ClientID == "") {
		return nil, fmt.Errorf("oauth2 flow %s needs token_url and client_id", cfg.Flow)
	}
	if cfg.Flow == ClientCredentials && cfg.ClientSecret == nil {
		return nil, errors.New("oauth2 flow client_credentials needs client_secret_file or client_secret_env")
	}
	if cfg.Flow == ServiceAccount && cfg.KeyFile == "" {
		return nil, errors.New("oauth2 flow service_account needs key_file")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: requestTimeout}
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("upstream", cfg.Name)}
	s.mu.Lock()
	s.loadLocked()
	s.mu.Unlock()
	return s, nil
}

// Refreshes reports how many token requests succeeded and failed.
func (s *Source) Refreshes() (ok, failed uint64) {
	return s.refreshed.Load(), s.failed.Load()
}

// Flow returns the configured flow.
func (s *Source) Flow() string { return s.cfg.Flow }

// Token returns an access token that is not about to expire, fetching a
// new one when needed. Its errors never hold a secret; a configuration
// problem is an *Error whose Fix says what to do.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if s.fileChangedLocked() {
		// `outbox oauth login` (or another process) wrote new tokens.
		s.loadLocked()
		s.problem = nil
	}
	if s.tok != nil && s.tok.AccessToken != "" && (s.refreshAt.IsZero() || now.Before(s.refreshAt)) {
		return s.tok.AccessToken, nil
	}
	if s.problem != nil && now.Sub(s.problemAt) < problemRetry && !s.secretChangedLocked(ctx) {
		return "", s.problem
	}
	if err := s.refreshLocked(ctx); err != nil {
		return "", err
	}
	return s.tok.AccessToken, nil
}

// Invalidate forgets token, which the server refused: the next Token call
// fetches a new one. A token that was already replaced is left alone.
func (s *Source) Invalidate(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil && s.tok.AccessToken == token {
		s.tok.AccessToken = ""
	}
}

// Changed reports whether the token file changed since it was last read,
// which is how a paused upstream learns that `outbox oauth login` ran.
func (s *Source) Changed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fileChangedLocked()
}

// Info describes the current token for `outbox test-upstream`, without the
// token itself.
type Info struct {
	Expiry time.Time // zero: unknown
	Scopes []string  // from the token response, else from the token's own claims
	Roles  []string  // application permissions a Microsoft token carries
}

// Info returns what is known of the current token.
func (s *Source) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok == nil {
		return Info{}
	}
	in := Info{Expiry: s.tok.Expiry}
	if sc, ok := s.tok.Extra("scope").(string); ok && sc != "" {
		in.Scopes = strings.Fields(sc)
	}
	claims := jwtClaims(s.tok.AccessToken)
	if len(in.Scopes) == 0 && claims.Scp != "" {
		in.Scopes = strings.Fields(claims.Scp)
	}
	in.Roles = claims.Roles
	return in
}

// jwtClaims reads, without verifying, the claims of an access token that
// is a JWT (Microsoft's are; Google's are not). They are only shown to the
// operator.
func jwtClaims(tok string) (c struct {
	Scp   string   `json:"scp"`
	Roles []string `json:"roles"`
}) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return c
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err == nil {
		json.Unmarshal(b, &c)
	}
	return c
}

// refreshLocked fetches a new token with the configured flow and saves
// it.
func (s *Source) refreshLocked(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			s.failed.Add(1)
		} else {
			s.refreshed.Add(1)
		}
	}()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	var secret string
	if s.cfg.ClientSecret != nil {
		var err error
		if secret, err = s.cfg.ClientSecret(ctx); err != nil {
			// Only the operator can fix it: an AUTH failure that says so,
			// not a quiet back-off as for an endpoint that is down.
			return s.setProblem(ctx, &Error{Upstream: s.cfg.Name, Code: "client_secret_unreadable",
				Description: "oauth2 client secret: " + err.Error(),
				Fix:         "make client_secret_file readable by the daemon's user (0640 root:outbox), or set client_secret_env"})
		}
	}
	var (
		tok *oauth2.Token
		old string // the refresh token used, to be kept out of messages
	)
	switch s.cfg.Flow {
	case ClientCredentials:
		cc := clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, TokenURL: s.cfg.TokenURL,
			Scopes: s.cfg.Scopes, AuthStyle: oauth2.AuthStyleInParams}
		tok, err = cc.Token(ctx)
	case RefreshToken:
		if s.tok == nil || s.tok.RefreshToken == "" {
			return s.setProblem(ctx, &Error{Upstream: s.cfg.Name, Code: "no_refresh_token",
				Description: "no refresh token in " + s.cfg.TokenFile,
				Fix:         fmt.Sprintf("run `outbox oauth login %s` once", s.cfg.Name)})
		}
		old = s.tok.RefreshToken
		if s.cfg.RefreshWithScope {
			// clientcredentials lets grant_type be replaced, which makes
			// it a refresh request that carries the scopes.
			cc := clientcredentials.Config{ClientID: s.cfg.ClientID, ClientSecret: secret, TokenURL: s.cfg.TokenURL,
				Scopes: s.cfg.Scopes, AuthStyle: oauth2.AuthStyleInParams,
				EndpointParams: url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old}}}
			tok, err = cc.Token(ctx)
		} else {
			oc := s.oauth2Config(secret, "")
			tok, err = oc.TokenSource(ctx, &oauth2.Token{RefreshToken: old}).Token()
		}
	case ServiceAccount:
		key, rerr := os.ReadFile(s.cfg.KeyFile)
		if rerr != nil {
			return s.setProblem(ctx, &Error{Upstream: s.cfg.Name, Code: "key_file_unreadable",
				Description: "oauth2 key_file: " + rerr.Error(),
				Fix:         "make key_file readable by the daemon's user (0640 root:outbox)"})
		}
		jc, jerr := google.JWTConfigFromJSON(key, s.cfg.Scopes...)
		if jerr != nil {
			// The parser's message may quote the file; say only what it is.
			return s.setProblem(ctx, &Error{Upstream: s.cfg.Name, Code: "bad_key_file",
				Description: s.cfg.KeyFile + " is not a Google service account JSON key",
				Fix:         "download the key of the service account again (IAM > Service accounts > Keys, JSON)"})
		}
		jc.Subject = s.cfg.Subject
		if s.cfg.TokenURL != "" {
			jc.TokenURL = s.cfg.TokenURL
		}
		tok, err = jc.TokenSource(ctx).Token()
		secret = jc.PrivateKeyID
	}
	if err != nil {
		return s.tokenError(ctx, err, secret, old)
	}
	if tok.AccessToken == "" {
		return fmt.Errorf("upstream %s: the token endpoint answered without an access token", s.cfg.Name)
	}
	if tok.RefreshToken == "" && s.tok != nil {
		tok.RefreshToken = s.tok.RefreshToken
	}
	rotated := s.tok != nil && old != "" && tok.RefreshToken != old
	s.setTokenLocked(tok)
	s.problem = nil
	if err := s.saveLocked(); err != nil {
		if rotated {
			// The old refresh token may stop working soon: this is worth
			// an error, and the new one is kept in memory meanwhile.
			s.log.Error("oauth2: cannot save the rotated refresh token; it is kept in memory until the next restart",
				"file", s.cfg.TokenFile, "error", err.Error())
		} else {
			s.log.Warn("oauth2: cannot save the token cache", "file", s.cfg.TokenFile, "error", err.Error())
		}
	}
	s.log.Info("oauth2 token refreshed", "flow", s.cfg.Flow, "expires", tok.Expiry.Format(time.RFC3339), "refresh_token_rotated", rotated)
	return nil
}

// setTokenLocked makes tok current and schedules its refresh.
func (s *Source) setTokenLocked(tok *oauth2.Token) {
	s.tok = tok
	s.refreshAt = time.Time{}
	if !tok.Expiry.IsZero() {
		life := tok.Expiry.Sub(s.cfg.Now())
		s.refreshAt = tok.Expiry.Add(-min(refreshMargin, max(life/2, 0)))
	}
}

// oauth2Config is the x/oauth2 configuration of the delegated flows.
func (s *Source) oauth2Config(secret, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: secret,
		Endpoint: oauth2.Endpoint{TokenURL: s.cfg.TokenURL, AuthURL: s.cfg.AuthURL,
			DeviceAuthURL: s.cfg.DeviceURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirect,
		Scopes:      s.cfg.Scopes,
	}
}

// configCodes are the token endpoint's errors that no retry will cure
// (RFC 6749 §5.2): the grant, the client or the scope is wrong.
var configCodes = map[string]string{
	"invalid_grant":          "the grant was refused (refresh token expired or revoked, password changed, consent withdrawn, or the mailbox is not allowed)",
	"invalid_client":         "the client was refused (wrong client_id or client secret, or the secret expired)",
	"unauthorized_client":    "this client may not use this flow (check the app registration)",
	"invalid_scope":          "the scope was refused",
	"unsupported_grant_type": "the endpoint does not support this flow",
	"access_denied":          "access was denied",
	"invalid_request":        "the request was refused (check tenant, client_id and scopes)",
}

// tokenError turns a failed token request into an error fit for a log
// line and a recipient's last_error: a configuration problem becomes an
// *Error with its fix; anything else stays temporary. secret and
// refreshTok are removed from whatever the endpoint said.
func (s *Source) tokenError(ctx context.Context, err error, secret, refreshTok string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		if ctx.Err() != nil {
			return fmt.Errorf("upstream %s: oauth2 token request: %w", s.cfg.Name, ctx.Err())
		}
		return fmt.Errorf("upstream %s: oauth2 token request to %s failed: %s", s.cfg.Name, hostOf(s.cfg.TokenURL),
			scrub(err.Error(), secret, refreshTok))
	}
	code, desc := re.ErrorCode, re.ErrorDescription
	if code == "" {
		// The jwt package does not parse the error body.
		var b struct {
			Error string `json:"error"`
			Desc  string `json:"error_description"`
		}
		if json.Unmarshal(re.Body, &b) == nil {
			code, desc = b.Error, b.Desc
		}
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	what, isConfig := configCodes[code]
	if !isConfig || status >= 500 || status == http.StatusTooManyRequests {
		return fmt.Errorf("upstream %s: oauth2 token endpoint %s answered %d %s; will retry", s.cfg.Name,
			hostOf(s.cfg.TokenURL), status, scrub(strings.TrimSpace(code+" "+firstLine(desc)), secret, refreshTok))
	}
	e := &Error{Upstream: s.cfg.Name, Code: code, Description: scrub(firstLine(desc), secret, refreshTok), What: what}
	switch {
	case s.cfg.Flow == RefreshToken && (code == "invalid_grant" || code == "access_denied"):
		e.Fix = fmt.Sprintf("run `outbox oauth login %s`", s.cfg.Name)
	case s.cfg.Flow == ClientCredentials:
		e.Fix = "check tenant, client_id and the client secret of the app registration, and that it has the SMTP.SendAsApp permission with admin consent"
	case s.cfg.Flow == ServiceAccount:
		e.Fix = "check the key_file, and that the service account's client ID has domain-wide delegation for https://mail.google.com/ in the Admin console"
	default:
		e.Fix = fmt.Sprintf("check client_id and the client secret, then run `outbox oauth login %s`", s.cfg.Name)
	}
	return s.setProblem(ctx, e)
}

func (s *Source) setProblem(ctx context.Context, e *Error) error {
	s.problem, s.problemAt = e, s.cfg.Now()
	s.secretSum = s.secretDigest(ctx)
	s.log.Error("oauth2: configuration problem, mail stays queued", "code", e.Code, "error", e.Description, "fix", e.Fix)
	return e
}

// secretChangedLocked reports whether the client secret or key file
// differs from the one in use when the last problem was seen.
func (s *Source) secretChangedLocked(ctx context.Context) bool {
	return s.secretDigest(ctx) != s.secretSum
}

func (s *Source) secretDigest(ctx context.Context) string {
	var parts []string
	if s.cfg.ClientSecret != nil {
		if v, err := s.cfg.ClientSecret(ctx); err == nil {
			parts = append(parts, digest(v))
		}
	}
	if s.cfg.KeyFile != "" {
		parts = append(parts, statOf(s.cfg.KeyFile).String())
	}
	return strings.Join(parts, "/")
}

// Error is a configuration problem with OAuth2: retrying will not help
// until the operator acts. Its text never holds a secret.
type Error struct {
	Upstream    string
	Code        string // RFC 6749 error code, or one of ours
	Description string // what the endpoint said, first line
	What        string // what Code means
	Fix         string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s: oauth2: %s", e.Upstream, e.Code)
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	if e.What != "" {
		b.WriteString(" (" + e.What + ")")
	}
	if e.Fix != "" {
		b.WriteString("; " + e.Fix)
	}
	return b.String()
}

// ConfigProblem marks the error as one only the operator can fix; the
// upstream package pauses on it.
func (e *Error) ConfigProblem() bool { return true }

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	s = strings.TrimSpace(strings.TrimSuffix(s, "\r"))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// scrub removes secrets from text, in case an endpoint echoes them.
func scrub(text string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			text = strings.ReplaceAll(text, sec, "[redacted]")
		}
	}
	return text
}

func hostOf(u string) string {
	if _, rest, ok := strings.Cut(u, "://"); ok {
		h, _, _ := strings.Cut(rest, "/")
		return h
	}
	return u
}

// TokenInfo is Info in plain values, for packages that declare their own
// interface rather than import this one.
func (s *Source) TokenInfo() (expiry time.Time, scopes, roles []string) {
	in := s.Info()
	return in.Expiry, in.Scopes, in.Roles
}
