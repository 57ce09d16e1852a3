package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShimBsBareNames: `sendmail -bs` (swaks --pipe, or any program
// speaking SMTP to the shim) takes "RCPT TO:<root>" and "MAIL
// FROM:<cron>" as the daemon's local listeners do, and the message
// reaches root's alias; the body is passed through untouched.
func TestShimBsBareNames(t *testing.T) {
	shim := buildShim(t)
	e := newEnv(t, `upstream "capture" {
  type = "maildir"
  path = "maildir"
}`, `listen {
  address = "unix:submit.sock"
}

aliases {
  root = "ops@example.com"
}`)
	e.start()
	session := "EHLO client.example\r\n" +
		"MAIL FROM:<cron>\r\n" +
		"RCPT TO:<root>\r\n" +
		"DATA\r\n" +
		"Subject: qa -bs\r\n" +
		"\r\n" +
		"RCPT TO:<root>\r\n" +
		".\r\n" +
		"QUIT\r\n"
	cmd := exec.Command(shim, "-bs")
	cmd.Env = append(os.Environ(), "OUTBOX_CONFIG="+e.conf)
	cmd.Stdin = strings.NewReader(session)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sendmail -bs: %v\n%s%s", err, out, stderr.String())
	}
	if strings.Contains(string(out), "501") || !strings.Contains(string(out), "250 2.0.0 OK queued as ") {
		t.Fatalf("sendmail -bs refused the bare names, or did not pass on the daemon's queue ID:\n%s", out)
	}
	newDir := filepath.Join(e.dir, "maildir", "new")
	var files []os.DirEntry
	waitFor(t, "delivery into the maildir", 20*time.Second, func() bool {
		files, _ = os.ReadDir(newDir)
		return len(files) == 1
	})
	got, err := os.ReadFile(filepath.Join(newDir, files[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Return-Path: <cron@relay.test>", "X-Envelope-To: <ops@example.com>", "\r\n\r\nRCPT TO:<root>\r\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("delivered message lacks %q:\n%s", want, got)
		}
	}
}
