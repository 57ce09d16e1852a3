package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// debianAliases is /etc/aliases as exim4 installs it on Debian (no entry
// for root), plus the line Debian's postfix writes.
const debianAliases = `# /etc/aliases
mailer-daemon: postmaster
postmaster: root
nobody: root
hostmaster: root
usenet: root
news: root
webmaster: root
www: root
ftp: root
abuse: root
noc: root
security: root
# See man 5 aliases for format
`

func TestDebianAliasesFile(t *testing.T) {
	dir := t.TempDir()
	inWrite(t, dir, "aliases", debianAliases)
	aliases := filepath.Join(dir, "aliases")

	// With root in the aliases block, every name of the file reaches it.
	cfg, err := Load(inWrite(t, dir, "a.hcl", `hostname = "relay.test"
aliases_file = "aliases"
aliases { root = "ops@example.com" }`+minimal))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
	for _, name := range []string{"mailer-daemon", "postmaster", "nobody", "security", "root"} {
		if got := fmt.Sprint(cfg.Aliases[name]); got != "[ops@example.com]" {
			t.Errorf("%s = %s, want [ops@example.com]", name, got)
		}
	}
	if got, want := cfg.AliasOrigin["postmaster"], aliases+":3"; got != want {
		t.Errorf("origin of postmaster = %q, want %q", got, want)
	}

	// Without root anywhere and no catch-all, the file's names lead
	// nowhere: warnings naming each line, not an error that stops the
	// daemon.
	cfg, err = Load(inWrite(t, dir, "b.hcl", `aliases_file = "aliases"`+minimal))
	if err != nil {
		t.Fatalf("Debian's aliases without root: %v", err)
	}
	if len(cfg.Aliases) != 0 {
		t.Errorf("aliases = %v, want none", cfg.Aliases)
	}
	for _, line := range []int{2, 3, 13} {
		prefix := fmt.Sprintf("%s:%d: ", aliases, line)
		found := false
		for _, w := range cfg.Warnings {
			found = found || strings.HasPrefix(w, prefix) && strings.Contains(w, `"root"`)
		}
		if !found {
			t.Errorf("no warning starting %q and naming root in %q", prefix, cfg.Warnings)
		}
	}

	// With a catch-all, they reach it.
	cfg, err = Load(inWrite(t, dir, "c.hcl", `aliases_file = "aliases"
local_catchall = "admin@example.org"`+minimal))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(cfg.Aliases["mailer-daemon"]); got != "[admin@example.org]" {
		t.Errorf("mailer-daemon = %s, want the catch-all", got)
	}
}

// TestAliasesRecursive: local-name targets resolve, through the file and
// the block, to addresses with a domain; name@localhost and
// name@hostname are local names too.
func TestAliasesRecursive(t *testing.T) {
	dir := t.TempDir()
	inWrite(t, dir, "aliases", `alice: bob
bob: carol@example.org, root@localhost
dave: alice@relay.test
erin: \erin, erin@example.net
`)
	cfg, err := Load(inWrite(t, dir, "relay.hcl", `hostname = "relay.test"
aliases_file = "aliases"
local_catchall = "catch@example.com"
aliases {
  root  = "ops@example.com"
  frank = ["alice", "ghost"]
}`+minimal))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"alice": "[carol@example.org ops@example.com]",
		"bob":   "[carol@example.org ops@example.com]",
		"dave":  "[carol@example.org ops@example.com]",
		"erin":  "[catch@example.com erin@example.net]",
		"frank": "[carol@example.org ops@example.com catch@example.com]",
	} {
		if got := fmt.Sprint(cfg.Aliases[name]); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
}

