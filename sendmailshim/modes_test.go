package sendmailshim

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/maildrop"
)

func TestWriteQueue(t *testing.T) {
	at := time.Date(2015, 11, 26, 22, 55, 27, 0, time.UTC)
	msgs := []queuedMessage{
		{ID: "3F1A4C0B2B", From: "alice@example.com", Size: 1234, Arrived: at, Recipients: []queuedRecipient{
			{Address: "bob@example.com", Status: "pending", LastError: "connect to mx.example.com[192.0.2.1]:25: Connection refused"},
			{Address: "carol@example.com", Status: "pending", LastError: "connect to mx.example.com[192.0.2.1]:25: Connection refused"},
			{Address: "dave@example.com", Status: "pending"},
			{Address: "done@example.com", Status: "sent"},
		}},
		{ID: "A1B2C3D4E5", From: "", Size: 2000, Arrived: at.Add(time.Minute), Held: true, Recipients: []queuedRecipient{
			{Address: "x@example.net", Status: "pending"},
		}},
	}
	var b bytes.Buffer
	writeQueue(&b, msgs, time.UTC)
	pad := strings.Repeat(" ", 41)
	reason := "connect to mx.example.com[192.0.2.1]:25: Connection refused"
	want := "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n" +
		"3F1A4C0B2B     1234 Thu Nov 26 22:55:27  alice@example.com\n" +
		strings.Repeat(" ", 76-len(reason)) + "(" + reason + ")\n" +
		pad + "bob@example.com\n" +
		pad + "carol@example.com\n" +
		strings.Repeat(" ", 76-len("reason unavailable")) + "(reason unavailable)\n" +
		pad + "dave@example.com\n" +
		"\n" +
		"A1B2C3D4E5!    2000 Thu Nov 26 22:56:27  MAILER-DAEMON\n" +
		pad + "x@example.net\n" +
		"\n" +
		"-- 3 Kbytes in 2 Requests.\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeQueue(&b, nil, time.UTC)
	if b.String() != "Mail queue is empty\n" {
		t.Errorf("empty queue: %q", b.String())
	}
	b.Reset()
	writeQueue(&b, msgs[1:], time.UTC)
	if !strings.HasSuffix(b.String(), "\n-- 1 Kbytes in 1 Request.\n") {
		t.Errorf("one message: %q", b.String())
	}
}

type fakeQueue struct {
	msgs    []queuedMessage
	flushed bool
	err     error
}

