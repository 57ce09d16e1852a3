package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/upstream/settings"
)

// fullConfig uses every key of DESIGN.md's sketch, plus the keys added
// since (route, log, limits timeouts, listener TLS and auth).
const fullConfig = `
hostname = "relay.example.internal"

listen {
  address        = "127.0.0.1:2525"
  allow_networks = ["127.0.0.1/32", "10.1.2.3"]
}
listen {
  address     = "unix:var/submit.sock"
  socket_mode = "0660"
}
listen {
  address  = "0.0.0.0:587"
  tls_cert = "cert.pem"
  tls_key  = "key.pem"
  auth = {
    alice = "$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3rNRZ1GqAVz3CZs1G4cEnYm"
  }
}

spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}

admin {
  socket = "var/admin.sock"
}

queue {
  retry_initial = "1m"
  retry_max     = "1h"
  lifetime      = "120h"
  delay_warning = "0"
  double_bounce = "postmaster@example.com"
}

limits {
  max_message_size = "25MiB"
  max_recipients   = 100
  max_connections  = 7
  read_timeout     = "90s"
  write_timeout    = "2m"
}

aliases {
  root       = "ops@example.com"
  postmaster = "root"
  team       = ["root", "dev@example.com"]
}

upstream "default" {
  type          = "smtp"
  provider      = "gmail"
  host          = "smtp.example.com"
  port          = 587
  tls           = "starttls"
  ca_file       = "ca.pem"
  username      = "me@example.com"
  password_file = "secret.txt"
  auth          = "auto"
  rate          = "100/hour"
  max_connections = 3
  envelope_from = "me@example.com"
  from_header   = "rewrite"
  idle_timeout  = "10s"
  connect_timeout = "5s"
}

upstream "capture" {
  type = "maildir"
  path = "var/maildir"
}

route {
  sender           = ["@example.org"]
  recipient_domain = ["Example.NET"]
  upstreams        = ["capture", "default"]
}

log {
  level  = "debug"
  format = "json"
}
`

