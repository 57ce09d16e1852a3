package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/outbox-mta/outbox/internal/loopback"
	"github.com/outbox-mta/outbox/upstream/preset"
)

// Upstream is one delivery target.
type Upstream struct {
	Name            string
	Type            string // smtp | maildir
	Provider        string
	Host            string
	Port            int
	TLS             string // starttls | tls | none
	CAFile          string
	TLSSkipVerify   bool
	Username        string
	PasswordFile    string
	PasswordEnv     string
	PasswordCommand string
	TokenFile       string
	TokenCommand    string
	Auth            string
	Region          string
	MaxConnections  int
	RateN           int
	RatePer         time.Duration
	EnvelopeFrom    string
	FromHeader      string // keep | rewrite
	Path            string // maildir
	IdleTimeout     time.Duration
	ConnectTimeout  time.Duration
	OAuth2          *OAuth2 // nil without an oauth2 block
}

type rawUpstream struct {
	Name            string    `hcl:"name,label"`
	Type            string    `hcl:"type,optional"`
	Provider        string    `hcl:"provider,optional"`
	Host            string    `hcl:"host,optional"`
	Port            *int      `hcl:"port,optional"`
	TLS             string    `hcl:"tls,optional"`
	CAFile          string    `hcl:"ca_file,optional"`
	TLSSkipVerify   bool      `hcl:"tls_skip_verify,optional"`
	Username        string    `hcl:"username,optional"`
	PasswordFile    string    `hcl:"password_file,optional"`
	PasswordEnv     string    `hcl:"password_env,optional"`
	PasswordCommand string    `hcl:"password_command,optional"`
	TokenFile       string    `hcl:"token_file,optional"`
	TokenCommand    string    `hcl:"token_command,optional"`
	Auth            string    `hcl:"auth,optional"`
	Region          string    `hcl:"region,optional"`
	MaxConnections  *int      `hcl:"max_connections,optional"`
	Rate            string    `hcl:"rate,optional"`
	EnvelopeFrom    string    `hcl:"envelope_from,optional"`
	FromHeader      string    `hcl:"from_header,optional"`
	Path            string    `hcl:"path,optional"`
	IdleTimeout     string    `hcl:"idle_timeout,optional"`
	ConnectTimeout  string    `hcl:"connect_timeout,optional"`
	Body            hcl.Body  `hcl:",body"`
	DefRange        hcl.Range `hcl:",def_range"`

	OAuth2 *rawOAuth2 `hcl:"oauth2,block"`
}

