package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestOAuth2Presets(t *testing.T) {
	for _, tc := range []struct {
		name, src   string
		tokenURL    string
		deviceURL   string
		scopes      []string
		deviceLogin bool
	}{
		{"m365 app-only", `provider = "office365"
  username = "relay@contoso.com"
  oauth2 {
    flow = "client_credentials"
    tenant = "contoso.onmicrosoft.com"
    client_id = "11111111-2222-3333-4444-555555555555"
    client_secret_env = "M365_SECRET"
  }`, "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
			"https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/devicecode",
			[]string{"https://outlook.office365.com/.default"}, true},
		{"m365 delegated", `provider = "office365"
  username = "me@contoso.com"
  oauth2 {
    flow = "refresh_token"
    client_id = "abc"
  }`, "https://login.microsoftonline.com/organizations/oauth2/v2.0/token",
			"https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode",
			[]string{"https://outlook.office.com/SMTP.Send", "offline_access"}, true},
		{"outlook.com", `provider = "outlook"
  username = "me@outlook.com"
  oauth2 {
    flow = "refresh_token"
    client_id = "abc"
  }`, "https://login.microsoftonline.com/consumers/oauth2/v2.0/token",
			"https://login.microsoftonline.com/consumers/oauth2/v2.0/devicecode",
			[]string{"https://outlook.office.com/SMTP.Send", "offline_access"}, true},
		{"gmail", `provider = "gmail"
  username = "me@gmail.com"
  oauth2 {
    flow = "refresh_token"
    client_id = "abc.apps.googleusercontent.com"
    client_secret_env = "G"
  }`, "https://oauth2.googleapis.com/token", "", []string{"https://mail.google.com/"}, false},
		{"custom, loopback http", `host = "127.0.0.1"
  tls = "none"
  username = "me@example.com"
  oauth2 {
    flow = "client_credentials"
    token_url = "http://127.0.0.1:8080/token"
    scopes = ["smtp"]
    client_id = "abc"
    client_secret_env = "S"
  }`, "http://127.0.0.1:8080/token", "", []string{"smtp"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("/x/relay.hcl", []byte("spool {\n path = \"/var/lib/outbox/spool.db\"\n}\nupstream \"u\" {\n  "+tc.src+"\n}\n"))
			if err != nil {
				t.Fatal(err)
			}
			u := cfg.Upstreams[0]
			o := u.OAuth2
			if o == nil || o.TokenURL != tc.tokenURL || o.DeviceURL != tc.deviceURL || !reflect.DeepEqual(o.Scopes, tc.scopes) || o.DeviceLogin != tc.deviceLogin {
				t.Fatalf("oauth2 %+v", o)
			}
			if u.Auth != "xoauth2" {
				t.Errorf("auth %q, want xoauth2 by default", u.Auth)
			}
			if want := strings.Contains(tc.tokenURL, "microsoftonline"); o.RefreshWithScope != want {
				t.Errorf("refresh with scope %v, want %v", o.RefreshWithScope, want)
			}
			if o.TokenFile != "/var/lib/outbox/oauth2-u.json" {
				t.Errorf("token_file %q, want it beside the spool", o.TokenFile)
			}
		})
	}
}

func TestOAuth2Errors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"no flow", `provider = "office365"
  username = "a@b.c"
  oauth2 {
    client_id = "x"
  }`, "flow"},
		{"gmail has no client credentials", `provider = "gmail"
  username = "a@b.c"
  oauth2 {
    flow = "client_credentials"
    client_id = "x"
    client_secret_env = "S"
  }`, "refresh_token, service_account"},
		{"app-only needs a tenant", `provider = "office365"
  username = "a@b.c"
  oauth2 {
    flow = "client_credentials"
    client_id = "x"
    client_secret_env = "S"
  }`, "tenant"},
		{"app-only in common", `provider = "office365"
  username = "a@b.c"
  oauth2 {
    flow = "client_credentials"
    tenant = "common"
    client_id = "x"
    client_secret_env = "S"
  }`, "your own tenant"},
		{"app-only needs a secret", `provider = "office365"
  username = "a@b.c"
  oauth2 {
    flow = "client_credentials"
    tenant = "contoso.onmicrosoft.com"
    client_id = "x"
  }`, "client_secret_file"},
		{"http token url", `host = "smtp.example.com"
  username = "a@b.c"
  oauth2 {
    flow = "client_credentials"
    token_url = "http://login.example.com/token"
    scopes = ["s"]
    client_id = "x"
    client_secret_env = "S"
  }`, "https://"},
		{"no username", `provider = "office365"
  oauth2 {
    flow = "refresh_token"
    client_id = "x"
  }`, "username"},
		{"no username, auth xoauth2", `provider = "office365"
  auth = "xoauth2"
  oauth2 {
    flow = "refresh_token"
    client_id = "x"
  }`, "username"},
		{"password too", `provider = "office365"
  username = "a@b.c"
  password_env = "P"
  oauth2 {
    flow = "refresh_token"
    client_id = "x"
  }`, "keep one"},
		{"auth plain", `provider = "office365"
  username = "a@b.c"
  auth = "plain"
  oauth2 {
    flow = "refresh_token"
    client_id = "x"
  }`, "xoauth2"},
		{"service account without key", `provider = "gmail"
  username = "a@b.c"
  oauth2 {
    flow = "service_account"
  }`, "key_file"},
		{"custom without token_url", `host = "smtp.example.com"
  username = "a@b.c"
  oauth2 {
    flow = "refresh_token"
    client_id = "x"
    scopes = ["s"]
  }`, "token_url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("/x/relay.hcl", []byte("upstream \"u\" {\n  "+tc.src+"\n}\n"))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			seen := map[string]bool{}
			for _, d := range ce.Diags {
				if seen[d.Summary] {
					t.Errorf("%q said twice: %v", d.Summary, err)
				}
				seen[d.Summary] = true
			}
		})
	}
}

