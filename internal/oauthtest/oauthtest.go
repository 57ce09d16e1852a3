// Package oauthtest is a fake OAuth2 authorization server for tests: a
// token endpoint for the client credentials, refresh token, device code,
// authorization code (with PKCE) and JWT bearer grants, on an httptest
// server bound to loopback.
package oauthtest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is the fake authorization server.
type Server struct {
	URL       string // base URL
	TokenURL  string
	AuthURL   string
	DeviceURL string

	srv *httptest.Server

	mu           sync.Mutex
	now          func() time.Time
	clientID     string
	clientSecret string // "" accepts a public client
	lifetime     time.Duration
	rotate       bool
	scope        string
	serial       int
	access       map[string]time.Time // access token → expiry
	refresh      map[string]bool      // valid refresh tokens
	codes        map[string]authCode  // authorization code → its request
	devicePolls  int
	failNext     int // answer this many requests with 503
	key          *rsa.PublicKey
	subjects     []string
	grants       []string
	forms        []url.Values
}

type authCode struct {
	challenge, redirect string
}

// Options sets the server up.
type Options struct {
	ClientID     string
	ClientSecret string
	Lifetime     time.Duration    // access token lifetime; default 1h
	Rotate       bool             // issue a new refresh token on each refresh
	Scope        string           // returned as "scope"
	Now          func() time.Time // nil: time.Now
	Key          *rsa.PublicKey   // verifies JWT bearer assertions
}

// New starts a server; it stops when the test ends.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Lifetime == 0 {
		o.Lifetime = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{now: o.Now, clientID: o.ClientID, clientSecret: o.ClientSecret, lifetime: o.Lifetime,
		rotate: o.Rotate, scope: o.Scope, key: o.Key,
		access: map[string]time.Time{}, refresh: map[string]bool{}, codes: map[string]authCode{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	s.URL = s.srv.URL
	s.TokenURL, s.AuthURL, s.DeviceURL = s.URL+"/token", s.URL+"/authorize", s.URL+"/devicecode"
	return s
}

// AddRefreshToken makes rt a valid refresh token.
func (s *Server) AddRefreshToken(rt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh[rt] = true
}

// RevokeAll invalidates every refresh token and access token.
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.refresh)
	clear(s.access)
}

// RevokeAccess invalidates the access tokens issued so far, as a password
// change or an admin's revocation does; refresh tokens stay valid.
func (s *Server) RevokeAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.access)
}

// FailNext answers the next n token requests with 503.
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// Valid reports whether token is an access token issued and not expired.
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[token]
	return ok && s.now().Before(exp)
}

// Grants lists the grant types requested, in order.
func (s *Server) Grants() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.grants...)
}

// Forms returns every token request's form.
func (s *Server) Forms() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]url.Values(nil), s.forms...)
}

// Subjects lists the sub claims of the JWT assertions received.
func (s *Server) Subjects() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subjects...)
}

// RefreshTokens lists the valid refresh tokens.
func (s *Server) RefreshTokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for rt, ok := range s.refresh {
		if ok {
			out = append(out, rt)
		}
	}
	return out
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/authorize":
		s.authorize(w, r)
	case "/devicecode":
		r.ParseForm()
		writeJSON(w, 200, map[string]any{"device_code": "dev-1", "user_code": "ABCD-EFGH",
			"verification_uri": s.URL + "/device", "expires_in": 60, "interval": 1})
	case "/token":
		s.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != s.clientID || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "bad authorization request", 400)
		return
	}
	s.mu.Lock()
	s.serial++
	code := fmt.Sprintf("code-%d", s.serial)
	s.codes[code] = authCode{challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	s.mu.Unlock()
	u, err := url.Parse(q.Get("redirect_uri"))
	if err != nil {
		http.Error(w, "bad redirect_uri", 400)
		return
	}
	v := url.Values{"code": {code}, "state": {q.Get("state")}}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, 400, "invalid_request", "bad form")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forms = append(s.forms, r.PostForm)
	grant := r.PostForm.Get("grant_type")
	s.grants = append(s.grants, grant)
	if s.failNext > 0 {
		s.failNext--
		oauthError(w, 503, "temporarily_unavailable", "try later")
		return
	}
	if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
		if r.PostForm.Get("client_id") != s.clientID {
			oauthError(w, 400, "invalid_client", "AADSTS700016: unknown client")
			return
		}
		if s.clientSecret != "" && r.PostForm.Get("client_secret") != s.clientSecret {
			// Real endpoints do not echo the secret; this one does, so
			// tests can check that nothing passes it on.
			oauthError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided: "+r.PostForm.Get("client_secret"))
			return
		}
	}
	switch grant {
	case "client_credentials":
	case "refresh_token":
		rt := r.PostForm.Get("refresh_token")
		if !s.refresh[rt] {
			oauthError(w, 400, "invalid_grant", "AADSTS700082: The refresh token has expired or was revoked.")
			return
		}
		if s.rotate {
			delete(s.refresh, rt)
		}
	case "urn:ietf:params:oauth:grant-type:device_code":
		s.devicePolls++
		if s.devicePolls < 2 {
			oauthError(w, 400, "authorization_pending", "waiting for the user")
			return
		}
	case "authorization_code":
		c, ok := s.codes[r.PostForm.Get("code")]
		delete(s.codes, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge || r.PostForm.Get("redirect_uri") != c.redirect {
			oauthError(w, 400, "invalid_grant", "bad code, verifier or redirect_uri")
			return
		}
	case "urn:ietf:params:oauth:grant-type:jwt-bearer":
		sub, err := s.verifyJWT(r.PostForm.Get("assertion"))
		if err != nil {
			oauthError(w, 400, "invalid_grant", err.Error())
			return
		}
		s.subjects = append(s.subjects, sub)
	default:
		oauthError(w, 400, "unsupported_grant_type", grant)
		return
	}
	s.serial++
	at := fmt.Sprintf("access-%d", s.serial)
	s.access[at] = s.now().Add(s.lifetime)
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.lifetime.Seconds())}
	if s.scope != "" {
		resp["scope"] = s.scope
	}
	switch {
	case grant == "authorization_code" || strings.HasSuffix(grant, "device_code") || (grant == "refresh_token" && s.rotate):
		rt := fmt.Sprintf("refresh-%d", s.serial)
		s.refresh[rt] = true
		resp["refresh_token"] = rt
	}
	writeJSON(w, 200, resp)
}

// verifyJWT checks an RS256 assertion with the server's key and returns
// its sub claim.
func (s *Server) verifyJWT(a string) (string, error) {
	parts := strings.Split(a, ".")
	if len(parts) != 3 || s.key == nil {
		return "", fmt.Errorf("malformed assertion")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(s.key, crypto.SHA256, sum[:], sig); err != nil {
		return "", fmt.Errorf("invalid JWT signature")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		Sub   string `json:"sub"`
		Scope string `json:"scope"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return "", err
	}
	return c.Sub, nil
}
