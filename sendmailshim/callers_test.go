package sendmailshim

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/internal/shimbuild"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// shimBinary builds the shims once per test run and returns the folder
// holding them as the package installs them: sendmail (the C program) and
// outbox-sendmail (this shim), with mailq and newaliases symlinks.
func shimBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "shimbin")
		if buildErr != nil {
			return
		}
		if buildErr = shimbuild.Build(buildDir); buildErr != nil {
			return
		}
		for _, n := range []string{"mailq", "newaliases"} {
			if err := os.Symlink("sendmail", filepath.Join(buildDir, n)); err != nil {
				buildErr = err
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("building the shim: %v %s", buildErr, buildDir)
	}
	return buildDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" && buildErr == nil {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// need skips the test when tool is missing, unless CI=true.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", tool)
		}
		t.Skipf("%s is not installed", tool)
	}
	return p
}

// e2e is a configuration, a test daemon on its socket and the built shim.
type e2e struct {
	dir, cfg, bin string
	d             *fakeDaemon
}

func newE2E(t *testing.T) *e2e {
	bin := shimBinary(t)
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	return &e2e{dir: dir, cfg: cfg, bin: bin, d: startDaemon(t, filepath.Join(dir, "var", "submit.sock"))}
}

func (e *e2e) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "OUTBOX_CONFIG="+e.cfg, "HOME="+e.dir)
	cmd.Dir = e.dir
	return cmd
}

func runCmd(t *testing.T, cmd *exec.Cmd, stdin string) {
	t.Helper()
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
}

func TestCallerMailx(t *testing.T) {
	mail := need(t, "mail")
	e := newE2E(t)
	rc := filepath.Join(e.dir, "mailrc")
	os.WriteFile(rc, []byte("set sendmail="+filepath.Join(e.bin, "sendmail")+"\n"), 0o644)
	cmd := e.command(mail, "-s", "disk almost full", "-a", "X-Check: 1", "root")
	cmd.Env = append(cmd.Env, "MAILRC="+rc)
	runCmd(t, cmd, "sda1 is at 95%\n")
	m := e.d.wait(t, 1)
	if len(m.Rcpts) != 1 || m.Rcpts[0] != "root@shim.test" {
		t.Errorf("RCPT = %v", m.Rcpts)
	}
	if !strings.HasSuffix(m.From, "@shim.test") {
		t.Errorf("MAIL FROM = %q", m.From)
	}
	hdr := header(t, m.Data)
	if fieldValue(hdr, "Subject") != "disk almost full" || fieldValue(hdr, "X-Check") != "1" {
		t.Errorf("header = %q", hdr)
	}
	for _, f := range []string{"Date", "Message-ID", "From", "To"} {
		if !hasField(hdr, f) {
			t.Errorf("no %s in %q", f, hdr)
		}
	}
	checkCRLF(t, m.Data)
	if !strings.Contains(string(m.Data), "sda1 is at 95%\r\n") {
		t.Errorf("body = %q", m.Data)
	}
}

func TestCallerPHP(t *testing.T) {
	php := need(t, "php")
	e := newE2E(t)
	sm := filepath.Join(e.bin, "sendmail") + " -t -i"
	code := `if (!mail("alice@example.com, root", "PHP test", "Hello\nfrom PHP\n.\nend", "From: web@example.com\r\nBcc: hidden@example.com")) { exit(1); }`
	runCmd(t, e.command(php, "-n", "-d", "sendmail_path="+sm, "-r", code), "")
	m := e.d.wait(t, 1)
	rcpts := append([]string(nil), m.Rcpts...)
	sort.Strings(rcpts)
	if want := []string{"alice@example.com", "hidden@example.com", "root@shim.test"}; strings.Join(rcpts, " ") != strings.Join(want, " ") {
		t.Errorf("RCPT = %v, want %v", rcpts, want)
	}
	hdr := header(t, m.Data)
	if hasField(hdr, "Bcc") || fieldValue(hdr, "Subject") != "PHP test" || fieldValue(hdr, "From") != "web@example.com" {
		t.Errorf("header = %q", hdr)
	}
	checkCRLF(t, m.Data)
	if !strings.HasSuffix(string(m.Data), "Hello\r\nfrom PHP\r\n.\r\nend\r\n") && !strings.HasSuffix(string(m.Data), "Hello\r\nfrom PHP\r\n.\r\nend") {
		t.Errorf("body = %q", m.Data)
	}
}