// TestAliasesFileProblems: a loop or a bad address in the file is a
// warning naming the line; the same in the block is an error.
func TestAliasesFileProblems(t *testing.T) {
	dir := t.TempDir()
	inWrite(t, dir, "aliases", `a: b
b: a
c: not..valid@example.org
ok: ops@example.com
`)
	cfg, err := Load(inWrite(t, dir, "relay.hcl", `aliases_file = "aliases"`+minimal))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.Aliases) != "map[ok:[ops@example.com]]" {
		t.Errorf("aliases = %v", cfg.Aliases)
	}
	aliases := filepath.Join(dir, "aliases")
	for _, want := range []string{aliases + ":1: a: aliases loop", aliases + ":2: b: aliases loop", aliases + ":3: c: "} {
		found := false
		for _, w := range cfg.Warnings {
			found = found || strings.HasPrefix(w, want)
		}
		if !found {
			t.Errorf("no warning starting %q in %q", want, cfg.Warnings)
		}
	}
}

func TestLocalCatchall(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want string // the catch-all's addresses, or part of the error
	}{
		{`local_catchall = "admin@example.com"`, "[admin@example.com]"},
		{`local_catchall = ["admin@example.com", "ops@example.org"]`, "[admin@example.com ops@example.org]"},
		{`local_catchall = "a@example.com, b@example.com"`, "[a@example.com b@example.com]"},
		{`local_catchall = "root"
aliases { root = "ops@example.com" }`, "[ops@example.com]"},
		{`local_catchall = "root@localhost"
aliases { root = "ops@example.com" }`, "[ops@example.com]"},
		{`local_catchall = "root"`, "relay.hcl:1:1: Invalid local_catchall"},
		{`local_catchall = "bad..@example.com"`, "relay.hcl:1:1: Invalid local_catchall"},
		{`local_catchall = []`, "relay.hcl:1:1: Empty local_catchall"},
		{`local_catchall = 7`, "relay.hcl:1:1: Invalid alias"},
		{``, "[]"},
	} {
		cfg, err := Parse("/x/relay.hcl", []byte(tc.src+minimal))
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprint(cfg.LocalCatchall)
		}
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s:\n got %s\nwant %s", tc.src, got, tc.want)
		}
	}
}

// TestResolveRecipient is the table the daemon's policy, the shim and
// sendmail -bv all follow.
func TestResolveRecipient(t *testing.T) {
	base := &Config{Hostname: "relay.test", Aliases: map[string][]string{"root": {"ops@example.com"}}}
	catch := *base
	catch.LocalCatchall = []string{"admin@example.com"}
	for _, tc := range []struct {
		cfg  *Config
		to   string
		want string
	}{
		{base, "root", "[ops@example.com] root alias"},
		{base, "ROOT@Relay.Test", "[ops@example.com] root alias"},
		{base, "root@localhost", "[ops@example.com] root alias"},
		{base, "www-data", "unknown www-data"},
		{base, "nobody@relay.test", "unknown nobody"},
		{base, "alice@localhost.localdomain", "unknown alice"},
		{base, "someone@example.org", "[someone@example.org]  "},
		{base, "bad name", "bad"},
		{base, "a..b@example.org", "bad"},
		{&catch, "root", "[ops@example.com] root alias"},
		{&catch, "www-data", "[admin@example.com] www-data local_catchall"},
		{&catch, "nobody", "[admin@example.com] nobody local_catchall"},
		{&catch, "alice@relay.test", "[admin@example.com] alice local_catchall"},
		{&catch, "alice@localhost", "[admin@example.com] alice local_catchall"},
		{&catch, "alice@example.org", "[alice@example.org]  "},
	} {
		r, err := tc.cfg.ResolveRecipient(tc.to)
		var got string
		switch {
		case errors.Is(err, ErrUnknownLocal):
			got = "unknown " + r.Local
		case errors.Is(err, ErrBadRecipient):
			got = "bad"
		case err != nil:
			got = err.Error()
		default:
			got = fmt.Sprintf("%v %s %s", r.Addrs, r.Local, r.Via)
		}
		if got != tc.want {
			t.Errorf("catch-all %v: ResolveRecipient(%q) = %q, want %q", tc.cfg.LocalCatchall, tc.to, got, tc.want)
		}
	}
}

