package relay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/sendmailtest"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

func smSetup(t *testing.T, extra string) (*inRelay, string) {
	t.Helper()
	ir := inStartRelay(t, inSetup{extra: inAliases + extra})
	sock := filepath.Join(ir.dir, "sendmail.sock")
	if ir.r.cfg.SendmailSocket() != sock {
		t.Fatalf("SendmailSocket = %q, want %q", ir.r.cfg.SendmailSocket(), sock)
	}
	return ir, sock
}

// smIdle waits until the relay has no sendmail protocol call open.
func smIdle(t *testing.T, ir *inRelay) {
	t.Helper()
	dlvWait(t, "the calls to end", func() bool {
		s := ir.r.sendmail
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})
}

// smOnly returns the one message in the spool with its body.
func smOnly(t *testing.T, ir *inRelay) (*spool.Message, string) {
	t.Helper()
	list, err := ir.r.Spool().List()
	if err != nil || len(list) != 1 {
		t.Fatalf("spool holds %d messages (%v), want 1", len(list), err)
	}
	return ir.stored(t, list[0].ID)
}

func addrs(m *spool.Message) string {
	var out []string
	for _, r := range m.Recipients {
		out = append(out, r.Address)
	}
	return strings.Join(out, " ")
}

func sendmailAccepted(t *testing.T, ir *inRelay) float64 {
	t.Helper()
	var pb dto.Metric
	if err := ir.r.metrics.accepted.WithLabelValues("sendmail").Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetCounter().GetValue()
}

// TestSendmailProtocolExtract: `sendmail -t -i` over the sendmail
// protocol is stored for the header's recipients, Bcc removed, From and
// the sender from the caller's uid (SO_PEERCRED), as the submission socket
// stores it, and counted as sendmail.
func TestSendmailProtocolExtract(t *testing.T) {
	ir, sock := smSetup(t, "")
	msg := "To: a@example.com\nCc: root\nBcc: secret@example.com\nSubject: t\n\nline\n.\nstill the message\n"
	rep := sendmailtest.Call{Argv: []string{"/usr/sbin/sendmail", "-t", "-i"}, Env: []string{"LOGNAME=someone"}, Input: msg}.Run(t, sock)
	if rep.Answer != "GO" || rep.Code != 0 || rep.Text != "" {
		t.Fatalf("reply %+v, want GO, then EXIT 0", rep)
	}
	m, body := smOnly(t, ir)
	uid := os.Getuid()
	user := userName(uid)
	if m.From != user+"@"+inHostname {
		t.Errorf("sender %q, want %s@%s", m.From, user, inHostname)
	}
	if got := addrs(m); got != "a@example.com alice@example.com bob@example.com secret@example.com" {
		t.Errorf("recipients %q", got)
	}
	if m.UID != uint32(uid) || !strings.HasPrefix(m.Submitter, fmt.Sprintf("uid %d", uid)) {
		t.Errorf("uid %d, submitter %q; want uid %d", m.UID, m.Submitter, uid)
	}
	if strings.Contains(body, "Bcc") || strings.Contains(body, "secret@") {
		t.Errorf("Bcc kept:\n%s", body)
	}
	if from := inHeader(body, "From"); !strings.Contains(from, "<"+user+"@"+inHostname+">") && from != user+"@"+inHostname {
		t.Errorf("From: %q", from)
	}
	if !strings.Contains(body, "\r\n.\r\nstill the message\r\n") {
		t.Errorf("-i: the body lost what follows the lone dot:\n%s", body)
	}
	if !strings.Contains(inHeader(body, "Received"), fmt.Sprintf("userid %d", uid)) {
		t.Errorf("Received: %q", inHeader(body, "Received"))
	}
	if v := sendmailAccepted(t, ir); v != 1 {
		t.Errorf("outbox_accepted_messages_total{source=sendmail} = %v, want 1", v)
	}
}

// TestSendmailProtocolArgv: recipients on the command line, -f, and no -i:
// the message ends at the lone "." line (GO DOT), even when the client
// sends more after it.
func TestSendmailProtocolArgv(t *testing.T) {
	ir, sock := smSetup(t, "")
	msg := "Subject: dots\n\nbody\n..stuffed\n.\nafter the dot\n"
	rep := sendmailtest.Call{Argv: []string{"sendmail", "-f", "app@example.org", "x@example.com, Y <y@example.com>", "postmaster"}, Input: msg, Whole: true}.Run(t, sock)
	if rep.Answer != "GO DOT" || rep.Code != 0 {
		t.Fatalf("reply %+v, want GO DOT, then EXIT 0", rep)
	}
	m, body := smOnly(t, ir)
	if m.From != "app@example.org" || addrs(m) != "x@example.com y@example.com alice@example.com bob@example.com" {
		t.Errorf("envelope %q → %q", m.From, addrs(m))
	}
	_, b, _ := strings.Cut(body, "\r\n\r\n")
	if b != "body\r\n..stuffed\r\n" {
		t.Errorf("body %q, want it to end before the lone dot", b)
	}
}