func (q *fakeQueue) List(_ context.Context, _ *config.Config, fn func(queuedMessage) error) error {
	if q.err != nil {
		return q.err
	}
	for _, m := range q.msgs {
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}

func (q *fakeQueue) Flush(context.Context, *config.Config) error {
	q.flushed = true
	return q.err
}

func runWith(t *testing.T, q queueAdmin, prog, cfg string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	s := &shim{prog: prog, stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		getenv: envLookup([]string{"OUTBOX_CONFIG=" + cfg}), uid: os.Getuid(), now: time.Now, queue: q}
	code := s.run(args)
	return code, out.String(), errb.String()
}

func TestMailqAndFlush(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	q := &fakeQueue{}
	code, out, _ := runWith(t, q, "mailq", cfg)
	if code != 0 || out != "Mail queue is empty\n" {
		t.Errorf("mailq: %d %q", code, out)
	}
	code, out, _ = runWith(t, q, "sendmail", cfg, "-bp")
	if code != 0 || out != "Mail queue is empty\n" {
		t.Errorf("-bp: %d %q", code, out)
	}
	// A file waiting in the maildrop folder is listed as Postfix lists its
	// maildrop queue.
	md := filepath.Join(dir, "var", "maildrop")
	name, err := maildrop.Write(md, &maildrop.Envelope{Recipients: []string{"root"}}, strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ = runWith(t, q, "mailq", cfg)
	if !strings.Contains(out, name) || !strings.Contains(out, fmt.Sprintf("(maildrop queue, sender UID %d)", os.Getuid())) {
		t.Errorf("maildrop file not listed: %q", out)
	}
	if code, _, _ := runWith(t, q, "sendmail", cfg, "-q"); code != 0 || !q.flushed {
		t.Errorf("-q: exit %d, flushed %v", code, q.flushed)
	}
	q.err = fmt.Errorf("x: %w", errDaemonDown)
	if code, _, stderr := runWith(t, q, "sendmail", cfg, "-q"); code != ExitUnavailable || !strings.Contains(stderr, "not running") {
		t.Errorf("-q with the daemon down: exit %d %q", code, stderr)
	}
}

func TestMailqRealAdminAPI(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	// No daemon and no spool file: the admin API reports an empty queue.
	code, out, stderr := runWith(t, nil, "mailq", cfg)
	if code != 0 || out != "Mail queue is empty\n" {
		t.Errorf("mailq: %d %q %q", code, out, stderr)
	}
}

func TestNewaliases(t *testing.T) {
	dir := testDir(t)
	os.WriteFile(filepath.Join(dir, "aliases"), []byte("# comment\nwww-data: root\nbackup: |/usr/bin/prog\nabuse: a@example.com, b@example.com\n"), 0o644)
	cfg := writeConfig(t, dir, `aliases_file = "aliases"`+"\n")
	code, out, stderr := runWith(t, nil, "newaliases", cfg)
	want := fmt.Sprintf("%s: 2 aliases\n%s: 2 aliases (aliases block)\nnewaliases: the daemon is not running; it reads the aliases when it starts\n", filepath.Join(dir, "aliases"), cfg)
	if code != 0 || out != want {
		t.Errorf("newaliases: %d %q, want %q", code, out, want)
	}
	if !strings.Contains(stderr, "newaliases: warning: "+filepath.Join(dir, "aliases")+":3: ") {
		t.Errorf("no warning naming the pipe line: %q", stderr)
	}
	cfg2 := writeConfig(t, testDir(t), `local_catchall = "root"`)
	code, out, _ = runWith(t, nil, "sendmail", cfg2, "-bi")
	want = fmt.Sprintf("%s: 2 aliases (aliases block)\n%s: other local names go to ops@example.com (local_catchall)\nsendmail: the daemon is not running; it reads the aliases when it starts\n", cfg2, cfg2)
	if code != 0 || out != want {
		t.Errorf("-bi: %d %q, want %q", code, out, want)
	}
	bad := writeConfig(t, testDir(t), "aliases {\n  loop = \"loop\"\n}\n")
	if code, _, stderr := runWith(t, nil, "newaliases", bad); code != ExitConfig || stderr == "" {
		t.Errorf("bad aliases: exit %d %q, want 78", code, stderr)
	}
}

func TestVerify(t *testing.T) {
	cfg := writeConfig(t, testDir(t), "")
	if code, out, _ := runWith(t, nil, "sendmail", cfg, "-bv", "root", "a@example.com"); code != 0 || !strings.Contains(out, "ops@example.com") {
		t.Errorf("-bv: %d %q", code, out)
	}
	if code, _, _ := runWith(t, nil, "sendmail", cfg, "-bv", "nobody"); code != ExitNoUser {
		t.Errorf("-bv nobody: %d", code)
	}
}

// TestVerifyLikeDaemon: -bv answers as the daemon's policy would,
// name@hostname and name@localhost included, with and without
// local_catchall.
func TestVerifyLikeDaemon(t *testing.T) {
	cfg := writeConfig(t, testDir(t), "")
	for _, to := range []string{"nobody@shim.test", "www-data@localhost"} {
		if code, out, _ := runWith(t, nil, "sendmail", cfg, "-bv", to); code != ExitNoUser || !strings.Contains(out, "User unknown") {
			t.Errorf("-bv %s: %d %q, want 67 like the daemon's 550", to, code, out)
		}
	}
	catch := writeConfig(t, testDir(t), `local_catchall = "admin@example.org"`)
	code, out, _ := runWith(t, nil, "sendmail", catch, "-bv", "www-data", "nobody@shim.test", "alice@localhost", "root")
	want := "www-data... deliverable: no alias; local_catchall admin@example.org\n" +
		"nobody@shim.test... deliverable: no alias; local_catchall admin@example.org\n" +
		"alice@localhost... deliverable: no alias; local_catchall admin@example.org\n" +
		"root... deliverable: alias for ops@example.com\n"
	if code != 0 || out != want {
		t.Errorf("-bv with local_catchall: %d %q, want %q", code, out, want)
	}
}

// TestCatchallDaemonDown: while the daemon is down, the shim takes mail
// for a local name with no alias when local_catchall is set (and refuses
// it, 67, when not), as the daemon would.
func TestCatchallDaemonDown(t *testing.T) {
	for _, tc := range []struct {
		extra string
		code  int
	}{{"", ExitNoUser}, {`local_catchall = "root"`, 0}} {
		dir := testDir(t)
		cfg := writeConfig(t, dir, tc.extra)
		var errb bytes.Buffer
		code := Main([]string{"sendmail", "www-data"}, strings.NewReader("Subject: cron\n\nout\n"), io.Discard, &errb,
			[]string{"OUTBOX_CONFIG=" + cfg, "LOGNAME=www-data"})
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d: %s", tc.extra, code, tc.code, errb.String())
		}
		names, _ := maildrop.List(filepath.Join(dir, "var", "maildrop"))
		if want := map[bool]int{true: 1, false: 0}[tc.code == 0]; len(names) != want {
			t.Errorf("%q: maildrop holds %d files, want %d", tc.extra, len(names), want)
		}
	}
}

// TestPlaceholdersShim: the shim takes mail with the packaged placeholders
// still in relay.hcl (it waits in the maildrop folder, since the daemon
// does not start), and newaliases lists them.
func TestPlaceholdersShim(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, `local_catchall = "CHANGE-ME@example.com"`)
	var errb bytes.Buffer
	if code := Main([]string{"sendmail", "root", "www-data"}, strings.NewReader("Subject: x\n\nx\n"), io.Discard, &errb,
		[]string{"OUTBOX_CONFIG=" + cfg, "LOGNAME=tester"}); code != 0 {
		t.Errorf("sendmail with a placeholder: exit %d: %s", code, errb.String())
	}
	_, _, stderr := runWith(t, nil, "newaliases", cfg)
	if !strings.Contains(stderr, `placeholder value "CHANGE-ME@example.com" in local_catchall`) {
		t.Errorf("newaliases does not name the placeholder: %q", stderr)
	}
}

