package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/spool"
)

// outboxBin is the daemon binary built once for all tests.
var outboxBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "outbox-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	outboxBin = filepath.Join(dir, "outbox")
	build := exec.Command("go", "build", "-o", outboxBin, "github.com/outbox-mta/outbox/cmd/outbox")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building outbox:", err)
		return 1
	}
	return m.Run()
}

// freePort returns a loopback TCP port that was free a moment ago. With
// the listener closed again it is also a port where nothing answers.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// env is one daemon's folder, configuration and listen address.
type env struct {
	t    *testing.T
	dir  string
	conf string
	addr string // SMTP listener, host:port
	// sockets, when set, are passed to the daemon as systemd's socket
	// activation does (fds 3…, LISTEN_FDS, LISTEN_PID).
	sockets []*os.File
}

// newEnv writes a configuration in a fresh temp folder. upstream is the
// text of the upstream block(s); extra goes at the top level.
func newEnv(t *testing.T, upstream, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir, addr: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	conf := fmt.Sprintf(`hostname = "relay.test"

listen {
  address = %q
}

spool {
  path     = "spool.db"
  maildrop = "maildrop"
}

admin {
  socket = "admin.sock"
}

%s

%s
`, e.addr, extra, upstream)
	e.conf = filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(e.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) spoolPath() string { return filepath.Join(e.dir, "spool.db") }

// daemon is one running `outbox serve`.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *logBuf
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// logBuf keeps the daemon's stderr for waiting on log lines and for the
// failure report.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Count(l.buf.Bytes(), []byte(s))
}

// start runs the daemon and waits until it has logged that it started.
func (e *env) start() *daemon {
	e.t.Helper()
	return e.startAs(nil)
}

// startAs is start with the daemon running under cred (nil: as we are),
// with extra environment variables.
func (e *env) startAs(cred *syscall.Credential, environ ...string) *daemon {
	e.t.Helper()
	d := &daemon{t: e.t, log: &logBuf{}, done: make(chan struct{})}
	d.cmd = exec.Command(outboxBin, "serve", "--config", e.conf)
	if len(e.sockets) > 0 {
		// LISTEN_PID must be the daemon's own pid: let the shell that
		// becomes the daemon (exec keeps the pid) set it.
		d.cmd = exec.Command("/bin/sh", "-c", fmt.Sprintf(`LISTEN_PID=$$ LISTEN_FDS=%d exec "$0" serve --config "$1"`, len(e.sockets)), outboxBin, e.conf)
		d.cmd.ExtraFiles = e.sockets
	}
	d.cmd.Env = append(os.Environ(), environ...)
	if cred != nil {
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	d.cmd.Dir = e.dir
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	e.t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		if e.t.Failed() {
			e.t.Logf("daemon log (pid %d):\n%s", d.cmd.Process.Pid, tail(d.log.String(), 60))
		}
	})
	d.waitLog("outbox started", 1, 20*time.Second)
	return d
}

// waitLog waits until the daemon has logged s at least n times.
func (d *daemon) waitLog(s string, n int, timeout time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for d.log.count(s) < n {
		select {
		case <-d.done:
			d.t.Fatalf("daemon exited (%v) before logging %q", d.err, s)
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon did not log %q within %v", s, timeout)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (d *daemon) kill() {
	d.t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		d.t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Fatal("daemon survived SIGKILL for 10s")
	}
}

// signal sends sig without waiting.
func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.t.Fatalf("daemon did not exit within %v", timeout)
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		d.t.Fatalf("waiting for the daemon: %v", d.err)
	}
	return 0
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// message is one test message as sent.
type message struct {
	id   string // the Message-ID, unique per message
	from string
	to   string
	data []byte // the whole message as sent, CRLF line ends
}