// TestPackagedConfig: the packaged relay.hcl refuses to load while it
// holds placeholders, naming each with its place and the fix; the shim's
// lenient load takes it; filled in, it loads.
func TestPackagedConfig(t *testing.T) {
	src, err := os.ReadFile("../packaging/relay.hcl")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(DefaultPath, src)
	if err == nil {
		t.Fatal("the packaged relay.hcl loads with its placeholders")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`placeholder value "CHANGE-ME@example.com" in aliases root: edit /etc/outbox/relay.hcl (or run dpkg-reconfigure outbox)`,
		`placeholder value "CHANGE-ME" in upstream "default" provider: edit /etc/outbox/relay.hcl (or run dpkg-reconfigure outbox)`,
		`placeholder value "CHANGE-ME@example.com" in upstream "default" username: edit /etc/outbox/relay.hcl (or run dpkg-reconfigure outbox)`,
		`placeholder value "CHANGE-ME@example.com" in upstream "default" envelope_from: edit /etc/outbox/relay.hcl (or run dpkg-reconfigure outbox)`,
	}
	if len(lines) != len(want) {
		t.Fatalf("errors:\n%s\nwant %d placeholder lines only", err, len(want))
	}
	for i, w := range want {
		file, rest, _ := strings.Cut(lines[i], ": ")
		if !strings.HasPrefix(file, DefaultPath+":") || rest != w {
			t.Errorf("line %d = %q, want %q after %s:LINE:COL", i, lines[i], w, DefaultPath)
		}
	}

	cfg, err := LoadAllowingPlaceholders("../packaging/relay.hcl")
	if err != nil {
		t.Fatalf("lenient load: %v", err)
	}
	if len(cfg.Placeholders) != len(want) {
		t.Errorf("Placeholders = %q", cfg.Placeholders)
	}
	if got := fmt.Sprint(cfg.LocalCatchall); got != "[CHANGE-ME@example.com]" {
		t.Errorf("catch-all = %s, want root's placeholder", got)
	}

	filled := strings.NewReplacer(
		`provider      = "CHANGE-ME"`, `provider      = "gmail"`,
		"CHANGE-ME@example.com", "me@gmail.com",
	).Replace(string(src))
	cfg, err = Parse(DefaultPath, []byte(filled))
	if err != nil {
		t.Fatalf("filled in: %v", err)
	}
	if cfg.AliasesFile != "/etc/aliases" || fmt.Sprint(cfg.LocalCatchall) != "[me@gmail.com]" || cfg.Upstreams[0].Host != "smtp.gmail.com" {
		t.Errorf("filled in: aliases_file %q, catch-all %v, host %q", cfg.AliasesFile, cfg.LocalCatchall, cfg.Upstreams[0].Host)
	}
}

// TestPlaceholderBareName: a bare CHANGE-ME as root's alias is one
// placeholder error, not also an unresolved name behind local_catchall.
func TestPlaceholderBareName(t *testing.T) {
	_, err := Parse("/x/relay.hcl", []byte(`aliases { root = "CHANGE-ME" }
local_catchall = "root"`+minimal))
	want := `/x/relay.hcl:1:18: placeholder value "CHANGE-ME" in aliases root: edit /x/relay.hcl`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestPlaceholderOnly: a placeholder is reported as such, not also as an
// invalid provider or address; other problems are still reported; a path
// other than the default does not mention dpkg-reconfigure.
func TestPlaceholderOnly(t *testing.T) {
	_, err := Parse("/x/relay.hcl", []byte(`upstream "u" {
  provider      = "CHANGE-ME"
  envelope_from = "CHANGE-ME"
  auth          = "bogus"
}`))
	if err == nil {
		t.Fatal("placeholders accepted")
	}
	want := `/x/relay.hcl:2:19: placeholder value "CHANGE-ME" in upstream "u" provider: edit /x/relay.hcl
/x/relay.hcl:3:19: placeholder value "CHANGE-ME" in upstream "u" envelope_from: edit /x/relay.hcl
/x/relay.hcl:4:3: Invalid auth: auth = "bogus"; use "auto", "plain", "login", "cram-md5", "xoauth2", "oauthbearer" or "none".`
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
}
