package sendmailshim

import (
	"io"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/maildrop"
)

func TestSubmitExtractRecipients(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))

	in := "To: Alice <alice@example.com>, root\nCc: bob@example.com\nBcc: secret@example.com\nSubject: hello\n\nline one\n.\nline three\n"
	code, _, stderr := run(t, cfg, in, "-t", "-i", "-N", "failure,delay", "-R", "hdrs", "-V", "env42", "extra@example.com")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := d.wait(t, 1)
	// The shim names the invoking user from the password database, else
	// from LOGNAME (which run sets to "tester"): whoever runs the tests.
	login := "tester"
	if u, err := user.Current(); err == nil {
		login = u.Username
	}
	if want := login + "@shim.test"; m.From != want {
		t.Errorf("MAIL FROM = %q, want the invoking user %s", m.From, want)
	}
	want := []string{"extra@example.com", "alice@example.com", "root@shim.test", "bob@example.com", "secret@example.com"}
	if !reflect.DeepEqual(m.Rcpts, want) {
		t.Errorf("RCPT = %v, want %v", m.Rcpts, want)
	}
	if m.MailOpts.Return != smtp.DSNReturnHeaders || m.MailOpts.EnvelopeID != "env42" {
		t.Errorf("MAIL options = %+v, want RET=HDRS ENVID=env42", m.MailOpts)
	}
	if got := m.Notify[0]; !reflect.DeepEqual(got, []smtp.DSNNotify{"FAILURE", "DELAY"}) {
		t.Errorf("NOTIFY = %v", got)
	}
	checkCRLF(t, m.Data)
	hdr := header(t, m.Data)
	if hasField(hdr, "Bcc") {
		t.Errorf("Bcc left in %q", hdr)
	}
	for _, f := range []string{"Date", "Message-ID", "From", "To", "Cc", "Subject"} {
		if !hasField(hdr, f) {
			t.Errorf("no %s field in %q", f, hdr)
		}
	}
	if !strings.HasSuffix(string(m.Data), "\r\nline one\r\n.\r\nline three\r\n") {
		t.Errorf("body = %q", m.Data)
	}
}

func TestSubmitDotEndsInput(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	code, _, stderr := run(t, cfg, "Subject: s\n\nkept\n.\nnot sent\n", "-F", "Jane Q. Doe", "-f", "jane", "alice@example.com")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := d.wait(t, 1)
	if m.From != "jane@shim.test" {
		t.Errorf("MAIL FROM = %q, want jane@shim.test", m.From)
	}
	if strings.Contains(string(m.Data), "not sent") || !strings.HasSuffix(string(m.Data), "kept\r\n") {
		t.Errorf("data = %q", m.Data)
	}
	if got := fieldValue(header(t, m.Data), "From"); got != `"Jane Q. Doe" <jane@shim.test>` {
		t.Errorf("From = %q", got)
	}
}

func TestSubmitHeaderlessBody(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	code, _, stderr := run(t, cfg, "just a line\nand another\n", "root")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	m := d.wait(t, 1)
	if !strings.HasSuffix(string(m.Data), "\r\n\r\njust a line\r\nand another\r\n") {
		t.Errorf("data = %q", m.Data)
	}
	if !hasField(header(t, m.Data), "Date") {
		t.Errorf("no Date in %q", m.Data)
	}
}

func TestSubmitNullSender(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	if code, _, stderr := run(t, cfg, "Subject: x\n\n", "-f", "<>", "root"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if m := d.wait(t, 1); m.From != "" {
		t.Errorf("MAIL FROM = %q, want <>", m.From)
	}
}

func TestExitCodes(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"no recipients with -t", "Subject: x\n\nbody\n", []string{"-t"}, ExitDataErr},
		{"no recipients at all", "Subject: x\n\n", nil, ExitUsage},
		{"bad option", "", []string{"-z", "root"}, ExitUsage},
		{"unknown local name", "Subject: x\n\n", []string{"nosuchuser"}, ExitNoUser},
		{"unparsable address", "Subject: x\n\n", []string{"a@@b"}, ExitUsage},
		{"bad address", "Subject: x\n\n", []string{"a@b..c"}, ExitDataErr},
		{"bad -B", "", []string{"-B", "9BIT", "root"}, ExitUsage},
		{"-t with -bs", "", []string{"-bs", "-t"}, ExitUsage},
		{"-q interval", "", []string{"-q15m"}, ExitOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := run(t, cfg, c.stdin, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, c.code, stderr)
			}
			if code != 0 && (stderr == "" || !strings.HasPrefix(stderr, "sendmail: ")) {
				t.Errorf("stderr = %q, want a sendmail: line", stderr)
			}
			if code == 0 && stderr != "" {
				t.Errorf("stderr = %q, want nothing", stderr)
			}
		})
	}
	if n := d.count(); n != 0 {
		t.Errorf("%d messages stored by failing calls", n)
	}
}

