package oauth

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// An unreadable client secret or key file is a configuration problem the
// operator must fix, not a token endpoint that is down.
func TestUnreadableSecretIsConfigProblem(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []Config{
		{Name: "m365", Flow: ClientCredentials, TokenURL: "http://127.0.0.1:1/token", ClientID: "app",
			ClientSecret: func(context.Context) (string, error) {
				return "", errors.New("reading secret file: open /etc/outbox/m365.secret: permission denied")
			}, TokenFile: filepath.Join(dir, "a.json")},
		{Name: "gw", Flow: ServiceAccount, KeyFile: filepath.Join(dir, "missing.json"), Subject: "me@example.com",
			Scopes: []string{"https://mail.google.com/"}, TokenFile: filepath.Join(dir, "b.json")},
	} {
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Token(context.Background())
		var e *Error
		if !errors.As(err, &e) || !e.ConfigProblem() || e.Fix == "" {
			t.Errorf("%s: %v, want a configuration problem naming the fix", cfg.Name, err)
		}
	}
}