func inWrite(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFullConfig(t *testing.T) {
	dir := t.TempDir()
	path := inWrite(t, dir, "relay.hcl", fullConfig)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("Path", cfg.Path, path)
	check("Dir", cfg.Dir, dir)
	check("Hostname", cfg.Hostname, "relay.example.internal")

	if len(cfg.Listen) != 3 {
		t.Fatalf("%d listeners, want 3", len(cfg.Listen))
	}
	l0, l1, l2 := cfg.Listen[0], cfg.Listen[1], cfg.Listen[2]
	check("listen[0].Network", l0.Network, "tcp")
	check("listen[0].Addr", l0.Addr, "127.0.0.1:2525")
	check("listen[0].Loopback", l0.Loopback, true)
	check("listen[0].AllowNetworks", l0.AllowNetworks, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.2.3/32")})
	check("listen[1].Network", l1.Network, "unix")
	check("listen[1].Addr", l1.Addr, filepath.Join(dir, "var/submit.sock"))
	check("listen[1].SocketMode", l1.SocketMode, os.FileMode(0o660))
	check("listen[1].Loopback", l1.Loopback, true)
	check("listen[2].Loopback", l2.Loopback, false)
	check("listen[2].TLSCert", l2.TLSCert, filepath.Join(dir, "cert.pem"))
	check("listen[2].TLSKey", l2.TLSKey, filepath.Join(dir, "key.pem"))
	if _, ok := l2.Users["alice"]; !ok {
		t.Errorf("listen[2].Users = %v, want alice", l2.Users)
	}
	if cfg.SubmitSocket() != l1.Addr {
		t.Errorf("SubmitSocket = %q, want %q", cfg.SubmitSocket(), l1.Addr)
	}

	check("Spool.Path", cfg.Spool.Path, filepath.Join(dir, "var/spool.db"))
	check("Spool.Maildrop", cfg.Spool.Maildrop, filepath.Join(dir, "var/maildrop"))
	check("Admin.Socket", cfg.Admin.Socket, filepath.Join(dir, "var/admin.sock"))

	check("RetryInitial", cfg.Queue.RetryInitial, time.Minute)
	check("RetryMax", cfg.Queue.RetryMax, time.Hour)
	check("Lifetime", cfg.Queue.Lifetime, 120*time.Hour)
	check("DelayWarning", cfg.Queue.DelayWarning, time.Duration(0))
	check("DoubleBounce", cfg.Queue.DoubleBounce, "postmaster@example.com")

	check("MaxMessageSize", cfg.Limits.MaxMessageSize, int64(25<<20))
	check("MaxRecipients", cfg.Limits.MaxRecipients, 100)
	check("MaxConnections", cfg.Limits.MaxConnections, 7)
	check("ReadTimeout", cfg.Limits.ReadTimeout, 90*time.Second)
	check("WriteTimeout", cfg.Limits.WriteTimeout, 2*time.Minute)

	check("aliases root", cfg.Aliases["root"], []string{"ops@example.com"})
	check("aliases postmaster", cfg.Aliases["postmaster"], []string{"ops@example.com"})
	check("aliases team", cfg.Aliases["team"], []string{"ops@example.com", "dev@example.com"})

	if len(cfg.Upstreams) != 2 {
		t.Fatalf("%d upstreams, want 2", len(cfg.Upstreams))
	}
	u := cfg.Upstream("default")
	if u == nil || cfg.Upstreams[0] != u {
		t.Fatalf("upstream default missing or not first")
	}
	check("Type", u.Type, "smtp")
	check("Provider", u.Provider, "gmail")
	check("Host", u.Host, "smtp.example.com") // explicit wins over the preset
	check("Port", u.Port, 587)
	check("TLS", u.TLS, "starttls")
	check("CAFile", u.CAFile, filepath.Join(dir, "ca.pem"))
	check("Username", u.Username, "me@example.com")
	check("PasswordFile", u.PasswordFile, filepath.Join(dir, "secret.txt"))
	check("Auth", u.Auth, "auto")
	check("RateN", u.RateN, 100)
	check("RatePer", u.RatePer, time.Hour)
	check("MaxConnections", u.MaxConnections, 3)
	check("EnvelopeFrom", u.EnvelopeFrom, "me@example.com")
	check("FromHeader", u.FromHeader, "rewrite")
	check("IdleTimeout", u.IdleTimeout, 10*time.Second)
	check("ConnectTimeout", u.ConnectTimeout, 5*time.Second)
	c := cfg.Upstream("capture")
	check("capture.Type", c.Type, "maildir")
	check("capture.Path", c.Path, filepath.Join(dir, "var/maildir"))

	if len(cfg.Routes) != 1 {
		t.Fatalf("%d routes, want 1", len(cfg.Routes))
	}
	check("route.Senders", cfg.Routes[0].Senders, []string{"example.org"})
	check("route.RecipientDomains", cfg.Routes[0].RecipientDomains, []string{"example.net"})
	check("route.Upstreams", cfg.Routes[0].Upstreams, []string{"capture", "default"})
	check("Log", cfg.Log, Log{Level: "debug", Format: "json"})
}

func TestRepoConfigValid(t *testing.T) {
	cfg, err := Load("../relay.hcl")
	if err != nil {
		t.Fatalf("relay.hcl in the repository root: %v", err)
	}
	root, _ := filepath.Abs("..")
	if cfg.Spool.Path != filepath.Join(root, "var/spool.db") {
		t.Errorf("Spool.Path = %q, want it under the repository's var/", cfg.Spool.Path)
	}
	var tcp, unix bool
	for _, l := range cfg.Listen {
		tcp = tcp || l.Addr == "127.0.0.1:2525"
		unix = unix || (l.Network == "unix" && strings.HasPrefix(l.Addr, filepath.Join(root, "var")+"/"))
	}
	if !tcp || !unix {
		t.Errorf("listeners %+v: want 127.0.0.1:2525 and a unix socket under var/", cfg.Listen)
	}
}

// TestRelativePaths checks that relative paths follow the file, not the
// working directory, even when the file is named by a relative path.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "etc")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	inWrite(t, sub, "relay.hcl", `
spool { path = "q/spool.db" }
admin { socket = "unix:run/admin.sock" }
listen { address = "unix:../run/submit.sock" }
upstream "m" {
  type = "maildir"
  path = "/abs/maildir"
}`)
	t.Chdir(dir)
	cfg, err := Load("etc/relay.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(sub, "q/spool.db"); cfg.Spool.Path != want {
		t.Errorf("Spool.Path = %q, want %q", cfg.Spool.Path, want)
	}
	if want := filepath.Join(sub, "run/admin.sock"); cfg.Admin.Socket != want {
		t.Errorf("Admin.Socket = %q, want %q", cfg.Admin.Socket, want)
	}
	if want := filepath.Join(dir, "run/submit.sock"); cfg.Listen[0].Addr != want {
		t.Errorf("listen Addr = %q, want %q", cfg.Listen[0].Addr, want)
	}
	if cfg.Upstreams[0].Path != "/abs/maildir" {
		t.Errorf("absolute path changed: %q", cfg.Upstreams[0].Path)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse("/etc/outbox/relay.hcl", []byte(`upstream "m" {
  type = "maildir"
  path = "md"
}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range cfg.Listen {
		if !l.Loopback {
			t.Errorf("default listener %s is not loopback", l.Address)
		}
	}
	if cfg.Limits.MaxMessageSize <= 0 || cfg.Limits.MaxRecipients <= 0 || cfg.Limits.MaxConnections <= 0 {
		t.Errorf("limits without defaults: %+v", cfg.Limits)
	}
	if cfg.Hostname == "" {
		t.Error("no default hostname")
	}
}

// TestSendmailSocket: the sendmail protocol's socket sits beside the first
// unix listener's, the packaged default included, and there is none
// without a unix listener.
func TestSendmailSocket(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"", "/run/outbox/sendmail.sock"},
		{`listen { address = "127.0.0.1:2525" }
listen { address = "unix:var/run/s.sock" }
listen { address = "unix:/elsewhere/t.sock" }`, "/etc/outbox/var/run/sendmail.sock"},
		{`listen { address = "127.0.0.1:2525" }`, ""},
	} {
		cfg, err := Parse("/etc/outbox/relay.hcl", []byte(tc.listen+`
upstream "m" {
  type = "maildir"
  path = "md"
}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.SendmailSocket(); got != tc.want {
			t.Errorf("with %q: SendmailSocket = %q, want %q", tc.listen, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"25MiB", 25 << 20, true},
		{"1KiB", 1024, true},
		{"2GiB", 2 << 30, true},
		{"1000", 1000, true},
		{"10 MiB", 10 << 20, true},
		{"1MB", 1000000, true},
		{"0", 0, true},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1MiB", 0, false},
		{"25 furlongs", 0, false},
		{"NaN", 0, false},
		{"Inf", 0, false},
		{"1e300", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in  string
		n   int
		per time.Duration
		ok  bool
	}{
		{"100/hour", 100, time.Hour, true},
		{"10/second", 10, time.Second, true},
		{"5/m", 5, time.Minute, true},
		{"2000 / day", 2000, 24 * time.Hour, true},
		{"100", 0, 0, false},
		{"0/hour", 0, 0, false},
		{"-1/hour", 0, 0, false},
		{"10/fortnight", 0, 0, false},
		{"x/hour", 0, 0, false},
	} {
		n, per, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (n != tc.n || per != tc.per)) {
			t.Errorf("ParseRate(%q) = %d, %v, %v; want %d, %v, ok=%v", tc.in, n, per, err, tc.n, tc.per, tc.ok)
		}
	}
}

// minimal is the part every error case shares (an upstream is required).
const minimal = `
upstream "capture" {
  type = "maildir"
  path = "var/maildir"
}
`

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string // error on the line that holds "# <--", or on line 1 when none
		want string // in the diagnostic's detail: the fix
	}{
		{"unknown key", `hostnme = "x" # <--` + minimal, "remove"},
		{"unknown key in block", `limits {
  max_mesage_size = "1MiB" # <--
}` + minimal, "remove"},
		{"unknown block", `lisen { # <--
  address = "127.0.0.1:25"
}` + minimal, "remove"},
		{"bad duration", `queue {
  retry_initial = "1 minute" # <--
}` + minimal, "Go duration"},
		{"bad upstream duration", `upstream "x" {
  host = "127.0.0.1"
  tls = "none"
  idle_timeout = "soon" # <--
}`, "Go duration"},
		{"bad size", `limits {
  max_message_size = "25 furlongs" # <--
}` + minimal, "MiB"},
		{"bad tls mode", `upstream "x" {
  host = "smtp.example.com"
  tls  = "ssl" # <--
}`, "starttls"},
		{"plaintext to remote host", `upstream "x" {
  host = "smtp.example.com"
  tls  = "none" # <--
}`, "starttls"},
		{"open relay", `listen {
  address = "0.0.0.0:25" # <--
}` + minimal, "allow_networks"},
		{"open relay, wildcard host", `listen {
  address = ":25" # <--
}` + minimal, "allow_networks"},
		{"open relay, allow everyone", `listen {
  address = "0.0.0.0:25"
  allow_networks = ["0.0.0.0/0"] # <--
}` + minimal, "allow_networks"},
		{"auth without tls", `listen {
  address = "0.0.0.0:587"
  auth = { # <--
    alice = "$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3rNRZ1GqAVz3CZs1G4cEnYm"
  }
}` + minimal, "tls_cert"},
		{"auth with a plain password", `listen {
  address = "127.0.0.1:587"
  tls_cert = "c.pem"
  tls_key = "k.pem"
  auth = { alice = "secret" } # <--
}` + minimal, "hash-password"},
		{"alias loop", `aliases {
  a = "b" # <--
  b = "a"
}` + minimal, "cycle"},
		{"alias to itself", `aliases {
  root = "root" # <--
}` + minimal, "cycle"},
		{"alias to undefined local name", `aliases {
  root = "admin" # <--
}` + minimal, "full address"},
		{"listen on the sendmail socket", `listen {
  address = "unix:var/submit.sock"
}
listen {
  address = "unix:var/sendmail.sock" # <--
}` + minimal, "sendmail socket"},
		{"duplicate upstream", minimal + `upstream "capture" { # <--
  type = "maildir"
  path = "var/other"
}`, "own name"},
		{"route to unknown upstream", minimal + `route {
  sender    = ["example.com"]
  upstreams = ["nosuch"] # <--
}`, "known: capture"},
		{"ses without region", `upstream "ses" {
  provider = "ses" # <--
}`, "region"},
		{"unknown provider", `upstream "x" {
  provider = "gmial" # <--
}`, "gmail"},
		{"bad rate", `upstream "x" {
  host = "smtp.example.com"
  rate = "lots" # <--
}`, "/hour"},
		// What the SMTP client would refuse at start-up is refused here,
		// where the error can name its line.
		{"auth plain without password", `upstream "x" {
  host     = "smtp.example.com"
  username = "me@example.com"
  auth     = "plain" # <--
}`, "password_file"},
		{"username without password", `upstream "x" {
  host     = "smtp.example.com"
  username = "me@example.com" # <--
}`, "password_file"},
		{"no upstream", `hostname = "a.example"`, "upstream"},
		{"bad listen address", `listen {
  address = "localhost" # <--
}` + minimal, "host:port"},
		{"bad network", `listen {
  address = "127.0.0.1:25"
  allow_networks = ["10.0.0.0/33"] # <--
}` + minimal, "CIDR"},
		{"hcl syntax", `limits { # <--` + minimal, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := 1
			for i, l := range strings.Split(tc.src, "\n") {
				if strings.Contains(l, "# <--") {
					line = i + 1
				}
			}
			path := filepath.Join(t.TempDir(), "relay.hcl")
			cfg, err := Parse(path, []byte(tc.src))
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T %v, want *config.Error", err, err)
			}
			d := ce.Diags[0]
			if d.Subject == nil {
				t.Fatalf("diagnostic without a position: %v", err)
			}
			prefix := fmt.Sprintf("%s:%d:", path, line)
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if d.Subject.Start.Column < 1 {
				t.Errorf("no column in %v", d.Subject)
			}
			if !strings.Contains(d.Detail, tc.want) {
				t.Errorf("detail %q does not name the fix (%q)", d.Detail, tc.want)
			}
		})
	}
}