func TestCallerCron(t *testing.T) {
	e := newE2E(t)
	// What cron writes on the pipe, then its exact command line.
	in := "From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> /usr/local/bin/backup\n" +
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n" +
		"X-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\n\nbackup: done ✓\n.\nstill output\n"
	runCmd(t, e.command(filepath.Join(e.bin, "sendmail"), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"), in)
	m := e.d.wait(t, 1)
	if len(m.Rcpts) != 1 || m.Rcpts[0] != "root@shim.test" || !strings.HasSuffix(m.From, "@shim.test") {
		t.Errorf("envelope %q → %v", m.From, m.Rcpts)
	}
	hdr := header(t, m.Data)
	if fieldValue(hdr, "From") != "root (Cron Daemon)" || len(fieldValue(hdr, "X-Cron-Env")) == 0 {
		t.Errorf("header = %q", hdr)
	}
	if !strings.HasSuffix(string(m.Data), "backup: done ✓\r\n.\r\nstill output\r\n") {
		t.Errorf("body = %q", m.Data)
	}
}

func TestCallerSwaks(t *testing.T) {
	swaks := need(t, "swaks")
	e := newE2E(t)
	pipe := filepath.Join(e.bin, "sendmail") + " -bs"
	runCmd(t, e.command(swaks, "--pipe", pipe, "--from", "app@example.com", "--to", "root@shim.test,bob@example.com",
		"--header", "Subject: swaks test", "--body", "via swaks"), "")
	m := e.d.wait(t, 1)
	if m.From != "app@example.com" || strings.Join(m.Rcpts, " ") != "root@shim.test bob@example.com" {
		t.Errorf("envelope %q → %v", m.From, m.Rcpts)
	}
	if fieldValue(header(t, m.Data), "Subject") != "swaks test" || !strings.Contains(string(m.Data), "via swaks") {
		t.Errorf("data = %q", m.Data)
	}
}

func TestCallerGitSendEmail(t *testing.T) {
	git := need(t, "git")
	if err := exec.Command(git, "send-email", "--help").Run(); err != nil {
		t.Skip("git send-email is not installed")
	}
	e := newE2E(t)
	// git must not depend on this machine's identity, host name or
	// configuration files: a fresh machine has none of them.
	ident := []string{"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com",
		"GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com"}
	gitCmd := func(args ...string) *exec.Cmd {
		cmd := e.command(git, args...)
		cmd.Env = append(cmd.Env, ident...)
		return cmd
	}
	repo := filepath.Join(e.dir, "repo")
	for _, args := range [][]string{
		{"init", "-q", repo},
		{"-C", repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "--allow-empty", "-m", "first"},
		{"-C", repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-q", "--allow-empty", "-m", "Add the widget"},
		{"-C", repo, "format-patch", "--always", "-1", "-o", e.dir},
	} {
		runCmd(t, gitCmd(args...), "")
	}
	patches, _ := filepath.Glob(filepath.Join(e.dir, "*.patch"))
	cmd := gitCmd("-C", repo, "send-email", "--confirm=never", "--smtp-server="+filepath.Join(e.bin, "sendmail"),
		"--from=dev@example.com", "--envelope-sender=auto", "--to=list@example.com", "--no-chain-reply-to", patches[0])
	if out, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "Perl module") || strings.Contains(string(out), "Can't locate") {
			// A git whose send-email lacks its Perl modules cannot be
			// driven at all; CI installs them (libmailtools-perl).
			if os.Getenv("CI") == "true" {
				t.Fatalf("git send-email is installed but broken: %s", out)
			}
			t.Skipf("git send-email is installed but broken: %s", strings.SplitN(string(out), "\n", 2)[0])
		}
		t.Fatalf("git send-email: %v\n%s", err, out)
	}
	m := e.d.wait(t, 1)
	if !strings.Contains(strings.Join(m.Rcpts, " "), "list@example.com") || m.From != "dev@example.com" {
		t.Errorf("envelope %q → %v", m.From, m.Rcpts)
	}
	if !strings.Contains(fieldValue(header(t, m.Data), "Subject"), "Add the widget") {
		t.Errorf("header = %q", header(t, m.Data))
	}
}

func TestBinaryNames(t *testing.T) {
	e := newE2E(t)
	out, err := e.command(filepath.Join(e.bin, "newaliases")).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), e.cfg+": 2 aliases (aliases block)\n") {
		t.Errorf("newaliases: %v %q", err, out)
	}
	out, err = e.command(filepath.Join(e.bin, "mailq")).CombinedOutput()
	if err != nil || string(out) != "Mail queue is empty\n" {
		t.Errorf("mailq: %v %q", err, out)
	}
	cmd := e.command(filepath.Join(e.bin, "sendmail"), "-k")
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != ExitUsage || !strings.HasPrefix(string(out), "sendmail: invalid option -- 'k'") {
		t.Errorf("bad option: %d %q", cmd.ProcessState.ExitCode(), out)
	}
}

