package relay

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestSkipVerifyWarnedOnce: an upstream with tls_skip_verify gets one
// warning that names the key, not one from the relay and another from the
// SMTP target under a key the configuration does not have.
func TestSkipVerifyWarnedOnce(t *testing.T) {
	cfg := dlvConfig(t, t.TempDir(), `
upstream "lab" {
  host            = "127.0.0.1"
  port            = 2526
  tls             = "starttls"
  tls_skip_verify = true
}
`)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	target, err := BuildTarget(cfg, cfg.Upstream("lab"), log)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if n := strings.Count(buf.String(), "certificate verification"); n != 1 || !strings.Contains(buf.String(), "tls_skip_verify") {
		t.Fatalf("%d warnings, want one that names tls_skip_verify:\n%s", n, buf.String())
	}
}