func TestProviderPreset(t *testing.T) {
	for _, tc := range []struct {
		src        string
		host       string
		tls        settings.TLS
		port       int
		wantRegion bool
	}{
		{`provider = "gmail"`, "smtp.gmail.com", "starttls", 587, false},
		{`provider = "qq"`, "smtp.qq.com", "tls", 465, false},
		{"provider = \"qq\"\n port = 587\n tls = \"starttls\"", "smtp.qq.com", "starttls", 587, false},
		{"provider = \"gmail\"\n host = \"smtp-relay.gmail.com\"", "smtp-relay.gmail.com", "starttls", 587, false},
		{"provider = \"ses\"\n region = \"eu-west-1\"", "email-smtp.eu-west-1.amazonaws.com", "starttls", 587, true},
	} {
		src := "upstream \"u\" {\n " + tc.src + "\n}\n"
		cfg, err := Parse("/x/relay.hcl", []byte(src))
		if err != nil {
			t.Errorf("%s: %v", tc.src, err)
			continue
		}
		u := cfg.Upstreams[0]
		if u.Host != tc.host || u.Port != tc.port || u.TLS != tc.tls {
			t.Errorf("%s: got %s:%d tls=%s, want %s:%d tls=%s", tc.src, u.Host, u.Port, u.TLS, tc.host, tc.port, tc.tls)
		}
	}
}

