// Package packaging holds no code: its tests keep the package definition
// in step with the program (the debconf provider list with the presets,
// the maintainer scripts with /bin/sh).
package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outbox-mta/outbox/upstream/preset"
)

// templateField returns the value of field in the debconf template named
// name.
func templateField(t *testing.T, name, field string) string {
	t.Helper()
	b, err := os.ReadFile("deb/templates")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "\n\n") {
		if !strings.HasPrefix(block, "Template: "+name+"\n") {
			continue
		}
		for _, l := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(l, field+": "); ok {
				return v
			}
		}
	}
	t.Fatalf("template %s has no %s field", name, field)
	return ""
}

// TestProviderChoicesArePresets: every preset the daemon knows is offered
// by debconf (except ses, which needs a region and is offered as a
// smarthost), and every offered provider is one the daemon knows.
func TestProviderChoicesArePresets(t *testing.T) {
	values := strings.Split(templateField(t, "outbox/provider", "Choices-C"), ", ")
	labels := strings.Split(templateField(t, "outbox/provider", "Choices"), ", ")
	if len(values) != len(labels) {
		t.Fatalf("outbox/provider: %d Choices-C but %d Choices", len(values), len(labels))
	}
	offered := map[string]bool{}
	for _, v := range values {
		offered[v] = true
		if v == "manual" || v == "smarthost" {
			continue
		}
		if _, err := preset.Lookup(v, ""); err != nil {
			t.Errorf("debconf offers %q: %v", v, err)
		}
	}
	for _, n := range preset.Names() {
		if !offered[n] && n != "ses" {
			t.Errorf("preset %q is not offered by debconf (packaging/deb/templates)", n)
		}
	}
	if d := templateField(t, "outbox/provider", "Default"); d != "manual" {
		t.Errorf("outbox/provider defaults to %q: a noninteractive install must keep the placeholders", d)
	}
}

// TestMaintainerScriptsParse runs each maintainer script through sh -n
// (dash on Debian): a syntax error would only show at install time.
func TestMaintainerScriptsParse(t *testing.T) {
	scripts, _ := filepath.Glob("deb/*")
	rpm, _ := filepath.Glob("rpm/*.sh")
	for _, s := range append(scripts, rpm...) {
		switch filepath.Base(s) {
		case "templates", "lintian-overrides":
			continue // data for debconf and lintian, not scripts
		}
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
		if fi, err := os.Stat(s); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s is not executable (%v)", s, err)
		}
	}
}
