package lite_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/config/lite"
)

// agree checks that lite reads src as package config does, or leaves it to
// package config; it reports whether lite read it.
func agree(t *testing.T, src []byte) bool {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.hcl")
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := lite.Read(path)
	if errors.Is(err, lite.ErrNotSimple) {
		return false
	}
	if err != nil {
		t.Fatalf("lite.Parse: %v", err)
	}
	want, err := config.LoadAllowingPlaceholders(path)
	if err != nil {
		// The full reader refuses the file; the shim's fast path may still
		// submit with what it needs, as long as what it read is what the
		// file says. Those cases are in TestLiteValues.
		return true
	}
	if got.Hostname != want.Hostname || got.SubmitSocket != want.SubmitSocket() || got.MaxMessageSize != want.Limits.MaxMessageSize {
		t.Errorf("lite read %+v; config read hostname %q, socket %q, max_message_size %d\n%s",
			got, want.Hostname, want.SubmitSocket(), want.Limits.MaxMessageSize, src)
	}
	return true
}

var samples = []string{
	``,
	`hostname = "relay.example.com"`,
	"hostname = \"relay.example.com\" # comment\n// another\n/* and */ listen {\n  address = \"unix:var/submit.sock\"\n}\n",
	"listen {\n address = \"127.0.0.1:25\"\n}\nlisten {\n address = \"unix:/run/x.sock\"\n}\nlisten {\n address = \"unix:/run/y.sock\"\n}\n",
	"listen {\n address = \"127.0.0.1:2525\"\n allow_networks = [\"127.0.0.0/8\",\n \"::1/128\", ]\n}\n",
	"limits {\n max_message_size = \"10MiB\"\n max_recipients = 5\n}\n",
	"limits {\n max_message_size = 1048576\n}\n",
	"limits { max_message_size = \"2 KB\" }\n",
	"aliases {\n  root = \"ops@example.com\"\n  \"post-master\" = [\"root\", \"a@b.c\"]\n}\n",
	"upstream \"x\" {\n type = \"maildir\"\n path = \"var/md\"\n}\nupstream y {\n type = \"maildir\"\n path = \"/tmp/md\"\n}\n",
	"listen {\n address = \"unix:sock\"\n auth = {\n  a = \"$2a$xyz\"\n  \"b\": \"$2b$xyz\"\n }\n}\n",
	"hostname = \"r\\u00e9lay.example.com\"\n",
	"hostname = \"relay.example.com\"\nhostname = \"other.example.com\"\n",
	"hostname = \"${var.x}\"\n",
	"hostname = <<EOT\nrelay.example.com\nEOT\n",
	"limits {\n max_message_size = 1.5e6\n}\n",
	"limits {\n max_message_size = \"-1\"\n}\n",
	"listen {\n address = \"unix:\"\n}\n",
	"listen \"x\" {\n address = \"unix:/a\"\n}\n",
	"hostname = \"bad host\"\n",
	"hostname = upper(\"x\")\n",
	"spool {\n path = \"var/spool.db\"\n}\nqueue {\n retry_initial = \"1m\"\n delay_warning = \"0\"\n}\nlog {\n level = \"info\"\n}\n",
	"tags = [\"a\", \"b\"]\nlocal_catchall = \"root\"\n",
}

// TestLiteAgrees compares lite with package config on the sample files and
// on the repository's development and packaged relay.hcl, which lite must
// read itself (they are what the shim meets).
func TestLiteAgrees(t *testing.T) {
	for _, s := range samples {
		agree(t, []byte(s))
	}
	for _, f := range []string{"../../relay.hcl", "../../packaging/relay.hcl"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !agree(t, src) {
			t.Errorf("%s: lite leaves it to the full reader; the shim's fast path would not be taken", f)
		}
	}
}

// TestLiteValues checks values lite reads itself and the syntax it leaves
// to package config.
func TestLiteValues(t *testing.T) {
	s, err := lite.Parse("/etc/outbox/relay.hcl", []byte("hostname = \"relay.example.com\"\nlisten {\n address = \"127.0.0.1:25\"\n}\nlisten {\n address = \"unix:var/s.sock\" # shim\n}\nlimits {\n max_message_size = \"1KiB\"\n}\nunknown_key = [1, {a = \"b\"}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "relay.example.com" || s.SubmitSocket != "/etc/outbox/var/s.sock" || s.MaxMessageSize != 1024 {
		t.Errorf("got %+v", s)
	}
	s, err = lite.Parse("/x/relay.hcl", nil)
	if err != nil || s.SubmitSocket != lite.DefaultSubmitSocket || s.MaxMessageSize != lite.DefaultMaxMessageSize || s.Hostname != lite.DefaultHostname() {
		t.Errorf("empty file: %+v, %v", s, err)
	}
	for _, src := range []string{
		"hostname = \"${x}\"\n", "hostname = \"a\" + \"b\"\n", "a = <<EOT\nx\nEOT\n", "hostname = \"x\nlisten {}\n",
		"/* two\nlines */\n", "listen {\n address = \"unix:\"\n}\n", "limits {\n max_message_size = \"big\"\n}\n",
		"limits {\n}\nlimits {\n}\n", "hostname = \"a\" hostname2 = \"b\"\n", "listen {\n", "x = [1, 2\n", "h\u00e9 = 1\n",
		// HCL normalises strings to NFC: non-ASCII text is left to it.
		"listen {\n address = \"unix:/run/cafe\u0301.sock\"\n}\n", "listen {\n address = \"unix:/run/cafe\\u0301.sock\"\n}\n",
		// A key given twice, and object elements without a separator:
		// errors of the file, which the full reader reports.
		"limits {\n max_message_size = \"1MiB\"\n max_message_size = \"2MiB\"\n}\n",
		"listen {\n address = \"unix:/a\"\n address = \"unix:/b\"\n}\n", "x = {a = 1 b = 2}\n",
	} {
		if _, err := lite.Parse("/x/relay.hcl", []byte(src)); !errors.Is(err, lite.ErrNotSimple) {
			t.Errorf("%q: %v, want ErrNotSimple", src, err)
		}
	}
}

// FuzzLite checks that lite never reads a value other than the one package
// config reads.
func FuzzLite(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s))
	}
	if src, err := os.ReadFile(filepath.Join("..", "..", "relay.hcl")); err == nil {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		agree(t, src)
	})
}