func (v *validator) upstream(r *rawUpstream) *Upstream {
	u := &Upstream{
		Name: r.Name, Type: r.Type, Provider: r.Provider, Host: r.Host, TLS: r.TLS,
		CAFile: v.path(r.CAFile), TLSSkipVerify: r.TLSSkipVerify, Username: r.Username,
		PasswordFile: v.path(r.PasswordFile), PasswordEnv: r.PasswordEnv, PasswordCommand: r.PasswordCommand,
		TokenFile: v.path(r.TokenFile), TokenCommand: r.TokenCommand, Auth: r.Auth, Region: r.Region,
		EnvelopeFrom: r.EnvelopeFrom, FromHeader: r.FromHeader, Path: v.path(r.Path),
		MaxConnections: 2,
	}
	if u.Type == "" {
		u.Type = "smtp"
	}
	u.IdleTimeout = v.duration(r.Body, "idle_timeout", r.IdleTimeout, 30*time.Second)
	u.ConnectTimeout = v.duration(r.Body, "connect_timeout", r.ConnectTimeout, 30*time.Second)
	switch u.Type {
	case "maildir":
		if u.Path == "" {
			v.errf(r.DefRange, "Maildir needs a path", "upstream %q has type = \"maildir\"; add path = \"var/maildir\" (relative to the configuration file).", u.Name)
		}
		for _, k := range []string{"provider", "host", "port", "tls", "username", "password_file", "password_env", "password_command", "token_file", "token_command", "rate"} {
			if sb, ok := r.Body.(*hclsyntax.Body); ok {
				if _, set := sb.Attributes[k]; set {
					v.errf(attrRange(r.Body, k), "Not for maildir", "%s has no meaning for a maildir upstream; remove it or set type = \"smtp\".", k)
				}
			}
		}
		if r.OAuth2 != nil {
			v.errf(r.OAuth2.DefRange, "Not for maildir", "oauth2 has no meaning for a maildir upstream; remove it or set type = \"smtp\".")
		}
		return u
	case "smtp":
	default:
		v.errf(attrRange(r.Body, "type"), "Invalid upstream type", "type = %q; use \"smtp\" or \"maildir\".", u.Type)
		return u
	}
	if u.Provider != "" && !IsPlaceholder(u.Provider) {
		p, err := preset.Lookup(u.Provider, u.Region)
		if err != nil {
			v.errf(attrRange(r.Body, "provider"), "Invalid provider", "%s.", err)
		} else {
			if u.Host == "" {
				u.Host = p.Host
			}
			if r.Port == nil {
				u.Port = p.Port
			}
			if u.TLS == "" {
				u.TLS = p.TLS
			}
			v.presetChecks(u, r, p)
		}
	}
	if r.Port != nil {
		u.Port = *r.Port
	}
	if u.TLS == "" {
		u.TLS = "starttls"
	}
	if u.Host == "" && !IsPlaceholder(u.Provider) {
		v.errf(r.DefRange, "Upstream needs a host", "upstream %q has no host; set host = \"smtp.example.com\" or provider = \"gmail\" (see the README for the provider list).", u.Name)
	}
	switch u.TLS {
	case "starttls":
		if u.Port == 0 {
			u.Port = 587
		}
	case "tls":
		if u.Port == 0 {
			u.Port = 465
		}
	case "none":
		if u.Port == 0 {
			u.Port = 25
		}
		if u.Host != "" && !loopback.Host(u.Host) {
			v.errf(attrRange(r.Body, "tls"), "Plaintext upstream refused", "tls = \"none\" is allowed only for loopback hosts, and %s is not one; use tls = \"starttls\" or \"tls\".", u.Host)
		}
	default:
		v.errf(attrRange(r.Body, "tls"), "Invalid tls mode", "tls = %q; use \"starttls\" (port 587), \"tls\" (implicit TLS, port 465) or \"none\" (loopback hosts only).", u.TLS)
	}
	if u.Port < 1 || u.Port > 65535 {
		v.errf(attrRange(r.Body, "port"), "Invalid port", "port %d is out of range 1-65535.", u.Port)
	}
	if u.Auth == "" {
		u.Auth = "auto"
	}
	switch u.Auth {
	case "auto", "plain", "login", "cram-md5", "xoauth2", "oauthbearer", "none":
	default:
		v.errf(attrRange(r.Body, "auth"), "Invalid auth", "auth = %q; use \"auto\", \"plain\", \"login\", \"cram-md5\", \"xoauth2\", \"oauthbearer\" or \"none\".", u.Auth)
	}
	secrets := 0
	for _, s := range []string{u.PasswordFile, u.PasswordEnv, u.PasswordCommand} {
		if s != "" {
			secrets++
		}
	}
	if secrets > 1 {
		v.errf(r.DefRange, "Several password sources", "upstream %q sets more than one of password_file, password_env and password_command; keep one.", u.Name)
	}
	for _, f := range []struct{ key, path string }{{"password_file", u.PasswordFile}, {"token_file", u.TokenFile}} {
		// Secrets are read at each connection, so a file created later
		// still works; a missing one is most often a typo, though.
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Missing secret file",
				Detail: fmt.Sprintf("upstream %q: %s %s does not exist; mail through it stays queued until it does.", u.Name, f.key, f.path)})
		}
	}
	if u.TokenFile != "" && u.TokenCommand != "" {
		v.errf(r.DefRange, "Several token sources", "upstream %q sets both token_file and token_command; keep one.", u.Name)
	}
	if (secrets > 0 || u.TokenFile != "" || u.TokenCommand != "") && u.Username == "" {
		v.errf(r.DefRange, "Missing username", "upstream %q has a password or token but no username; add username = \"you@example.com\".", u.Name)
	}
	v.oauth2(u, r)
	if (u.Auth == "xoauth2" || u.Auth == "oauthbearer") && u.TokenFile == "" && u.TokenCommand == "" && u.OAuth2 == nil {
		v.errf(attrRange(r.Body, "auth"), "Missing token", "auth = %q needs token_file or token_command.", u.Auth)
	}
	if r.MaxConnections != nil {
		if *r.MaxConnections < 1 {
			v.errf(attrRange(r.Body, "max_connections"), "Invalid max_connections", "max_connections must be at least 1.")
		}
		u.MaxConnections = *r.MaxConnections
	}
	if r.Rate != "" {
		n, per, err := ParseRate(r.Rate)
		if err != nil {
			v.errf(attrRange(r.Body, "rate"), "Invalid rate", "rate = %q; write a count per unit, like \"10/second\", \"100/minute\", \"500/hour\" or \"2000/day\".", r.Rate)
		}
		u.RateN, u.RatePer = n, per
	}
	if u.EnvelopeFrom != "" && !ValidAddress(u.EnvelopeFrom) {
		v.errf(attrRange(r.Body, "envelope_from"), "Invalid envelope_from", "envelope_from = %q is not a mail address; write the account's address, like \"me@qq.com\".", u.EnvelopeFrom)
	}
	switch u.FromHeader {
	case "":
		u.FromHeader = "keep"
	case "keep":
	case "rewrite":
		if u.EnvelopeFrom == "" && !ValidAddress(u.Username) {
			v.errf(attrRange(r.Body, "from_header"), "Nothing to rewrite to", "from_header = \"rewrite\" needs envelope_from (or a username that is an address).")
		}
	default:
		v.errf(attrRange(r.Body, "from_header"), "Invalid from_header", "from_header = %q; use \"keep\" or \"rewrite\".", u.FromHeader)
	}
	if u.Path != "" {
		v.errf(attrRange(r.Body, "path"), "Not for smtp", "path is for maildir upstreams; remove it or set type = \"maildir\".")
	}
	return u
}

// Upstream returns the upstream of that name, or nil.
func (c *Config) Upstream(name string) *Upstream {
	for _, u := range c.Upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}