func TestTLSNoneLoopback(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost", "::1"} {
		src := fmt.Sprintf("upstream \"u\" {\n host = %q\n tls = \"none\"\n}\n", host)
		cfg, err := Parse("/x/relay.hcl", []byte(src))
		if err != nil {
			t.Errorf("%s: %v", host, err)
			continue
		}
		if cfg.Upstreams[0].Port != 25 {
			t.Errorf("%s: port %d, want 25", host, cfg.Upstreams[0].Port)
		}
	}
}

func TestListenPolicy(t *testing.T) {
	// Non-loopback listeners are fine with an allowlist or with auth+TLS.
	for _, src := range []string{
		`listen {
  address = "0.0.0.0:25"
  allow_networks = ["10.0.0.0/8"]
}`,
		`listen {
  address = "[::]:587"
  tls_cert = "c.pem"
  tls_key = "k.pem"
  auth = { alice = "$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3rNRZ1GqAVz3CZs1G4cEnYm" }
}`,
		`listen { address = "localhost:2525" }`,
		`listen { address = "[::1]:2525" }`,
	} {
		if _, err := Parse("/x/relay.hcl", []byte(src+minimal)); err != nil {
			t.Errorf("%s\n: %v", src, err)
		}
	}
}

func TestAliasesFile(t *testing.T) {
	dir := t.TempDir()
	inWrite(t, dir, "aliases", `# comment
postmaster: root
root: ops@example.com,
	dev@example.com
logs: |/usr/bin/logger
backup: :include:/etc/backup.list, ops@example.com
archive: /var/mail/archive
nonsense line
`)
	path := inWrite(t, dir, "relay.hcl", `aliases_file = "aliases"
aliases {
  www-data = "root"
}`+minimal)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"root":       "[ops@example.com dev@example.com]",
		"postmaster": "[ops@example.com dev@example.com]",
		"www-data":   "[ops@example.com dev@example.com]",
		"backup":     "[ops@example.com]",
	}
	for name, w := range want {
		if got := fmt.Sprint(cfg.Aliases[name]); got != w {
			t.Errorf("alias %s = %s, want %s", name, got, w)
		}
	}
	for _, name := range []string{"logs", "archive"} {
		if _, ok := cfg.Aliases[name]; ok {
			t.Errorf("alias %s with only refused targets was kept: %v", name, cfg.Aliases[name])
		}
	}
	aliasesPath := filepath.Join(dir, "aliases")
	for _, line := range []int{5, 6, 7, 8} {
		prefix := fmt.Sprintf("%s:%d:", aliasesPath, line)
		found := false
		for _, w := range cfg.Warnings {
			found = found || strings.Contains(w, prefix)
		}
		if !found {
			t.Errorf("no warning naming %s in %q", prefix, cfg.Warnings)
		}
	}
}