func TestOAuth2ServiceAccountSubjectIsTheMailbox(t *testing.T) {
	cfg, err := Parse("/x/relay.hcl", []byte(`upstream "ws" {
  provider = "gmail"
  username = "alice@example.com"
  oauth2 {
    flow = "service_account"
    key_file = "ws-key.json"
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.Upstreams[0].OAuth2
	if o.Subject != "alice@example.com" || o.KeyFile != "/x/ws-key.json" || o.TokenURL != "" || o.Scopes[0] != "https://mail.google.com/" {
		t.Errorf("%+v", o)
	}
}

func TestPresetChecks(t *testing.T) {
	parse := func(body string) (*Config, error) {
		return Parse("/x/relay.hcl", []byte("hostname = \"relay.example.com\"\nupstream \"u\" {\n"+body+"\n}\n"))
	}
	// Outlook.com takes no password.
	if _, err := parse(`provider = "outlook"
  username = "me@outlook.com"
  password_env = "P"`); err == nil || !strings.Contains(err.Error(), "oauth2 block") {
		t.Errorf("outlook with a password: %v", err)
	}
	cfg, err := parse(`provider = "outlook"
  username = "me@outlook.com"
  token_command = "get-token"`)
	if err != nil || cfg.Upstreams[0].Auth != "xoauth2" {
		t.Errorf("outlook auth default: %v %+v", err, cfg)
	}
	// Providers that insist on the account as sender get a warning.
	for _, p := range []string{"qq", "163", "126", "exmail", "zoho", "office365"} {
		cfg, err := parse(`provider = "` + p + `"
  username = "me@example.com"
  password_env = "P"`)
		if err != nil || len(cfg.Warnings) == 0 || !strings.Contains(strings.Join(cfg.Warnings, "\n"), `envelope_from = "me@example.com"`) {
			t.Errorf("%s: %v %q", p, err, cfg.Warnings)
		}
		cfg, err = parse(`provider = "` + p + `"
  username = "me@example.com"
  password_env = "P"
  envelope_from = "me@example.com"`)
		if err != nil || len(cfg.Warnings) != 0 {
			t.Errorf("%s with envelope_from: %v %q", p, err, cfg.Warnings)
		}
	}
	if cfg, err := parse(`provider = "gmail"
  username = "me@gmail.com"
  password_env = "P"`); err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("gmail rewrites, it does not refuse: %v %q", err, cfg.Warnings)
	}
	// outbox check refuses an SES region without SMTP.
	if _, err := parse(`provider = "ses"
  region = "cn-north-1"`); err == nil || !strings.Contains(err.Error(), "no SMTP endpoint") {
		t.Errorf("ses region: %v", err)
	}
	if cfg, err := parse(`provider = "zoho-pro"
  region = "eu"`); err != nil || cfg.Upstreams[0].Host != "smtppro.zoho.eu" {
		t.Errorf("zoho-pro eu: %v", err)
	}
}

func TestOAuth2KeyFileChecked(t *testing.T) {
	dir := t.TempDir()
	src := `upstream "ws" {
  provider = "gmail"
  username = "alice@example.com"
  oauth2 {
    flow = "service_account"
    key_file = "key.json"
  }
}
`
	os.WriteFile(filepath.Join(dir, "key.json"), []byte(`{"type":"authorized_user","client_secret":"do-not-show"}`), 0o600)
	_, err := Parse(filepath.Join(dir, "relay.hcl"), []byte(src))
	if err == nil || !strings.Contains(err.Error(), "not a Google service account key") || strings.Contains(err.Error(), "do-not-show") {
		t.Errorf("error %v", err)
	}
	os.WriteFile(filepath.Join(dir, "key.json"), []byte(`{"type":"service_account","client_email":"a@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----"}`), 0o600)
	if _, err := Parse(filepath.Join(dir, "relay.hcl"), []byte(src)); err != nil {
		t.Error(err)
	}
}
