package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPackagedPlaceholders: the packaged relay.hcl, as installed
// before its placeholders are filled in, fails `outbox check` and `outbox
// serve` with exit 78 and one line per placeholder saying what to edit.
func TestCheckPackagedPlaceholders(t *testing.T) {
	src, err := os.ReadFile("../../packaging/relay.hcl")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "relay.hcl")
	if err := os.WriteFile(p, src, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "serve"} {
		code, _, errs := inRun(t, cmd, "--config", p)
		if code != 78 {
			t.Errorf("%s: exit %d, want 78\n%s", cmd, code, errs)
		}
		want := `: placeholder value "CHANGE-ME@example.com" in upstream "default" username: edit ` + p
		if !strings.Contains(errs, p+":") || !strings.Contains(errs, want) {
			t.Errorf("%s: stderr lacks %q:\n%s", cmd, want, errs)
		}
	}
}