// TestAliasesFileMissing: Debian may ship no /etc/aliases, and the
// packaged configuration names it anyway, so a missing file is a warning.
func TestAliasesFileMissing(t *testing.T) {
	dir := t.TempDir()
	path := inWrite(t, dir, "relay.hcl", `hostname = "relay.test"
aliases_file = "nosuch"
aliases { root = "ops@example.com" }`+minimal)
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("missing aliases_file: %v", err)
	}
	if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], filepath.Join(dir, "nosuch")) {
		t.Errorf("warnings = %q, want one naming the missing file", cfg.Warnings)
	}
	if got := fmt.Sprint(cfg.Aliases["root"]); got != "[ops@example.com]" {
		t.Errorf("root = %s", got)
	}
}

// TestAliasesFileUnreadable: a file that exists but cannot be read is an
// error, unlike a missing one.
func TestAliasesFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "aliases"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := inWrite(t, dir, "relay.hcl", `aliases_file = "aliases"`+minimal)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+":1:") {
		t.Errorf("err = %v, want a diagnostic at %s:1", err, path)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nosuch.hcl"))
	if err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("err = %v, want one that names --config", err)
	}
}

func TestLocate(t *testing.T) {
	t.Setenv("OUTBOX_CONFIG", "")
	if got := Locate(""); got != DefaultPath {
		t.Errorf("Locate() = %q, want %q", got, DefaultPath)
	}
	t.Setenv("OUTBOX_CONFIG", "/env.hcl")
	if got := Locate(""); got != "/env.hcl" {
		t.Errorf("Locate() with OUTBOX_CONFIG = %q", got)
	}
	if got := Locate("/flag.hcl"); got != "/flag.hcl" {
		t.Errorf("Locate(flag) = %q", got)
	}
}