// newMessage builds a message with a random body of about size bytes. Its
// header has full addresses, a Date and a Message-ID, so the daemon leaves
// it unchanged apart from its Received: header.
func newMessage(tag string, n, size int) *message {
	var rnd [9]byte
	rand.Read(rnd[:])
	id := fmt.Sprintf("%s.%d.%s@e2e.example.com", tag, n, base64.RawURLEncoding.EncodeToString(rnd[:]))
	m := &message{id: id, from: "sender@example.com", to: "rcpt@example.net"}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender <%s>\r\n", m.from)
	fmt.Fprintf(&b, "To: <%s>\r\n", m.to)
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s>\r\n", id)
	fmt.Fprintf(&b, "Subject: e2e %s %d\r\n", tag, n)
	if n%2 == 0 {
		fmt.Fprintf(&b, "X-Test-ID: %s-%d\r\n", tag, n)
	}
	b.WriteString("\r\n")
	raw := make([]byte, size*3/4)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 0 {
		k := min(76, len(enc))
		line := enc[:k]
		enc = enc[k:]
		if line[0] == '+' {
			// A line of dots checks dot-stuffing on the way through.
			b.WriteString("..\r\n.\r\n")
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	m.data = b.Bytes()
	return m
}

// dialSMTP connects and says EHLO, within timeout.
func dialSMTP(addr string, timeout time.Duration) (*smtp.Client, error) {
	network := "tcp"
	if strings.HasPrefix(addr, "unix:") {
		network, addr = "unix", strings.TrimPrefix(addr, "unix:")
	}
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	c := smtp.NewClient(conn)
	if err := c.Hello("client.e2e.example.com"); err != nil {
		c.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// send sends one message on c and reports whether it got a 250 to DATA.
func send(c *smtp.Client, m *message) error {
	if err := c.Mail(m.from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(m.to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(m.data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// stripReceived removes the first header field, which must be our
// Received: header, and returns the rest.
func stripReceived(stored []byte) ([]byte, error) {
	if !bytes.HasPrefix(stored, []byte("Received:")) {
		return nil, errors.New("does not start with a Received: header")
	}
	i := 0
	for {
		j := bytes.Index(stored[i:], []byte("\r\n"))
		if j < 0 {
			return nil, errors.New("Received: header not terminated")
		}
		i += j + 2
		if i >= len(stored) || (stored[i] != ' ' && stored[i] != '\t') {
			return stored[i:], nil
		}
	}
}

// messageID returns the Message-ID of a stored message (without <>).
func messageID(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(line, "Message-ID: <"); ok {
			return strings.TrimSuffix(v, ">")
		}
	}
	return ""
}

// storedMessage is one message as read back from the spool.
type storedMessage struct {
	env  *spool.Message
	body []byte // after our Received: header
}

// readSpool opens the spool read-only (the daemon must be stopped) and
// checks that every message in it is whole: a complete envelope, a body of
// exactly Size bytes that starts with our Received: header.
func readSpool(t *testing.T, path string) map[string]storedMessage {
	t.Helper()
	sp, err := spool.Open(path, spool.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("opening the spool after the run: %v", err)
	}
	defer sp.Close()
	list, err := sp.List()
	if err != nil {
		t.Fatalf("listing the spool: %v", err)
	}
	out := map[string]storedMessage{}
	for _, m := range list {
		if m.ID == "" || m.From == "" || m.Arrived.IsZero() || m.NextAttempt.IsZero() || m.Submitter == "" || len(m.Recipients) == 0 {
			t.Errorf("incomplete envelope in the spool: %+v", m)
			continue
		}
		for _, r := range m.Recipients {
			if r.Address == "" || (r.Status != spool.Pending && r.Status != spool.Sent && r.Status != spool.Failed) {
				t.Errorf("message %s: incomplete recipient %+v", m.ID, r)
			}
		}
		rc, err := sp.Body(m.ID)
		if err != nil {
			t.Errorf("message %s: body: %v", m.ID, err)
			continue
		}
		body, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Errorf("message %s: reading body: %v", m.ID, err)
			continue
		}
		if int64(len(body)) != m.Size {
			t.Errorf("message %s: body is %d bytes, envelope says %d", m.ID, len(body), m.Size)
			continue
		}
		rest, err := stripReceived(body)
		if err != nil {
			t.Errorf("message %s: %v", m.ID, err)
			continue
		}
		mid := messageID(rest)
		if mid == "" {
			t.Errorf("message %s: no Message-ID in the stored header", m.ID)
			continue
		}
		if _, dup := out[mid]; dup {
			t.Errorf("message %s: Message-ID %s stored twice", m.ID, mid)
		}
		out[mid] = storedMessage{env: m, body: rest}
	}
	return out
}

// ledger records what the clients sent and which messages got their 250.
type ledger struct {
	mu       sync.Mutex
	sent     map[string]*message // every message whose DATA was started
	accepted map[string]bool     // Message-IDs that got 250
	n        int                 // count of 250s
}

func newLedger() *ledger {
	return &ledger{sent: map[string]*message{}, accepted: map[string]bool{}}
}

func (l *ledger) attempt(m *message) {
	l.mu.Lock()
	l.sent[m.id] = m
	l.mu.Unlock()
}

func (l *ledger) accept(m *message) {
	l.mu.Lock()
	l.accepted[m.id] = true
	l.n++
	l.mu.Unlock()
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// check compares the spool with the ledger: every accepted message is
// stored byte for byte, and anything else stored is one of the messages
// sent, also byte for byte.
func (l *ledger) check(t *testing.T, stored map[string]storedMessage) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range l.accepted {
		s, ok := stored[id]
		if !ok {
			t.Errorf("message %s got 250 but is not in the spool", id)
			continue
		}
		if !bytes.Equal(s.body, l.sent[id].data) {
			t.Errorf("message %s (queue id %s): stored body differs from what was sent (%d vs %d bytes)", id, s.env.ID, len(s.body), len(l.sent[id].data))
		}
	}
	extra := 0
	for id, s := range stored {
		if l.accepted[id] {
			continue
		}
		m, ok := l.sent[id]
		if !ok {
			t.Errorf("spool holds message %s that no client sent", id)
			continue
		}
		extra++
		if !bytes.Equal(s.body, m.data) {
			t.Errorf("message %s (no 250, but stored as %s): stored body differs from what was sent", id, s.env.ID)
		}
	}
	t.Logf("%d messages started, %d got 250, %d stored in all (%d stored without a 250)", len(l.sent), len(l.accepted), len(stored), extra)
}

// senders runs n SMTP clients that send distinct messages in a loop until
// ctx ends, reconnecting (with a short poll) while the daemon is down. Each
// client sends at most max messages.
func senders(ctx context.Context, wg *sync.WaitGroup, addr string, n, max, size int, l *ledger) {
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for i := 0; i < max && ctx.Err() == nil; {
				if c == nil {
					var err error
					if c, err = dialSMTP(addr, 5*time.Second); err != nil {
						c = nil
						select {
						case <-ctx.Done():
						case <-time.After(10 * time.Millisecond): // the daemon is restarting
						}
						continue
					}
				}
				sz := size
				if sz == 0 {
					sz = 2048 + mrand.IntN(6144)
				}
				m := newMessage(fmt.Sprintf("c%d", k), i, sz)
				i++
				l.attempt(m)
				if err := send(c, m); err != nil {
					c.Close()
					c = nil
					continue
				}
				l.accept(m)
			}
		}()
	}
}

// waitFor polls cond until it is true or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// needRoot skips t when not run as root, which it needs for why; under CI,
// which runs as root, it fails instead: a skip there would hide the test.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root " + why)
		}
		t.Skip("needs root " + why)
	}
}