// smtpSession runs the shim with -bs on pipes and returns a client
// talking to it, and a channel giving the exit status.
func smtpSession(t *testing.T, cfg string) (*smtp.Client, chan int) {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	go func() {
		code := Main([]string{"sendmail", "-bs"}, inR, outW, io.Discard, []string{"OUTBOX_CONFIG=" + cfg, "LOGNAME=tester"})
		outW.Close()
		done <- code
	}()
	c := smtp.NewClient(&stdioConn{r: outR, w: inW})
	t.Cleanup(func() { inW.Close() })
	return c, done
}

func TestSMTPSession(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	c, done := smtpSession(t, cfg)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com", &smtp.MailOptions{Return: smtp.DSNReturnFull, EnvelopeID: "e1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("root@shim.test", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyFailure}}); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("nobody@shim.test", nil)
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 {
		t.Fatalf("unknown local name: %v, want the daemon's 550", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: via -bs\r\n\r\nbody\r\n..dot\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m := d.wait(t, 1)
	if m.From != "a@example.com" || len(m.Rcpts) != 1 || m.MailOpts.EnvelopeID != "e1" {
		t.Errorf("got %+v", m)
	}
	if !strings.HasSuffix(string(m.Data), "\r\n\r\nbody\r\n..dot\r\n") || !hasField(header(t, m.Data), "Message-ID") {
		t.Errorf("data = %q", m.Data)
	}
	c.Quit()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
}

// TestSMTPSessionPassesQueuedReply: the daemon's 250 after DATA, which
// names the queue ID, reaches the -bs client as the daemon wrote it.
func TestSMTPSessionPassesQueuedReply(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	d.setDataErr(&smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as FAKE1"})
	c, done := smtpSession(t, cfg)
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("root@shim.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: x\r\n\r\nbody\r\n")
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusText != "2.0.0 OK queued as FAKE1" {
		t.Errorf("reply to DATA %q, want the daemon's 2.0.0 OK queued as FAKE1", resp.StatusText)
	}
	c.Quit()
	<-done
}

func TestSMTPSessionDaemonDown(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	c, done := smtpSession(t, cfg)
	if err := c.Mail("a@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("nobody@shim.test", nil); err == nil {
		t.Fatal("unknown local name accepted while the daemon is down")
	}
	if err := c.Rcpt("root@shim.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: down\r\n\r\nbody\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	<-done
	md := filepath.Join(dir, "var", "maildrop")
	names, _ := maildrop.List(md)
	if len(names) != 1 {
		t.Fatalf("maildrop = %v", names)
	}
	env, body, err := maildrop.Read(filepath.Join(md, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	data, _ := io.ReadAll(bufio.NewReader(body))
	if env.From != "a@example.com" || len(env.Recipients) != 1 || !strings.HasSuffix(string(data), "\r\n\r\nbody\r\n") {
		t.Errorf("envelope %+v data %q", env, data)
	}
}
