package upstream

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretFromFile(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for _, tc := range []struct{ content, want string }{
		{"pw\n", "pw"},
		{"pw\r\n", "pw"},
		{"pw\n\n", "pw\n"},
		{" pw ", " pw "},
	} {
		p := filepath.Join(dir, "s")
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := SecretFromFile(p, nil)(ctx)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}

	var logs syncBuffer
	p := filepath.Join(dir, "open")
	if err := os.WriteFile(p, []byte("hunter2-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	f := SecretFromFile(p, testLogger(&logs))
	for i := 0; i < 2; i++ {
		if got, err := f(ctx); err != nil || got != "hunter2-secret" {
			t.Fatalf("got %q, %v", got, err)
		}
	}
	l := logs.String()
	if strings.Count(l, "chmod 600") < 1 || strings.Count(l, "level=WARN") != 1 || !strings.Contains(l, p) {
		t.Errorf("want one warning naming the file and chmod 600:\n%s", l)
	}
	if strings.Contains(l, "hunter2") {
		t.Errorf("log shows the secret")
	}

	// Rotation: every call reads the file again.
	if err := os.WriteFile(p, []byte("rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := f(ctx); got != "rotated" {
		t.Errorf("after rotation got %q", got)
	}

	missing := filepath.Join(dir, "missing")
	if _, err := SecretFromFile(missing, nil)(ctx); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v does not name the file", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := SecretFromFile(empty, nil)(ctx); err == nil {
		t.Errorf("empty secret accepted")
	}
}

func TestSecretFromEnv(t *testing.T) {
	t.Setenv("OUTBOX_TEST_SECRET", "s3")
	if got, err := SecretFromEnv("OUTBOX_TEST_SECRET")(context.Background()); err != nil || got != "s3" {
		t.Errorf("got %q, %v", got, err)
	}
	t.Setenv("OUTBOX_TEST_SECRET", "")
	if _, err := SecretFromEnv("OUTBOX_TEST_SECRET")(context.Background()); err == nil || !strings.Contains(err.Error(), "OUTBOX_TEST_SECRET") {
		t.Errorf("error %v", err)
	}
}

func TestSecretFromCommand(t *testing.T) {
	ctx := context.Background()
	if got, err := SecretFromCommand("password_command", "printf 'abc\\n\\n'", nil)(ctx); err != nil || got != "abc\n" {
		t.Errorf("got %q, %v", got, err)
	}
	var logs syncBuffer
	_, err := SecretFromCommand("password_command", "echo leaked-output; echo MARKER-99 leaked-output >&2; exit 3", testLogger(&logs))(ctx)
	if err == nil || err.Error() != "password_command failed: exit status 3 (its stderr is in the log)" {
		t.Errorf("error %v", err)
	}
	if strings.Contains(err.Error(), "leaked-output") || strings.Contains(err.Error(), "MARKER-99") {
		t.Errorf("error shows the command or its output: %v", err)
	}
	l := logs.String()
	if !strings.Contains(l, "level=WARN") || !strings.Contains(l, "MARKER-99 [redacted]") || strings.Contains(l, "leaked-output") {
		t.Errorf("want the stderr at WARN with the stdout blanked out:\n%s", l)
	}

	// A flood on stderr reaches the log bounded.
	logs = syncBuffer{}
	_, err = SecretFromCommand("token_command", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1", testLogger(&logs))(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "token_command failed") {
		t.Errorf("error %v", err)
	}
	if n := strings.Count(logs.String(), "x"); n > maxCommandStderr+100 || n < maxCommandStderr {
		t.Errorf("%d bytes of stderr logged, want about %d", n, maxCommandStderr)
	}
}

// The package installs the password file 0640 root:outbox: group access
// for the daemon's own group is not a leak, another group's is.
func TestSecretFileGroupOfDaemon(t *testing.T) {
	if os.Getuid() != 0 {
		// Under CI a skip would hide the test: say what is missing.
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to change the file's group")
		}
		t.Skip("needs root to change the file's group")
	}
	// The daemon's group, as the package names it, stands here for
	// "mail" (gid 8 on every Debian system).
	defer func(g string) { daemonGroup = g }(daemonGroup)
	daemonGroup = "mail"
	dir := t.TempDir()
	for _, tc := range []struct {
		gid  int
		warn bool
	}{{os.Getegid(), false}, {65534, true}, {8, false}} {
		var logs syncBuffer
		p := filepath.Join(dir, "pw")
		if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 0, tc.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := SecretFromFile(p, testLogger(&logs))(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "level=WARN"); got != tc.warn {
			t.Errorf("0640 with group %d: warning %v, want %v\n%s", tc.gid, got, tc.warn, logs.String())
		}
	}
}
