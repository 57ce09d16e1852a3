package settings

import (
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	s := SMTP{Name: "u", Host: "[::1]", TLS: ImplicitTLS}
	s.Default(false)
	if s.Host != "::1" || s.Port != 465 || s.Auth != AuthAuto || s.MaxConnections != 2 ||
		s.IdleTimeout != 30*time.Second || s.ConnectTimeout != 30*time.Second {
		t.Errorf("defaults %+v", s)
	}
	o := SMTP{Name: "u", Host: "smtp.example.com"}
	o.Default(true)
	if o.TLS != StartTLS || o.Port != 587 || o.Auth != AuthXOAuth2 {
		t.Errorf("with OAuth2: %+v, want starttls, 587, xoauth2", o)
	}
	n := SMTP{Name: "u", Host: "localhost", TLS: NoTLS, Auth: AuthPlain, Port: 2525}
	n.Default(true)
	if n.Port != 2525 || n.Auth != AuthPlain {
		t.Errorf("explicit values changed: %+v", n)
	}
}

func TestCheck(t *testing.T) {
	ok := func(s SMTP) SMTP { s.Name, s.Host = "u", "smtp.example.com"; return s }
	for _, tc := range []struct {
		s     SMTP
		extra Credentials
		key   string // of the first problem; "-" for none
		text  string
	}{
		{ok(SMTP{}), Credentials{}, "-", ""},
		{SMTP{Name: "u"}, Credentials{}, "host", "has no host"},
		{ok(SMTP{TLS: "ssl"}), Credentials{}, "tls", `tls = "ssl"`},
		{ok(SMTP{TLS: NoTLS}), Credentials{}, "tls", `use tls = "starttls"`},
		{SMTP{Name: "u", Host: "127.0.0.5", TLS: NoTLS}, Credentials{}, "-", ""},
		{ok(SMTP{Port: 70000}), Credentials{}, "port", "out of range"},
		{ok(SMTP{Auth: "bogus"}), Credentials{}, "auth", `auth = "bogus"`},
		{ok(SMTP{Username: "a", PasswordFile: "/p", PasswordEnv: "P"}), Credentials{}, "", "more than one"},
		{ok(SMTP{Username: "a", TokenFile: "/t", TokenCommand: "c"}), Credentials{}, "", "both token_file"},
		{ok(SMTP{PasswordFile: "/p"}), Credentials{}, "", "no username"},
		{ok(SMTP{Username: "a", Auth: AuthPlain}), Credentials{}, "auth", "needs a password"},
		{ok(SMTP{Username: "a", Auth: AuthPlain}), Credentials{Password: true}, "-", ""},
		{ok(SMTP{Username: "a", Auth: AuthXOAuth2}), Credentials{}, "auth", "token_file"},
		{ok(SMTP{Username: "a", Auth: AuthXOAuth2}), Credentials{Token: true}, "-", ""},
		{ok(SMTP{Auth: AuthXOAuth2}), Credentials{Token: true}, "username", "needs username"},
		{ok(SMTP{Username: "a"}), Credentials{}, "username", "no password or token"},
		{ok(SMTP{Username: "a", Auth: AuthNone}), Credentials{}, "-", ""},
		{ok(SMTP{RateN: 3}), Credentials{}, "rate", "positive"},
	} {
		s := tc.s
		s.Default(false)
		got := s.Check(tc.extra)
		if tc.key == "-" {
			if len(got) != 0 {
				t.Errorf("%+v: problems %v, want none", tc.s, got)
			}
			continue
		}
		if len(got) == 0 || got[0].Key != tc.key || !strings.Contains(got[0].Detail, tc.text) || got[0].Summary == "" {
			t.Errorf("%+v: problems %+v, want first on %q saying %q", tc.s, got, tc.key, tc.text)
		}
	}
}

func TestModes(t *testing.T) {
	for _, m := range []TLS{StartTLS, ImplicitTLS, NoTLS} {
		if !m.Valid() || m.DefaultPort() == 0 {
			t.Errorf("%s: valid %v, port %d", m, m.Valid(), m.DefaultPort())
		}
	}
	if TLS("STARTTLS").Valid() || TLS("").DefaultPort() != 0 {
		t.Error("an unknown TLS mode passes")
	}
	if !AuthCRAMMD5.Password() || AuthCRAMMD5.Bearer() || !AuthOAuthBearer.Bearer() || AuthAuto.Password() {
		t.Error("mechanism families")
	}
	if AuthCRAMMD5.Mechanism() != "CRAM-MD5" || AuthXOAuth2.Mechanism() != "XOAUTH2" {
		t.Error("SASL names")
	}
}
