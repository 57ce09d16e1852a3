package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/outbox-mta/outbox/internal/loopback"
	"github.com/outbox-mta/outbox/upstream/preset"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// OAuth2 is an upstream's oauth2 block, with the provider preset applied:
// Outbox gets and refreshes the access tokens itself.
type OAuth2 struct {
	Flow             string // client_credentials | refresh_token | service_account
	Tenant           string // Microsoft only
	ClientID         string
	ClientSecretFile string
	ClientSecretEnv  string
	TokenURL         string
	AuthURL          string // authorization endpoint, for `outbox oauth login` (loopback)
	DeviceURL        string // device authorization endpoint, for `outbox oauth login` (device code)
	Scopes           []string
	TokenFile        string // cache of the current tokens; default beside the spool
	KeyFile          string // service_account: the JSON key
	Subject          string // service_account: the mailbox; default the username
	// DeviceLogin says whether `outbox oauth login` uses the device code
	// flow by default (Microsoft) or the loopback redirect (Google).
	DeviceLogin bool
	// RefreshWithScope sends the scopes with each refresh (Microsoft).
	RefreshWithScope bool
}

type rawOAuth2 struct {
	Flow             string    `hcl:"flow,optional"`
	Tenant           string    `hcl:"tenant,optional"`
	ClientID         string    `hcl:"client_id,optional"`
	ClientSecretFile string    `hcl:"client_secret_file,optional"`
	ClientSecretEnv  string    `hcl:"client_secret_env,optional"`
	TokenURL         string    `hcl:"token_url,optional"`
	AuthURL          string    `hcl:"auth_url,optional"`
	DeviceURL        string    `hcl:"device_url,optional"`
	Scopes           []string  `hcl:"scopes,optional"`
	TokenFile        string    `hcl:"token_file,optional"`
	KeyFile          string    `hcl:"key_file,optional"`
	Subject          string    `hcl:"subject,optional"`
	Body             hcl.Body  `hcl:",body"`
	DefRange         hcl.Range `hcl:",def_range"`
}