func TestBadConfig(t *testing.T) {
	dir := testDir(t)
	p := filepath.Join(dir, "relay.hcl")
	os.WriteFile(p, []byte("listen {\n"), 0o644)
	code, _, stderr := run(t, p, "Subject: x\n\n", "root")
	if code != ExitConfig || stderr == "" {
		t.Fatalf("exit %d (%q), want 78", code, stderr)
	}
	code, _, _ = run(t, filepath.Join(dir, "missing.hcl"), "Subject: x\n\n", "root")
	if code != ExitConfig {
		t.Fatalf("missing config: exit %d, want 78", code)
	}
}

func TestDaemonRejectsData(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	d.setDataErr(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "spool full"})
	code, _, stderr := run(t, cfg, "Subject: x\n\nbody\n", "root")
	if code != ExitTempFail || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d (%q), want 75 and one line", code, stderr)
	}
	if names, _ := maildrop.List(filepath.Join(dir, "var", "maildrop")); len(names) != 0 {
		t.Errorf("maildrop has %v after a DATA refusal", names)
	}
	d.setDataErr(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "bad content"})
	if code, _, _ := run(t, cfg, "Subject: x\n\nbody\n", "root"); code != ExitDataErr {
		t.Fatalf("554 5.6.0: exit %d, want 65", code)
	}
}

func TestDaemonDownMaildrop(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	in := "To: root\nSubject: while down\n\nbody\n"
	code, _, stderr := run(t, cfg, in, "-t", "-N", "never", "-B", "8BITMIME", "ops@example.com")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	mdDir := filepath.Join(dir, "var", "maildrop")
	names, err := maildrop.List(mdDir)
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop = %v, %v; want one file", names, err)
	}
	env, body, err := maildrop.Read(filepath.Join(mdDir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	data, _ := io.ReadAll(body)
	if !reflect.DeepEqual(env.Recipients, []string{"ops@example.com", "root@shim.test"}) || env.Notify != "never" || env.BodyType != "8BITMIME" {
		t.Errorf("envelope = %+v", env)
	}
	if env.UID != os.Getuid() || env.From == "" {
		t.Errorf("envelope UID/From = %d/%q", env.UID, env.From)
	}
	checkCRLF(t, data)
	hdr := header(t, data)
	if fieldValue(hdr, "Subject") != "while down" || !hasField(hdr, "Message-ID") {
		t.Errorf("header = %q", hdr)
	}
	if !strings.HasSuffix(string(data), "\r\n\r\nbody\r\n") {
		t.Errorf("data = %q", data)
	}

	// A local name the aliases do not define fails now, naming the block.
	code, _, stderr = run(t, cfg, in, "nosuchuser")
	if code != ExitNoUser || !strings.Contains(stderr, "aliases") {
		t.Errorf("unknown local name: exit %d (%q), want 67 naming the aliases", code, stderr)
	}
}

func TestDaemonDownMaildropUnusable(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	md := filepath.Join(dir, "var", "maildrop")
	// A file where the folder should be fails for root too.
	os.RemoveAll(md)
	if err := os.WriteFile(md, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := run(t, cfg, "Subject: x\n\nbody\n", "root")
	if code != ExitTempFail {
		t.Fatalf("exit %d (%q), want 75", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "nothing was sent") {
		t.Errorf("stderr = %q, want one line saying nothing was sent", stderr)
	}
}

func TestTooBig(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "limits {\n  max_message_size = \"1KiB\"\n}\n")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	code, _, stderr := run(t, cfg, "Subject: x\n\n"+strings.Repeat("x", 2000)+"\n", "root")
	if code != ExitUnavailable {
		t.Fatalf("exit %d (%q), want 69", code, stderr)
	}
	if d.count() != 0 {
		t.Errorf("a message too big was stored")
	}
}