func TestValidAddress(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"a@example.com", true},
		{"first.last+tag@sub.example.co", true},
		{`"john doe"@example.com`, true},
		{"用户@例子.广告", true},
		{"a@[192.0.2.1]", true},
		{"a", false},
		{"@example.com", false},
		{"a@", false},
		{"a..b@example.com", false},
		{".a@example.com", false},
		{"a b@example.com", false},
		{"a@-example.com", false},
		{"a@exa mple.com", false},
		{"a@example..com", false},
	} {
		if got := ValidAddress(tc.in); got != tc.ok {
			t.Errorf("ValidAddress(%q) = %v, want %v", tc.in, got, tc.ok)
		}
	}
}

func TestShortHostnameWarning(t *testing.T) {
	src := "upstream \"c\" {\n  type = \"maildir\"\n  path = \"md\"\n}\n"
	cfg, err := Parse(filepath.Join(t.TempDir(), "relay.hcl"), []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := os.Hostname()
	warned := false
	for _, w := range cfg.Warnings {
		if strings.Contains(w, "has no domain") && strings.Contains(w, "hostname = ") {
			warned = true
		}
	}
	if want := h != "" && !strings.Contains(h, "."); warned != want {
		t.Errorf("host name %q: warned %v, want %v (%q)", h, warned, want, cfg.Warnings)
	}
	cfg, err = Parse(filepath.Join(t.TempDir(), "relay.hcl"), []byte("hostname = \"relay.example.com\"\n"+src))
	if err != nil || len(cfg.Warnings) != 0 {
		t.Errorf("explicit hostname: %v %q", err, cfg.Warnings)
	}
}

// A spool moved elsewhere takes its maildrop folder with it: the default
// folder under /var/spool/outbox must not be read by a daemon whose spool
// is somewhere else.
func TestMaildropFollowsSpoolPath(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.hcl")
	src := `spool { path = "q/spool.db" }
upstream "c" {
  type = "maildir"
  path = "md"
}
`
	cfg, err := Parse(path, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "q", "maildrop"); cfg.Spool.Maildrop != want {
		t.Errorf("maildrop = %s, want %s", cfg.Spool.Maildrop, want)
	}
}

func TestTags(t *testing.T) {
	dir := t.TempDir()
	parse := func(tags string) (*Config, error) {
		src := "tags = " + tags + "\nspool { path = \"var/spool.db\" }\nupstream \"c\" {\n  type = \"maildir\"\n  path = \"md\"\n}\n"
		return Parse(filepath.Join(dir, "relay.hcl"), []byte(src))
	}
	cfg, err := parse(`["Campaign", "tenant"]`)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Tags, ",") != "campaign,tenant" {
		t.Errorf("tags = %v", cfg.Tags)
	}
	for _, bad := range []string{`["a b"]`, `["x", "X"]`, `["x.y"]`, `["1","2","3","4","5","6","7","8","9","10","11"]`} {
		if _, err := parse(bad); err == nil || !strings.Contains(err.Error(), "relay.hcl:1") {
			t.Errorf("tags = %s: %v, want an error at line 1", bad, err)
		}
	}
}

// Plain text to an upstream is allowed for loopback hosts only, by the
// same rule the SMTP client applies (internal/loopback).
func TestPlaintextUpstreamLoopbackForms(t *testing.T) {
	dir := t.TempDir()
	for host, ok := range map[string]bool{"localhost.": true, "::1%lo": true, "127.0.0.2": true, "smtp.example.com": false} {
		src := "spool { path = \"var/spool.db\" }\nupstream \"u\" {\n  host = \"" + host + "\"\n  port = 25\n  tls  = \"none\"\n}\n"
		_, err := Parse(filepath.Join(dir, "relay.hcl"), []byte(src))
		if (err == nil) != ok {
			t.Errorf("tls = \"none\" to %q: %v, want allowed %v", host, err, ok)
		}
	}
}