// oauth2 validates an upstream's oauth2 block and fills it from the
// provider preset. It runs after auth has its default.
// p is the provider's preset, nil without one.
func (v *validator) oauth2(u *Upstream, r *rawUpstream, p *preset.Preset) {
	o := r.OAuth2
	if o == nil {
		return
	}
	bad := func(key, summary, detail string, args ...any) {
		rng := o.DefRange
		if key != "" {
			rng = attrRange(o.Body, key)
		}
		v.errf(rng, summary, detail, args...)
	}
	out := &OAuth2{Flow: o.Flow, Tenant: o.Tenant, ClientID: o.ClientID,
		ClientSecretFile: v.path(o.ClientSecretFile), ClientSecretEnv: o.ClientSecretEnv,
		TokenURL: o.TokenURL, AuthURL: o.AuthURL, DeviceURL: o.DeviceURL, Scopes: o.Scopes,
		TokenFile: v.path(o.TokenFile), KeyFile: v.path(o.KeyFile), Subject: o.Subject}
	u.OAuth2 = out

	switch out.Flow {
	case "client_credentials", "refresh_token", "service_account":
	case "":
		bad("", "Missing flow", "the oauth2 block of upstream %q needs flow = \"client_credentials\" (Microsoft 365 app-only), \"refresh_token\" (a mailbox signed in once with `outbox oauth login %s`) or \"service_account\" (Google Workspace).", u.Name, u.Name)
		return
	default:
		bad("flow", "Invalid flow", "flow = %q; use \"client_credentials\", \"refresh_token\" or \"service_account\".", out.Flow)
		return
	}
	var op *preset.OAuthPreset
	if p != nil {
		op = p.OAuth
	}
	if op != nil {
		scopes, offered := op.Scopes[out.Flow]
		if !offered {
			bad("flow", "Flow not offered", "provider %q offers no %s flow for SMTP; use one of: %s.", u.Provider, out.Flow, strings.Join(sortedKeys(op.Scopes), ", "))
			return
		}
		if out.Tenant == "" {
			out.Tenant = op.Tenants[out.Flow]
		}
		if out.Tenant == "" && strings.Contains(op.TokenURL, "{tenant}") {
			bad("", "Missing tenant", "flow %s with provider %q needs tenant = \"contoso.onmicrosoft.com\" (your tenant's domain or ID).", out.Flow, u.Provider)
		}
		if out.Flow == "client_credentials" && isSharedTenant(out.Tenant) {
			bad("tenant", "Invalid tenant", "tenant = %q cannot issue app-only tokens; name your own tenant (\"contoso.onmicrosoft.com\" or its ID).", out.Tenant)
		}
		fill := func(dst *string, tmpl string) {
			if *dst == "" && tmpl != "" && !(out.Flow == "service_account" && tmpl == op.TokenURL) {
				*dst = strings.ReplaceAll(tmpl, "{tenant}", url.PathEscape(out.Tenant))
			}
		}
		fill(&out.TokenURL, op.TokenURL)
		fill(&out.AuthURL, op.AuthURL)
		fill(&out.DeviceURL, op.DeviceURL)
		if len(out.Scopes) == 0 {
			out.Scopes = scopes
		}
		out.DeviceLogin = op.DeviceLogin && out.DeviceURL != ""
		out.RefreshWithScope = op.RefreshWithScope
	} else {
		out.DeviceLogin = out.DeviceURL != ""
		if out.Tenant != "" {
			bad("tenant", "Tenant without provider", "tenant only fills the Microsoft endpoints; set provider = \"office365\" or write token_url.")
		}
	}
	if out.Flow != "service_account" && out.TokenURL == "" {
		bad("", "Missing token_url", "upstream %q has no provider preset for OAuth2; set token_url = \"https://…/token\".", u.Name)
	}
	if out.Flow != "service_account" && len(out.Scopes) == 0 && op == nil {
		bad("", "Missing scopes", "upstream %q has no provider preset for OAuth2; set scopes = [\"…\"].", u.Name)
	}
	for _, k := range []struct{ key, val string }{{"token_url", out.TokenURL}, {"auth_url", out.AuthURL}, {"device_url", out.DeviceURL}} {
		if k.val == "" {
			continue
		}
		pu, err := url.Parse(k.val)
		switch {
		case err != nil || pu.Host == "":
			bad(k.key, "Invalid URL", "%s = %q is not a URL.", k.key, k.val)
		case pu.Scheme == "https":
		case pu.Scheme == "http" && loopback.Host(pu.Hostname()):
		default:
			bad(k.key, "Insecure URL", "%s = %q must use https:// (http:// only to a loopback host, for tests).", k.key, k.val)
		}
	}
	if out.Flow != "service_account" && out.ClientID == "" {
		bad("", "Missing client_id", "flow %s needs client_id, the application (client) ID of your app registration.", out.Flow)
	}
	if out.ClientSecretFile != "" && out.ClientSecretEnv != "" {
		bad("", "Several client secrets", "set one of client_secret_file and client_secret_env.")
	}
	hasSecret := out.ClientSecretFile != "" || out.ClientSecretEnv != ""
	switch out.Flow {
	case "client_credentials":
		if !hasSecret {
			bad("", "Missing client secret", "flow client_credentials needs client_secret_file = \"/etc/outbox/%s.secret\" (or client_secret_env).", u.Name)
		}
	case "service_account":
		if out.KeyFile == "" {
			bad("", "Missing key_file", "flow service_account needs key_file = \"/etc/outbox/%s-key.json\", the service account's JSON key.", u.Name)
		}
		if hasSecret || out.ClientID != "" {
			bad("", "Not for service_account", "client_id and the client secret come from key_file with flow service_account; remove them.")
		}
		if out.Subject == "" {
			out.Subject = u.Username
		}
	}
	if out.Flow != "service_account" && (out.KeyFile != "" || out.Subject != "") {
		bad("", "Not for this flow", "key_file and subject are for flow service_account.")
	}
	if out.TokenFile == "" {
		out.TokenFile = filepath.Join(v.spoolDir, "oauth2-"+u.Name+".json")
	}
	for _, f := range []struct{ key, path string }{{"client_secret_file", out.ClientSecretFile}, {"key_file", out.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Missing secret file",
				Detail: fmt.Sprintf("upstream %q: oauth2 %s %s does not exist; mail through it stays queued until it does.", u.Name, f.key, f.path)})
		}
	}
	if out.KeyFile != "" {
		if b, err := os.ReadFile(out.KeyFile); err == nil {
			// Only what the key is is checked, never shown: it holds a
			// private key.
			var key struct {
				Type        string `json:"type"`
				ClientEmail string `json:"client_email"`
				PrivateKey  string `json:"private_key"`
			}
			if json.Unmarshal(b, &key) != nil || key.Type != "service_account" || key.ClientEmail == "" || key.PrivateKey == "" {
				bad("key_file", "Invalid key_file", "%s is not a Google service account key (a JSON file with \"type\": \"service_account\"); create one under IAM > Service accounts > Keys.", out.KeyFile)
			}
		}
	}
	if out.Flow == "refresh_token" {
		if _, err := os.Stat(out.TokenFile); errors.Is(err, fs.ErrNotExist) {
			v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Not signed in",
				Detail: fmt.Sprintf("upstream %q: no tokens yet in %s; run `outbox oauth login %s` once.", u.Name, out.TokenFile, u.Name)})
		}
	}

	// The block decides how to authenticate.
	for _, k := range []string{"password_file", "password_env", "password_command", "token_file", "token_command"} {
		if sb, ok := r.Body.(*hclsyntax.Body); ok {
			if _, set := sb.Attributes[k]; set {
				v.errf(attrRange(r.Body, k), "Conflicts with oauth2", "%s and an oauth2 block both give credentials; keep one (the oauth2 block gets its tokens itself).", k)
			}
		}
	}
	switch {
	case u.Auth == settings.AuthAuto:
		u.Auth = settings.AuthXOAuth2
	case u.Auth.Bearer():
	default:
		v.errf(attrRange(r.Body, "auth"), "Invalid auth for oauth2", "auth = %q cannot carry an OAuth2 token; use \"xoauth2\" (the default with an oauth2 block) or \"oauthbearer\".", u.Auth)
	}
	if u.Username == "" {
		v.errf(r.DefRange, "Missing username", "upstream %q has an oauth2 block but no username; set username to the mailbox, like \"relay@contoso.com\" (XOAUTH2 sends it as user=).", u.Name)
	}
}

