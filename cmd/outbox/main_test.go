package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// inValid is a working configuration whose paths all stay in its folder.
const inValid = `
listen { address = "127.0.0.1:2525" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
upstream "capture" {
  type = "maildir"
  path = "var/maildir"
}
`

// inInvalid has an unknown key on line 3.
const inInvalid = `
hostname = "relay.test"
max_sise = "1MiB"
upstream "capture" {
  type = "maildir"
  path = "var/maildir"
}
`

func inWriteConfig(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "relay.hcl")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// inRun runs the outbox command in-process.
func inRun(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, stdin: strings.NewReader("")}
	code = a.main(args)
	return code, out.String(), errb.String()
}

func TestCheck(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", "")
	valid := inWriteConfig(t, inValid)
	invalid := inWriteConfig(t, inInvalid)
	for _, args := range [][]string{
		{"check", "--config", valid},
		{"--config", valid, "check"},
		{"check", "--config=" + valid},
		{"-config", valid, "check"},
	} {
		if code, out, errs := inRun(t, args...); code != 0 {
			t.Errorf("%q: exit %d\n%s%s", args, code, out, errs)
		}
	}
	for _, args := range [][]string{
		{"check", "--config", invalid},
		{"--config", invalid, "check"},
	} {
		code, _, errs := inRun(t, args...)
		if code != 78 {
			t.Errorf("%q: exit %d, want 78", args, code)
		}
		if !strings.Contains(errs, invalid+":3:1") || !strings.Contains(errs, "max_sise") {
			t.Errorf("%q: stderr lacks the diagnostic at %s:3:1:\n%s", args, invalid, errs)
		}
	}
	// A missing file is a configuration error too.
	if code, _, errs := inRun(t, "check", "--config", filepath.Join(t.TempDir(), "nosuch.hcl")); code != 78 || errs == "" {
		t.Errorf("missing file: exit %d, stderr %q", code, errs)
	}
	if code, _, _ := inRun(t, "check", "--config"); code != 64 {
		t.Errorf("--config without a value: exit %d, want 64", code)
	}
}

func TestCheckEnv(t *testing.T) {
	valid := inWriteConfig(t, inValid)
	invalid := inWriteConfig(t, inInvalid)
	t.Setenv("OUTBOX_CONFIG", valid)
	if code, out, errs := inRun(t, "check"); code != 0 || !strings.Contains(out, valid) {
		t.Errorf("OUTBOX_CONFIG=valid: exit %d\n%s%s", code, out, errs)
	}
	t.Setenv("OUTBOX_CONFIG", invalid)
	if code, _, _ := inRun(t, "check"); code != 78 {
		t.Errorf("OUTBOX_CONFIG=invalid: exit %d, want 78", code)
	}
	// The flag wins over the environment.
	if code, _, _ := inRun(t, "check", "--config", valid); code != 0 {
		t.Errorf("--config with OUTBOX_CONFIG set: exit %d, want 0", code)
	}
}

func TestCheckWarnings(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "aliases"), []byte("root: ops@example.com\nlog: |/usr/bin/logger\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(p, []byte(`aliases_file = "aliases"`+inValid), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := inRun(t, "check", "--config", p)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, filepath.Join(dir, "aliases")+":2:") {
		t.Errorf("stderr lacks the warning naming aliases line 2:\n%s", errs)
	}
}

func TestHelp(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", filepath.Join(t.TempDir(), "nosuch.hcl"))
	if code, out, _ := inRun(t, "--help"); code != 0 || !strings.Contains(out, "serve") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if code, _, _ := inRun(t); code != 64 {
		t.Errorf("no arguments: exit %d, want 64", code)
	}
	for _, c := range commands {
		for _, h := range []string{"--help", "-h"} {
			code, out, errs := inRun(t, c.name, h)
			if code != 0 {
				t.Errorf("%s %s: exit %d\n%s%s", c.name, h, code, out, errs)
			}
			if !strings.Contains(out+errs, "Usage:") {
				t.Errorf("%s %s: no usage printed:\n%s%s", c.name, h, out, errs)
			}
		}
	}
	for _, sub := range []string{"ls", "show", "hold", "release", "delete", "flush", "stats", "backup", "compact"} {
		code, out, errs := inRun(t, "queue", sub, "--help")
		if code != 0 {
			t.Errorf("queue %s --help: exit %d\n%s%s", sub, code, out, errs)
		}
	}
	if code, _, _ := inRun(t, "nosuch"); code != 64 {
		t.Errorf("unknown command: exit %d, want 64", code)
	}
}

func TestQueueLsEmpty(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", "")
	p := inWriteConfig(t, inValid)
	for _, args := range [][]string{
		{"queue", "ls", "--json", "--config", p},
		{"--config", p, "queue", "ls", "--json"},
	} {
		code, out, errs := inRun(t, args...)
		if code != 0 {
			t.Fatalf("%q: exit %d\n%s", args, code, errs)
		}
		var list []any
		if err := json.Unmarshal([]byte(out), &list); err != nil || list == nil || len(list) != 0 {
			t.Errorf("%q: output %q, want []", args, out)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), "var/spool.db")); err == nil {
		t.Error("queue ls created a spool")
	}
	if code, out, _ := inRun(t, "queue", "ls", "--config", p); code != 0 || !strings.Contains(out, "empty") {
		t.Errorf("queue ls: exit %d, %q", code, out)
	}
}
