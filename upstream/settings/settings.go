// Package settings is one SMTP upstream's settings: what relay.hcl says
// about it, with the typed TLS and authentication modes, the defaults and
// the one check of what goes together. The configuration produces it and
// the SMTP client takes it as it is, so both apply the same rules. It
// imports nothing but the standard library and internal/loopback: the
// configuration, which the sendmail shim loads at every call, builds it
// without pulling in an SMTP client.
package settings

import (
	"fmt"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/internal/loopback"
)

// TLS is how the connection to an upstream is protected.
type TLS string

const (
	// StartTLS upgrades a plain connection (port 587) with STARTTLS,
	// which must be offered.
	StartTLS TLS = "starttls"
	// ImplicitTLS speaks TLS from the first byte (port 465).
	ImplicitTLS TLS = "tls"
	// NoTLS sends in clear; it is allowed to loopback hosts only.
	NoTLS TLS = "none"
)

// Valid reports whether t is one of the modes.
func (t TLS) Valid() bool { return t == StartTLS || t == ImplicitTLS || t == NoTLS }

// DefaultPort is the port that goes with the mode, 0 for an invalid one.
func (t TLS) DefaultPort() int {
	switch t {
	case StartTLS:
		return 587
	case ImplicitTLS:
		return 465
	case NoTLS:
		return 25
	}
	return 0
}

// Auth is the SASL mechanism to log in with.
type Auth string

const (
	// AuthAuto picks the best mechanism the server offers for the
	// credentials at hand, or none without credentials.
	AuthAuto        Auth = "auto"
	AuthPlain       Auth = "plain"
	AuthLogin       Auth = "login"
	AuthCRAMMD5     Auth = "cram-md5"
	AuthXOAuth2     Auth = "xoauth2"
	AuthOAuthBearer Auth = "oauthbearer"
	// AuthNone never authenticates, whatever the credentials.
	AuthNone Auth = "none"
)

// Valid reports whether a is one of the mechanisms.
func (a Auth) Valid() bool {
	switch a {
	case AuthAuto, AuthPlain, AuthLogin, AuthCRAMMD5, AuthXOAuth2, AuthOAuthBearer, AuthNone:
		return true
	}
	return false
}

// Password reports whether the mechanism logs in with a password.
func (a Auth) Password() bool { return a == AuthPlain || a == AuthLogin || a == AuthCRAMMD5 }

// Bearer reports whether the mechanism logs in with an OAuth2 token.
func (a Auth) Bearer() bool { return a == AuthXOAuth2 || a == AuthOAuthBearer }

// Mechanism is the SASL name of a fixed mechanism ("PLAIN", "XOAUTH2").
func (a Auth) Mechanism() string { return strings.ToUpper(string(a)) }

// Defaults for what an upstream block leaves out.
const (
	DefaultMaxConnections = 2
	DefaultIdleTimeout    = 30 * time.Second
	DefaultConnectTimeout = 30 * time.Second
)

// SMTP is one SMTP upstream's settings. Paths are absolute once the
// configuration has resolved them.
type SMTP struct {
	Name               string // the upstream block's name, used in logs and errors
	Host               string
	Port               int // 0: the TLS mode's port
	TLS                TLS // "": StartTLS
	CAFile             string
	InsecureSkipVerify bool // tls_skip_verify: only when the operator set it
	Username           string
	Auth               Auth // "": AuthAuto
	// Where the password or the bearer token comes from; at most one of
	// each is set.
	PasswordFile    string
	PasswordEnv     string
	PasswordCommand string
	TokenFile       string
	TokenCommand    string
	MaxConnections  int // concurrent connections, 0: DefaultMaxConnections
	RateN           int // with RatePer: at most RateN messages per RatePer; 0: unlimited
	RatePer         time.Duration
	IdleTimeout     time.Duration // pooled idle connection lifetime, 0: DefaultIdleTimeout
	ConnectTimeout  time.Duration // 0: DefaultConnectTimeout
}