// isSharedTenant reports whether a Microsoft tenant name is one of the
// multi-tenant aliases, which cannot issue app-only tokens.
func isSharedTenant(t string) bool {
	switch strings.ToLower(t) {
	case "common", "organizations", "consumers":
		return true
	}
	return false
}

// presetChecks applies what a provider preset says beyond host and port:
// Outlook.com takes OAuth2 only, and some providers refuse or rewrite a
// sender other than the account.
func (v *validator) presetChecks(u *Upstream, r *rawUpstream, p *preset.Preset) {
	if p.OAuthOnly {
		for _, k := range []string{"password_file", "password_env", "password_command"} {
			if sb, ok := r.Body.(*hclsyntax.Body); ok {
				if _, set := sb.Attributes[k]; set {
					v.errf(attrRange(r.Body, k), "OAuth2 only", "provider %q no longer accepts passwords (Basic authentication is off); replace %s with an oauth2 block (flow = \"refresh_token\", then `outbox oauth login %s`), see the README's OAuth2 section.", u.Provider, k, u.Name)
				}
			}
		}
		if u.Auth == "" {
			u.Auth = settings.AuthXOAuth2
		}
	}
	if p.SenderMustMatch && u.EnvelopeFrom == "" && u.FromHeader != "rewrite" {
		v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "Sender must match",
			Detail: fmt.Sprintf("upstream %q: provider %q refuses mail whose sender is not the account; set envelope_from = %q (and from_header = \"rewrite\" if the From: header must match too).", u.Name, u.Provider, senderHint(u.Username))})
	}
}

func senderHint(user string) string {
	if ValidAddress(user) {
		return user
	}
	return "you@example.com"
}