// TestSendmailProtocolHandover: calls the daemon does not run itself go
// back to the client, before any input is read.
func TestSendmailProtocolHandover(t *testing.T) {
	ir, sock := smSetup(t, "")
	for _, argv := range [][]string{
		{"sendmail", "-bp"},
		{"sendmail", "-bs"},
		{"sendmail", "-v", "a@example.com"},
		{"sendmail", "-C", "x", "a@example.com"},
		{"sendmail", "-q"},
		{"mailq"},
		{"/usr/bin/newaliases"},
		{"sendmail", "-y", "a@example.com"},
		{"sendmail", "-f"},
	} {
		if rep := (sendmailtest.Call{Argv: argv, Input: "Subject: x\n\nx\n"}).Run(t, sock); rep.Answer != "HANDOVER" {
			t.Errorf("%q: %+v, want HANDOVER", argv, rep)
		}
	}
	if n := ir.count(t); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

// TestSendmailProtocolCutInput: a client gone before the end mark of its
// input stores nothing, the "." line of GO DOT included.
func TestSendmailProtocolCutInput(t *testing.T) {
	ir, sock := smSetup(t, "")
	msg := "Subject: cut\n\nline one\nline two\n.\n"
	for _, c := range []struct {
		argv []string
		cut  int
	}{
		{[]string{"sendmail", "-i", "a@example.com"}, 20},
		{[]string{"sendmail", "-i", "a@example.com"}, len(msg)},
		{[]string{"sendmail", "a@example.com", "b@example.com"}, len(msg) - 1},
	} {
		rep := sendmailtest.Call{Argv: c.argv, Input: msg, Cut: c.cut}.Run(t, sock)
		if !strings.HasPrefix(rep.Answer, "GO") {
			t.Fatalf("%q: %+v", c.argv, rep)
		}
		smIdle(t, ir)
		if n := ir.count(t); n != 0 {
			t.Fatalf("%q cut at %d: %d messages stored", c.argv, c.cut, n)
		}
	}
}

// TestSendmailProtocolRefused: a refused recipient gives 67 and a message
// over max_message_size 69, both before the daemon has read the whole
// input, and nothing is stored.
func TestSendmailProtocolRefused(t *testing.T) {
	ir, sock := smSetup(t, "limits {\n  max_message_size = \"64KiB\"\n}\n")
	big := "Subject: big\n\n" + strings.Repeat(strings.Repeat("x", 99)+"\n", 80<<10)
	rep := sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com", "nosuchname"}, Input: big}.Run(t, sock)
	if rep.Code != 67 || !strings.HasPrefix(rep.Text, "sendmail: RCPT <nosuchname@"+inHostname+"> refused by the daemon: 550 5.1.1 ") || rep.SentAll {
		t.Errorf("refused recipient: %+v, want 67 before the whole input", rep)
	}
	rep = sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com"}, Input: big}.Run(t, sock)
	if rep.Code != 69 || !strings.Contains(rep.Text, "message too big") || rep.SentAll {
		t.Errorf("too big: %+v, want 69 before the whole input", rep)
	}
	smIdle(t, ir)
	if n := ir.count(t); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

// TestSendmailProtocolNobody: the uid recorded is the one of the process
// at the other end of the socket, not the daemon's: a client run as nobody
// gets nobody's mail. The test binary runs itself as nobody for the call
// (TestSendmailProtocolHelper).
func TestSendmailProtocolNobody(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run the client as nobody")
		}
		t.Skip("needs root to run the client as nobody")
	}
	ir, sock := smSetup(t, "")
	// nobody must reach the socket and the test binary's copy.
	for d := ir.dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(ir.dir, "client.test")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestSendmailProtocolHelper$")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Env = []string{"OUTBOX_SENDMAIL_HELPER=" + sock, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "RESULT GO 0\n") {
		t.Fatalf("client as nobody: %v\n%s", err, out)
	}
	m, body := smOnly(t, ir)
	if m.UID != 65534 || !strings.HasPrefix(m.Submitter, "uid 65534") || m.From != userName(65534)+"@"+inHostname {
		t.Errorf("uid %d, submitter %q, sender %q; want nobody's", m.UID, m.Submitter, m.From)
	}
	if !strings.Contains(inHeader(body, "Received"), "userid 65534") {
		t.Errorf("Received: %q", inHeader(body, "Received"))
	}
}

// TestSendmailProtocolHelper is the client of TestSendmailProtocolNobody;
// it does nothing in an ordinary run.
func TestSendmailProtocolHelper(t *testing.T) {
	sock := os.Getenv("OUTBOX_SENDMAIL_HELPER")
	if sock == "" {
		t.Skip("the client of TestSendmailProtocolNobody")
	}
	rep := sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com"}, Input: "Subject: from nobody\n\nhi\n"}.Run(t, sock)
	fmt.Printf("RESULT %s %d\n%s", rep.Answer, rep.Code, rep.Text)
}

