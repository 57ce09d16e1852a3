package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const notifyBase = `
upstream "capture" {
  type = "maildir"
  path = "md"
}
`

func TestNotifyBlock(t *testing.T) {
	dir := t.TempDir()
	parse := func(block string) (*Config, error) {
		return Parse(filepath.Join(dir, "relay.hcl"), []byte(notifyBase+block))
	}
	cfg, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Notify.Enabled() || cfg.Notify.StuckAfter != time.Hour {
		t.Errorf("default notify %+v, want disabled with stuck_after 1h", cfg.Notify)
	}
	cfg, err = parse(`
notify {
  webhook     = "https://hooks.example.com/outbox"
  command     = "bin/page-me"
  on          = ["bounce", "stuck"]
  stuck_after = "30m"
}`)
	if err != nil {
		t.Fatal(err)
	}
	n := cfg.Notify
	if n.Webhook != "https://hooks.example.com/outbox" || n.Command != filepath.Join(dir, "bin/page-me") ||
		!slices.Equal(n.On, []string{"bounce", "stuck"}) || n.StuckAfter != 30*time.Minute || !n.Wants("stuck") || n.Wants("auth_failed") {
		t.Errorf("notify %+v", n)
	}
	cfg, err = parse(`notify { webhook = "http://127.0.0.1:9000/hook" }`)
	if err != nil || cfg.Notify.Webhook != "http://127.0.0.1:9000/hook" || len(cfg.Notify.On) != 4 {
		t.Errorf("plain http to loopback: %v %+v", err, cfg)
	}
	for block, want := range map[string]string{
		`notify { webhook = "http://hooks.example.com/x" }`: "Insecure webhook",
		`notify { webhook = "ftp://example.com/x" }`:        "Insecure webhook",
		`notify { webhook = "not a url" }`:                  "Invalid webhook",
		`notify { on = ["bounce", "sunset"] }`:              "Invalid notify event",
		`notify { stuck_after = "soon" }`:                   "Invalid duration",
		`notify { stuck_after = "0s" }`:                     "Invalid stuck_after",
	} {
		if _, err := parse(block); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", block, err, want)
		}
	}
}
