package relay

// The inbound harness: a Relay whose listeners run in-process, a raw SMTP
// client that reads reply codes, and readers of what was spooled.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// inHostname is the hostname of every test relay here.
const inHostname = "relay.test"

// inHoldTarget defers every recipient, so accepted mail stays in the spool
// for the test to inspect.
type inHoldTarget struct{ name string }

func (h inHoldTarget) Name() string { return h.name }
func (h inHoldTarget) Close() error { return nil }
func (h inHoldTarget) Deliver(ctx context.Context, env *upstream.Envelope) upstream.Outcome {
	res := make([]upstream.Result, len(env.Recipients))
	for i := range res {
		res[i] = upstream.Result{Class: upstream.Deferred, Message: "held by the test"}
	}
	return upstream.Outcome{Remote: "test", Results: res}
}

// inFailStore is a spool that cannot write.
type inFailStore struct{}

func (inFailStore) Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error {
	io.Copy(io.Discard, body)
	return errors.New("disk on fire")
}

// inRelay is a running relay with one TCP listener and one unix socket.
type inRelay struct {
	r    *Relay
	dir  string
	tcp  string // host:port
	sock string // unix socket path
}

// inSetup says how to build a test relay.
type inSetup struct {
	listen string       // extra HCL for the TCP listen block
	extra  string       // more top-level HCL (limits, aliases…)
	mod    func(*Relay) // called between New and Run
	// metrics is admin.metrics_address, "" for none.
	metrics string
}

func inStartRelay(t testing.TB, s inSetup) *inRelay {
	t.Helper()
	dir := t.TempDir()
	tcp := net.JoinHostPort("127.0.0.1", strconv.Itoa(dlvFreePort(t)))
	src := fmt.Sprintf(`
hostname = %q
listen {
  address = %q
  %s
}
listen { address = "unix:s.sock" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin {
  socket = "a.sock"
  %s
}
%s
upstream "capture" {
  type = "maildir"
  path = "md"
}
`, inHostname, tcp, s.listen, inMetricsLine(s.metrics), s.extra)
	path := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, src)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ready := make(chan struct{})
	r, err := New(cfg, log, Options{
		Targets: map[string]upstream.Target{"capture": inHoldTarget{"capture"}},
		Ready:   func() { close(ready) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.mod != nil {
		s.mod(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return &inRelay{r: r, dir: dir, tcp: tcp, sock: filepath.Join(dir, "s.sock")}
}

// inReply is one SMTP reply.
type inReply struct {
	code  int
	enh   string // enhanced status code of the first line, "" if none
	lines []string
}

func (r inReply) String() string {
	return fmt.Sprintf("%d %s", r.code, strings.Join(r.lines, " | "))
}

var inEnhRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// inClient is a raw SMTP client: it shows exact reply codes, and lets a
// test send what go-smtp's client would refuse to.
type inClient struct {
	t    testing.TB
	conn net.Conn
	tp   *textproto.Conn
}

func inDial(t testing.TB, network, addr string) *inClient {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &inClient{t: t, conn: c, tp: textproto.NewConn(c)}
}

// inGreeted dials and checks the 220 greeting.
func inGreeted(t testing.TB, network, addr string) *inClient {
	t.Helper()
	c := inDial(t, network, addr)
	c.want(c.read(), 220, "")
	return c
}

func (c *inClient) read() inReply {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("reading reply: %v", err)
	}
	r := inReply{code: code, lines: strings.Split(msg, "\n")}
	if f := strings.Fields(r.lines[0]); len(f) > 0 && inEnhRE.MatchString(f[0]) {
		r.enh = f[0]
	}
	return r
}

func (c *inClient) cmd(format string, args ...any) inReply {
	c.t.Helper()
	if err := c.tp.PrintfLine(format, args...); err != nil {
		c.t.Fatalf("sending %q: %v", fmt.Sprintf(format, args...), err)
	}
	return c.read()
}

// want checks a reply's code and, when enh is not "", its enhanced code.
func (c *inClient) want(r inReply, code int, enh string) {
	c.t.Helper()
	if r.code != code || (enh != "" && r.enh != enh) {
		c.t.Fatalf("reply %v, want %d %s", r, code, enh)
	}
}

func (c *inClient) ok(format string, args ...any) inReply {
	c.t.Helper()
	r := c.cmd(format, args...)
	if r.code/100 != 2 {
		c.t.Fatalf("%s: reply %v", fmt.Sprintf(format, args...), r)
	}
	return r
}

// data sends DATA and the message, and returns the final reply.
func (c *inClient) data(body string) inReply {
	c.t.Helper()
	c.want(c.cmd("DATA"), 354, "")
	w := c.tp.DotWriter()
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

var inQueuedRE = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// queuedID takes the queue ID from a 250 reply to DATA.
func inQueuedID(t testing.TB, r inReply) string {
	t.Helper()
	if r.code != 250 {
		t.Fatalf("end of DATA: reply %v, want 250", r)
	}
	m := inQueuedRE.FindStringSubmatch(strings.Join(r.lines, " "))
	if m == nil {
		t.Fatalf("no queue ID in %v", r)
	}
	return m[1]
}

// inSend runs one whole transaction and returns the queue ID.
func inSend(t testing.TB, c *inClient, from string, to []string, body string) string {
	t.Helper()
	c.ok("MAIL FROM:<%s>", from)
	for _, r := range to {
		c.ok("RCPT TO:<%s>", r)
	}
	return inQueuedID(t, c.data(body))
}

// stored returns a message's envelope and body; the message must be in the
// spool already.
func (ir *inRelay) stored(t testing.TB, id string) (*spool.Message, string) {
	t.Helper()
	m, err := ir.r.Spool().Get(id)
	if err != nil {
		t.Fatalf("spool.Get(%s) right after the 250: %v", id, err)
	}
	rc, err := ir.r.Spool().Body(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return m, string(b)
}

func (ir *inRelay) count(t testing.TB) int {
	t.Helper()
	n, err := ir.r.Spool().Count()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// header returns the (unfolded) value of the first header field name.
func inHeader(body, name string) string {
	hdr, _, _ := strings.Cut(body, "\r\n\r\n")
	var out []string
	in := false
	for _, line := range strings.Split(hdr, "\r\n") {
		if in && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")) {
			out = append(out, strings.TrimSpace(line))
			continue
		}
		if in {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			in = true
			out = append(out, strings.TrimSpace(v))
		}
	}
	return strings.Join(out, " ")
}

const inAliases = `
aliases {
  root       = ["alice@example.com", "bob@example.com"]
  postmaster = "root"
}
`

// testInbound is an Inbound with cfg in force, for tests that drive its
// sessions without a running relay.
func testInbound(cfg *config.Config, store Store, log *slog.Logger, now func() time.Time) *Inbound {
	return &Inbound{store: store, log: log, now: now, live: testLive(cfg, nil)}
}