// TestSendmailProtocolShutdown: a call past GO finishes and is stored
// while the daemon stops; a connection that has not sent its request is
// closed without an answer, and the socket goes away.
func TestSendmailProtocolShutdown(t *testing.T) {
	dir := t.TempDir()
	src := `hostname = "relay.test"
listen { address = "unix:run/submit.sock" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "run/admin.sock" }
upstream "capture" {
  type = "maildir"
  path = "md"
}
`
	path := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d := dlvStartRelay(t, cfg, Options{Targets: map[string]upstream.Target{"capture": inHoldTarget{"capture"}}})
	sock := cfg.SendmailSocket()

	busy, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busy.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(busy, "OUTBOX-SENDMAIL 1\nA8:sendmail\nA2:-i\nA13:a@example.com\n.\n")
	br := bufio.NewReader(busy)
	if line, err := br.ReadString('\n'); line != "GO\n" {
		t.Fatalf("answer %q, %v", line, err)
	}
	io.WriteString(busy, "14\nSubject: half\n")

	idle, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idle.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(idle, "OUTBOX-SENDMAIL 1\n")
	s := d.r.sendmail
	dlvWait(t, "both connections", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 2
	})

	d.cancel()
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Errorf("the idle connection got %d bytes, want it closed", n)
	}
	dlvWait(t, "the socket to go", func() bool {
		_, err := os.Stat(sock)
		return os.IsNotExist(err)
	})
	io.WriteString(busy, "6\n\nhalf\n0\n")
	if answer, code, text, err := sendmailtest.ReadAnswer(br); answer != "EXIT" || code != 0 {
		t.Fatalf("after shutdown began: %q %d %q, %v", answer, code, text, err)
	}
	select {
	case err := <-d.done:
		d.done <- err // for the harness's cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("relay did not stop")
	}
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if n, err := sp.Count(); n != 1 || err != nil {
		t.Errorf("%d messages stored (%v), want the one in progress", n, err)
	}
}

// BenchmarkSendmailProtocol times one `sendmail -t -i` call of a 4 KiB
// message over the sendmail protocol, connect to EXIT, against a whole
// relay whose spool commits to disk.
func BenchmarkSendmailProtocol(b *testing.B) {
	ir := inStartRelay(b, inSetup{extra: inAliases})
	sock := filepath.Join(ir.dir, "sendmail.sock")
	msg := "To: a@example.com\nSubject: bench\n\n" + strings.Repeat(strings.Repeat("x", 63)+"\n", 64)
	call := sendmailtest.Call{Argv: []string{"sendmail", "-t", "-i"}, Input: msg}
	b.ResetTimer()
	for range b.N {
		if rep := call.Run(b, sock); rep.Code != 0 {
			b.Fatalf("%+v", rep)
		}
	}
}

// TestSendmailProtocolCap: the socket takes at most max_connections calls
// at once, as the unix listener does; one more is closed without an
// answer, which sends its client to outbox-sendmail.
func TestSendmailProtocolCap(t *testing.T) {
	ir, sock := smSetup(t, "limits {\n  max_connections = 1\n}\n")
	first, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, "OUTBOX-SENDMAIL 1\n")
	dlvWait(t, "the first call", func() bool {
		s := ir.r.sendmail
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	if rep := (sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com"}, Input: "x\n"}).Run(t, sock); rep.Answer != "" {
		t.Errorf("a call over the cap: %+v, want no answer", rep)
	}
	first.Close()
	smIdle(t, ir)
	if rep := (sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com"}, Input: "x\n"}).Run(t, sock); rep.Code != 0 {
		t.Errorf("a call within the cap: %+v", rep)
	}
}

// TestSendmailSocketOpen: the daemon makes the socket beside the first
// unix listener's, which systemd may have passed, with its socket_mode,
// removing a stale socket file but not one another process serves.
func TestSendmailSocketOpen(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "submit.sock")
	ul, err := net.Listen("unix", sub) // as systemd would have made it
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	lc := config.Listen{Address: "unix:" + sub, Network: "unix", Addr: sub, Loopback: true, SocketMode: 0o660}
	cfg := &config.Config{Listen: []config.Listen{lc}}
	r := &Relay{cfg: cfg, log: dlvLogger(t), listeners: []*listener{newListener(ul, lc, 7, "h")}}
	path := filepath.Join(dir, "sendmail.sock")

	// A socket file left by a daemon that died: nothing answers on it.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	s, err := r.openSendmail(sockets{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v, %v; want one with mode 0660", fi, err)
	}
	if s.max != 7 || s.unix != r.listeners[0] {
		t.Errorf("cap %d, listener %v; want the unix listener's", s.max, s.unix)
	}
	// Served by another: start-up stops.
	if _, err := r.openSendmail(sockets{}); err == nil {
		t.Error("a socket another process serves was taken over")
	}
	s.ln.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket still there after close: %v", err)
	}
}

// TestSendmailSocketInStatus: outbox status lists the sendmail socket with
// the listeners.
func TestSendmailSocketInStatus(t *testing.T) {
	ir, sock := smSetup(t, "")
	st, err := adminapi.NewClient(filepath.Join(ir.dir, "a.sock")).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(st.Listeners, "unix:"+sock) {
		t.Errorf("listeners %q lack unix:%s", st.Listeners, sock)
	}
}
