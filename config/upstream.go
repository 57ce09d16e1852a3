package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/outbox-mta/outbox/upstream/preset"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// Upstream is one delivery target. An SMTP upstream's connection
// settings are the SMTP client's own type, validated and completed here
// once; the other fields are what the relay does around it.
type Upstream struct {
	settings.SMTP        // Name for every type; the rest for type "smtp"
	Type          string // smtp | maildir
	Provider      string
	Region        string
	EnvelopeFrom  string
	FromHeader    string  // keep | rewrite
	Path          string  // maildir
	OAuth2        *OAuth2 // nil without an oauth2 block
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
		SMTP: settings.SMTP{
			Name: r.Name, Host: r.Host, TLS: settings.TLS(r.TLS), CAFile: v.path(r.CAFile),
			InsecureSkipVerify: r.TLSSkipVerify, Username: r.Username, Auth: settings.Auth(r.Auth),
			PasswordFile: v.path(r.PasswordFile), PasswordEnv: r.PasswordEnv, PasswordCommand: r.PasswordCommand,
			TokenFile: v.path(r.TokenFile), TokenCommand: r.TokenCommand,
			MaxConnections: settings.DefaultMaxConnections,
		},
		Type: r.Type, Provider: r.Provider, Region: r.Region,
		EnvelopeFrom: r.EnvelopeFrom, FromHeader: r.FromHeader, Path: v.path(r.Path),
	}
	if u.Type == "" {
		u.Type = "smtp"
	}
	u.IdleTimeout = v.duration(r.Body, "idle_timeout", r.IdleTimeout, settings.DefaultIdleTimeout)
	u.ConnectTimeout = v.duration(r.Body, "connect_timeout", r.ConnectTimeout, settings.DefaultConnectTimeout)
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
	var p *preset.Preset
	if u.Provider != "" && !IsPlaceholder(u.Provider) {
		found, err := preset.Lookup(u.Provider, u.Region)
		if err != nil {
			v.errf(attrRange(r.Body, "provider"), "Invalid provider", "%s.", err)
		} else {
			p = &found
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
	// The oauth2 block picks its mechanism itself (v.oauth2 below).
	u.SMTP.Default(false)
	for _, pr := range u.SMTP.Check(settings.Credentials{Token: r.OAuth2 != nil}) {
		if pr.Key == "host" && IsPlaceholder(u.Provider) {
			// The provider will name the host once it is filled in.
			continue
		}
		if pr.Summary == "Missing username" && r.OAuth2 != nil {
			// v.oauth2 says it for the block, with what to put there.
			continue
		}
		rng := r.DefRange
		if pr.Key != "" {
			rng = attrRange(r.Body, pr.Key)
		}
		v.errf(rng, pr.Summary, "%s", pr.Detail)
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
	v.oauth2(u, r, p)
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
