package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/relay"
)

// sendEnv is a daemon delivering into a Maildir, with a folder of input
// files, all reachable by every user.
type sendEnv struct {
	t       *testing.T
	dir     string
	conf    string
	maildir string
	seen    map[string]bool // delivered files already returned
}

func startSendEnv(t *testing.T) *sendEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "outbox-send-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test folder kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	// Explicit modes: the test's umask must not decide what others reach.
	for _, d := range []string{dir, filepath.Join(dir, "in")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &sendEnv{t: t, dir: dir, conf: filepath.Join(dir, "relay.hcl"), maildir: filepath.Join(dir, "md", "new")}
	src := `hostname = "relay.test"
listen { address = "unix:run/submit.sock" }
spool {
  path     = "spool/spool.db"
  maildrop = "spool/maildrop"
}
admin { socket = "run/admin.sock" }
upstream "capture" {
  type = "maildir"
  path = "md"
}
`
	if err := os.WriteFile(e.conf, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.conf, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(e.conf)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	r, err := relay.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil)), relay.Options{Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return e
}

// file writes an input file every user can read and returns its path.
func (e *sendEnv) file(name string, data []byte) string {
	e.t.Helper()
	p := filepath.Join(e.dir, "in", name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run runs `outbox send ARGS` as uid with stdin.
func (e *sendEnv) run(uid uint32, stdin string, args ...string) (code int, stderr string) {
	e.t.Helper()
	cmd := exec.Command(outboxBinary(e.t), append([]string{"send", "--config", e.conf}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("running outbox send as uid %d: %v", uid, err)
	}
	return code, errb.String()
}

// delivered waits for the n-th message in the Maildir (from 1).
func (e *sendEnv) delivered(n int) []byte {
	e.t.Helper()
	// Maildir names do not sort by arrival (the microseconds are not
	// zero-padded): the message asked for is the one not returned before.
	if e.seen == nil {
		e.seen = map[string]bool{}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(e.maildir)
		if len(ents) >= n {
			var fresh []string
			for _, ent := range ents {
				if !e.seen[ent.Name()] {
					fresh = append(fresh, ent.Name())
				}
			}
			if len(fresh) != 1 || len(ents) != n {
				e.t.Fatalf("%d messages delivered, %d new; want message %d alone", len(ents), len(fresh), n)
			}
			e.seen[fresh[0]] = true
			b, err := os.ReadFile(filepath.Join(e.maildir, fresh[0]))
			if err != nil {
				e.t.Fatal(err)
			}
			return b
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("message %d not delivered", n)
	return nil
}

// pyParse decodes a message with Python's email package (policy default).
func pyParse(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is needed for the interoperability tests")
		}
		t.Skip("no python3")
	}
	cmd := exec.Command(py, "../../email/testdata/parse.py")
	cmd.Stdin = bytes.NewReader(raw)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSendComposes runs `outbox send` as nobody with every composing flag
// and checks the delivered message with Python.
func TestSendComposes(t *testing.T) {
	asUserOK(t)
	e := startSendEnv(t)
	png, err := os.ReadFile("../../email/testdata/chart.png")
	if err != nil {
		t.Fatal(err)
	}
	pdf := append([]byte("%PDF-1.4\n\x00\x01\xfe\xff"), bytes.Repeat([]byte{0x80, 0x0d, 0x0a, 0x00}, 500)...)
	html := e.file("body.html", []byte(`<p>季度报告</p><img src="cid:chart.png">`))
	code, stderr := e.run(uidNobody, "各位好，\n报告见附件。\n",
		"--from", "张伟 <zhang.wei@example.com>", "--to", "李娜 <li.na@example.org>", "--to", "ops@example.org",
		"--cc", "cc@example.org", "--bcc", "audit@example.net", "--subject", "测试邮件：季度报告",
		"--text", "-", "--html", html, "--inline", e.file("chart.png", png), "--attach", e.file("季度报告.pdf", pdf),
		"--header", "X-Mailer: outbox test", "--tag", "campaign=q3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	raw := e.delivered(1)
	p := pyParse(t, raw)
	if p["subject"] != "测试邮件：季度报告" {
		t.Errorf("subject %v", p["subject"])
	}
	if from := p["from"].([]any)[0].(map[string]any); from["name"] != "张伟" {
		t.Errorf("from %v", from)
	}
	h := p["headers"].(map[string]any)
	if h["X-Mailer"] != "outbox test" || h["X-Outbox-Tag-Campaign"] != "q3" {
		t.Errorf("headers %v", h)
	}
	var shape []string
	for _, part := range p["parts"].([]any) {
		pm := part.(map[string]any)
		shape = append(shape, pm["type"].(string))
		switch pm["type"] {
		case "text/plain":
			if strings.ReplaceAll(pm["text"].(string), "\r\n", "\n") != "各位好，\n报告见附件。\n" {
				t.Errorf("text %q", pm["text"])
			}
		case "image/png":
			if pm["data"] != b64(png) || pm["cid"] != "<chart.png>" {
				t.Errorf("image part %v", pm)
			}
		case "application/pdf":
			if pm["data"] != b64(pdf) || pm["filename"] != "季度报告.pdf" {
				t.Errorf("pdf part: filename %v, same bytes %v", pm["filename"], pm["data"] == b64(pdf))
			}
		}
	}
	if got := strings.Join(shape, " "); got != "multipart/mixed multipart/alternative text/plain multipart/related text/html image/png application/pdf" {
		t.Errorf("structure %s", got)
	}
	if !bytes.Contains(raw, []byte("X-Envelope-To: <audit@example.net>")) || bytes.Count(raw, []byte("audit@example.net")) != 1 {
		t.Error("the Bcc recipient is missing from the envelope or present in the message")
	}
	if !bytes.Contains(raw, []byte("from userid 65534")) {
		t.Error("the daemon did not record the submitting user")
	}
}

// TestSendOldForms keeps `outbox send RCPT… < message` and
// `outbox send --subject S RCPT… < body` working.
func TestSendOldForms(t *testing.T) {
	asUserOK(t)
	e := startSendEnv(t)
	msg := "From: app@example.com\nTo: bob@example.org\nSubject: raw\n\nraw body\n"
	if code, stderr := e.run(uidNobody, msg, "--from", "app@example.com", "bob@example.org"); code != 0 {
		t.Fatalf("raw form: exit %d: %s", code, stderr)
	}
	raw := e.delivered(1)
	if !bytes.Contains(raw, []byte("Subject: raw\r\n")) || !bytes.Contains(raw, []byte("\r\n\r\nraw body\r\n")) {
		t.Errorf("raw form delivered:\n%s", raw)
	}
	if code, stderr := e.run(uidNobody, "日报正文\n", "--subject", "日报", "bob@example.org"); code != 0 {
		t.Fatalf("subject form: exit %d: %s", code, stderr)
	}
	p := pyParse(t, e.delivered(2))
	if p["subject"] != "日报" {
		t.Errorf("subject %v", p["subject"])
	}
	if from := p["from"].([]any)[0].(map[string]any); from["addr"] != "nobody@relay.test" {
		t.Errorf("default sender %v", from)
	}
}

// TestSendExitCodes checks the statuses scripts rely on; nothing may be
// delivered by a refused command.
func TestSendExitCodes(t *testing.T) {
	asUserOK(t)
	e := startSendEnv(t)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no recipient", []string{"--subject", "x"}, 64, "recipient"},
		{"both forms", []string{"--to", "a@example.org", "b@example.org"}, 64, "not both"},
		{"bad address", []string{"--to", "not an address"}, 64, "not a mail address"},
		{"bad header", []string{"--to", "a@example.org", "--header", "NoColon"}, 64, "Name: value"},
		{"missing file", []string{"--to", "a@example.org", "--attach", "/nonexistent/x.pdf"}, 66, "x.pdf"},
		{"injection", []string{"--to", "a@example.org", "--subject", "hi\r\nBcc: v@example.org", "--header", "X-A: 1\nX-B: 2"}, 65, "Subject: contains a line break"},
		{"inline not shown", []string{"--to", "a@example.org", "--html", e.file("h.html", []byte("<p>x</p>")), "--inline", e.file("i.png", []byte("p"))}, 65, "does not refer to cid:i.png"},
	} {
		code, stderr := e.run(uidNobody, "", c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, want %d; stderr %q", c.name, code, c.code, stderr)
		}
	}
	// Validation reports every problem, one per line.
	_, stderr := e.run(uidNobody, "", "--to", "a@example.org", "--subject", "a\nb", "--header", "X-A: 1\rX", "--tag", "bad key=v")
	if n := strings.Count(stderr, "\n"); n != 3 {
		t.Errorf("%d lines for 3 problems:\n%s", n, stderr)
	}
	if ents, _ := os.ReadDir(e.maildir); len(ents) != 0 {
		t.Errorf("%d messages delivered by refused commands", len(ents))
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// Without --from the sender is the invoking user, named as sendmail names
// it; a uid the password database does not know, with no LOGNAME or USER,
// is refused (75) rather than sent as root.
func TestSendDefaultSenderIsTheUser(t *testing.T) {
	asUserOK(t)
	e := startSendEnv(t)
	if code, stderr := e.run(uidNobody, "", "--to", "a@example.org", "--subject", "who"); code != 0 {
		t.Fatalf("as nobody: exit %d %s", code, stderr)
	}
	if raw := e.delivered(1); !strings.Contains(string(raw), "nobody@") {
		t.Errorf("sender is not nobody:\n%s", raw)
	}
	code, stderr := e.run(54321, "", "--to", "a@example.org", "--subject", "who")
	if code != 75 || !strings.Contains(stderr, "login name") {
		t.Errorf("unknown uid: exit %d %q, want 75 naming the missing login name", code, stderr)
	}
}