// TestDaemonDownThenUp: the shim exits 0 with the daemon down, the file
// waits in the maildrop folder, and once the daemon is up new mail goes
// over the socket.
func TestDaemonDownThenUp(t *testing.T) {
	bin := shimBinary(t)
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	e := &e2e{dir: dir, cfg: cfg, bin: bin}
	runCmd(t, e.command(filepath.Join(bin, "sendmail"), "-t", "-i"), "To: root\nSubject: early\n\nqueued while down\n")
	names, err := filepath.Glob(filepath.Join(dir, "var", "maildrop", "*"))
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop = %v", names)
	}
	e.d = startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	runCmd(t, e.command(filepath.Join(bin, "sendmail"), "-t", "-i"), "To: root\nSubject: later\n\nover the socket\n")
	if m := e.d.wait(t, 1); fieldValue(header(t, m.Data), "Subject") != "later" {
		t.Errorf("got %q", m.Data)
	}
}

// BenchmarkSendmail times one "sendmail -t -i" call with a 4 KiB message,
// process start included, against a test daemon that syncs each message
// to disk before answering.
func BenchmarkSendmail(b *testing.B) {
	bin := shimBinary(b)
	dir := testDir(b)
	cfg := writeConfig(b, dir, "")
	d := startDaemon(b, filepath.Join(dir, "var", "submit.sock"))
	d.syncDir = b.TempDir()
	msg := benchMessage()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := exec.Command(filepath.Join(bin, FullProgram), "-t", "-i")
		cmd.Env = []string{"OUTBOX_CONFIG=" + cfg, "LOGNAME=bench"}
		cmd.Stdin = strings.NewReader(msg)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v %s", err, out)
		}
	}
}

func benchMessage() string {
	var sb strings.Builder
	sb.WriteString("To: root, ops@example.com\nSubject: benchmark\n\n")
	for sb.Len() < 4096 {
		sb.WriteString("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n")
	}
	return sb.String()[:4095] + "\n"
}

// TestSendmailLatency prints the median and p99 of 500 calls of the whole
// shim (outbox-sendmail) against a daemon stand-in and the
// sequential rate; it runs only with OUTBOX_LATENCY=1.
func TestSendmailLatency(t *testing.T) {
	if os.Getenv("OUTBOX_LATENCY") != "1" {
		t.Skip("set OUTBOX_LATENCY=1 to measure")
	}
	bin := shimBinary(t)
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	d.syncDir = t.TempDir()
	msg := benchMessage()
	const n = 500
	times := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		cmd := exec.Command(filepath.Join(bin, FullProgram), "-t", "-i")
		cmd.Env = []string{"OUTBOX_CONFIG=" + cfg, "LOGNAME=bench"}
		cmd.Stdin = strings.NewReader(msg)
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		times = append(times, time.Since(t0))
	}
	total := time.Since(start)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("%d calls: median %v, p99 %v, %.0f calls/s sequentially", n, times[n/2], times[n*99/100], float64(n)/total.Seconds())
	if d.count() != n {
		t.Errorf("%d messages stored, want %d", d.count(), n)
	}
}