// Default fills in what is unset. oauth says the upstream gets its tokens
// from an OAuth2 flow, which makes xoauth2 the automatic choice.
func (s *SMTP) Default(oauth bool) {
	s.Host = strings.TrimSuffix(strings.TrimPrefix(s.Host, "["), "]")
	if s.TLS == "" {
		s.TLS = StartTLS
	}
	if s.Auth == "" || oauth && s.Auth == AuthAuto {
		s.Auth = AuthAuto
		if oauth {
			s.Auth = AuthXOAuth2
		}
	}
	if s.Port == 0 {
		s.Port = s.TLS.DefaultPort()
	}
	if s.MaxConnections <= 0 {
		s.MaxConnections = DefaultMaxConnections
	}
	if s.IdleTimeout <= 0 {
		s.IdleTimeout = DefaultIdleTimeout
	}
	if s.ConnectTimeout <= 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
}

// Problem is one thing wrong with the settings: the key of relay.hcl it
// concerns ("" for the block as a whole), a title and a sentence that
// names the fix.
type Problem struct {
	Key     string
	Summary string
	Detail  string
}

func (p Problem) Error() string { return p.Detail }

// Credentials says where a password or a token comes from besides the
// sources named in SMTP: a function the caller supplies, or an oauth2
// block.
type Credentials struct {
	Password bool
	Token    bool
}

// Check reports what is wrong with settings that Default has completed,
// in the order relay.hcl is best fixed. The configuration reports every
// problem with its file and line; the SMTP client refuses to start with
// the first.
func (s *SMTP) Check(extra Credentials) []Problem {
	var out []Problem
	add := func(key, summary, detail string, args ...any) {
		out = append(out, Problem{Key: key, Summary: summary, Detail: fmt.Sprintf(detail, args...)})
	}
	if s.Host == "" {
		add("host", "Upstream needs a host", "upstream %q has no host; set host = \"smtp.example.com\" or provider = \"gmail\" (see the README for the provider list).", s.Name)
	}
	switch {
	case !s.TLS.Valid():
		add("tls", "Invalid tls mode", "tls = %q; use \"starttls\" (port 587), \"tls\" (implicit TLS, port 465) or \"none\" (loopback hosts only).", s.TLS)
	case s.TLS == NoTLS && s.Host != "" && !loopback.Host(s.Host):
		add("tls", "Plaintext upstream refused", "tls = \"none\" is allowed only for loopback hosts, and %s is not one; use tls = \"starttls\" or \"tls\".", s.Host)
	}
	if s.Port < 1 || s.Port > 65535 {
		add("port", "Invalid port", "port %d is out of range 1-65535.", s.Port)
	}
	if !s.Auth.Valid() {
		add("auth", "Invalid auth", "auth = %q; use \"auto\", \"plain\", \"login\", \"cram-md5\", \"xoauth2\", \"oauthbearer\" or \"none\".", s.Auth)
	}
	passwords := count(s.PasswordFile, s.PasswordEnv, s.PasswordCommand)
	if passwords > 1 {
		add("", "Several password sources", "upstream %q sets more than one of password_file, password_env and password_command; keep one.", s.Name)
	}
	tokens := count(s.TokenFile, s.TokenCommand)
	if tokens > 1 {
		add("", "Several token sources", "upstream %q sets both token_file and token_command; keep one.", s.Name)
	}
	if (passwords > 0 || tokens > 0) && s.Username == "" {
		add("", "Missing username", "upstream %q has a password or token but no username; add username = \"you@example.com\".", s.Name)
	}
	password, token := passwords > 0 || extra.Password, tokens > 0 || extra.Token
	switch {
	case s.Auth.Password() && !password:
		add("auth", "Missing password", "auth = %q needs a password; set password_file, password_env or password_command.", s.Auth)
	case s.Auth.Bearer() && !token:
		add("auth", "Missing token", "auth = %q needs token_file or token_command.", s.Auth)
	case (s.Auth.Password() || s.Auth.Bearer()) && s.Username == "" && passwords+tokens == 0:
		add("username", "Missing username", "auth = %q needs username, the account to log in as.", s.Auth)
	case s.Auth == AuthAuto && s.Username != "" && !password && !token:
		add("username", "Missing password", "upstream %q has a username but no password or token; set password_file (or password_env, password_command), or remove username.", s.Name)
	}
	if s.RateN < 0 || s.RateN > 0 && s.RatePer <= 0 {
		add("rate", "Invalid rate", "a rate limit needs a positive count and period.")
	}
	return out
}

func count(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
