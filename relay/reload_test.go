package relay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// rlLog keeps what the relay logged, for tests that check a log line, and
// passes it on to the test log.
type rlLog struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *rlLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func (l *rlLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rlSettings are the parts of rlHCL a reload test changes.
type rlSettings struct {
	port         int
	hostname     string
	retryInitial string
	maxSize      string
	root         string // the alias of root
	upstreams    string // upstream blocks; "" is one upstream "a" (a fake target)
	extra        string // more top-level blocks
}

func rlHCL(s rlSettings) string {
	if s.hostname == "" {
		s.hostname = "relay.test"
	}
	if s.upstreams == "" {
		s.upstreams = "upstream \"a\" {\n  host = \"127.0.0.1\"\n  tls  = \"none\"\n}\n"
	}
	return fmt.Sprintf(`
hostname = %q
listen { address = "127.0.0.1:%d" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
queue {
  retry_initial = %q
  retry_max     = "1h"
}
limits { max_message_size = %q }
aliases { root = %q }
%s
%s`, s.hostname, s.port, s.retryInitial, s.maxSize, s.root, s.upstreams, s.extra)
}

// rlStart runs a Relay over the configuration in dir/relay.hcl until the
// test ends; its log is kept.
func rlStart(t *testing.T, dir string, s rlSettings, opts Options) (*dlvRelay, *rlLog) {
	t.Helper()
	cfg := dlvConfig(t, dir, rlHCL(s))
	lg := &rlLog{t: t}
	opts.Now = nil // the relay runs on the harness's clock
	d := dlvRunRelay(t, cfg, opts, slog.New(slog.NewTextHandler(lg, &slog.HandlerOptions{Level: slog.LevelDebug})))
	return d, lg
}

// rlRewrite replaces the configuration file in dir.
func rlRewrite(t *testing.T, dir, src string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "relay.hcl"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rlMessage returns a queued message, nil once it has left the queue.
func rlMessage(t *testing.T, d *dlvRelay, id string) *spool.Message {
	t.Helper()
	m, err := d.r.Spool().Get(id)
	if errors.Is(err, spool.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A reload puts new aliases, limits and queue timings in force for new
// sessions and deliveries, while a session caught inside DATA finishes
// under the configuration it started with.
func TestReloadNewSessionsUseNewConfig(t *testing.T) {
	dir := t.TempDir()
	set := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "4KiB", root: "old@example.com"}
	a := newDlvTarget("a")
	a.on("new@example.com", dlvDeferred451)
	d, lg := rlStart(t, dir, set, Options{Targets: map[string]upstream.Target{"a": a}})

	// 3 KiB: within the old max_message_size, beyond the new one.
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 62)+"\r\n", 48)
	half := len(big) / 2

	// Session A is inside DATA, half its body sent, when the reload comes.
	ca := inGreeted(t, "tcp", d.addr)
	ca.ok("EHLO a.test")
	ca.ok("MAIL FROM:<app@example.org>")
	ca.ok("RCPT TO:<root>")
	ca.want(ca.cmd("DATA"), 354, "")
	if _, err := io.WriteString(ca.conn, big[:half]); err != nil {
		t.Fatal(err)
	}

	set.retryInitial, set.maxSize, set.root = "10m", "2KiB", "new@example.com"
	rlRewrite(t, dir, rlHCL(set))
	if err := d.r.ReloadFile(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	for _, want := range []string{"configuration reloaded", "aliases: 0 added, 0 removed, 1 changed", "max_message_size 2048", "retry_initial 10m0s"} {
		if !strings.Contains(lg.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}

	// A new session: the new alias and the new size limit.
	cb := inGreeted(t, "tcp", d.addr)
	cb.ok("EHLO b.test")
	cb.ok("MAIL FROM:<app@example.org>")
	cb.ok("RCPT TO:<root>")
	cb.want(cb.data(big), 552, "5.3.4")
	cb.want(cb.cmd("MAIL FROM:<app@example.org> SIZE=3000"), 552, "5.3.4")
	idB := inSend(t, cb, "app@example.org", []string{"root"}, "Subject: small\r\n\r\nhi\r\n")

	// Session A ends its DATA: stored under the old limit, to the old alias.
	if _, err := io.WriteString(ca.conn, big[half:]+".\r\n"); err != nil {
		t.Fatal(err)
	}
	idA := inQueuedID(t, ca.read())

	dlvWait(t, "delivery of A to the old alias", func() bool {
		return len(a.callsTo("old@example.com")) == 1 && rlMessage(t, d, idA) == nil
	})
	if n := len(a.callsTo("new@example.com")); n > 1 {
		t.Fatalf("%d calls to new@example.com, want 1", n)
	}
	// B went to the new alias, was deferred, and waits the new
	// retry_initial (10m ±10%), not the old one (1m).
	var mb *spool.Message
	dlvWait(t, "B deferred", func() bool {
		mb = rlMessage(t, d, idB)
		return mb != nil && mb.Attempts == 1
	})
	if got := mb.Recipients[0].Address; got != "new@example.com" {
		t.Errorf("B's recipient %q, want new@example.com", got)
	}
	if wait := mb.NextAttempt.Sub(d.clock.Now()); wait < 9*time.Minute || wait > 11*time.Minute {
		t.Errorf("B's next attempt in %s, want 10m ±10%% (the reloaded retry_initial)", wait)
	}
}

// An invalid file is reported with its file:line:col and changes nothing.
func TestReloadInvalidFileKeepsRunningConfig(t *testing.T) {
	dir := t.TempDir()
	set := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "4KiB", root: "old@example.com"}
	a := newDlvTarget("a")
	d, lg := rlStart(t, dir, set, Options{Targets: map[string]upstream.Target{"a": a}})
	before := d.r.current()

	set.root = "new@example.com"
	rlRewrite(t, dir, rlHCL(set)+"\nlimits { max_recipients = \"many\" }\n")
	err := d.r.ReloadFile()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("reload of an invalid file: %v, want a *config.Error", err)
	}
	if d.r.current() != before {
		t.Error("an invalid file replaced the configuration in force")
	}
	logged := lg.String()
	if !regexp.MustCompile(`level=ERROR msg="configuration not reloaded[^\n]*relay\.hcl:\d+:\d+: `).MatchString(logged) {
		t.Errorf("no ERROR line with file:line:col diagnostics in the log:\n%s", logged)
	}

	// Still running, still with the old alias.
	c := inGreeted(t, "tcp", d.addr)
	c.ok("EHLO c.test")
	inSend(t, c, "app@example.org", []string{"root"}, "Subject: hi\r\n\r\nhi\r\n")
	dlvWait(t, "delivery to the old alias", func() bool { return len(a.callsTo("old@example.com")) == 1 })
}

// Settings only a restart can change are reported at WARN and kept; the
// rest of the file still applies.
func TestReloadRestartOnlySettings(t *testing.T) {
	dir := t.TempDir()
	set := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "4KiB", root: "old@example.com"}
	d, lg := rlStart(t, dir, set, Options{Targets: map[string]upstream.Target{"a": newDlvTarget("a")}})

	next := set
	next.port, next.hostname, next.root = dlvFreePort(t), "other.test", "new@example.com"
	rlRewrite(t, dir, rlHCL(next))
	if err := d.r.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`level=WARN msg="listen: changed; restart needed (systemctl restart outbox)"`,
		`level=WARN msg="hostname: changed; restart needed (systemctl restart outbox)"`,
	} {
		if !strings.Contains(lg.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	cur := d.r.current().cfg
	if cur.Listen[0].Addr != d.addr || cur.Hostname != "relay.test" {
		t.Errorf("in force: listen %s, hostname %s; want the ones the daemon runs with", cur.Listen[0].Addr, cur.Hostname)
	}
	if got := cur.Aliases["root"]; len(got) != 1 || got[0] != "new@example.com" {
		t.Errorf("aliases in force %v, want the reloaded ones", got)
	}
	// The old listener still serves.
	c := inGreeted(t, "tcp", d.addr)
	c.ok("EHLO c.test")
}

// Upstreams are rebuilt from the file: an unchanged one keeps its target
// (pool and rate state), a changed one gets a new target that keeps the
// rate-limit history, and the old target is closed once idle.
func TestReloadUpstreams(t *testing.T) {
	dir := t.TempDir()
	// Sends the rate limit of "up" remembers from before the start.
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o750); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "var", "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sent := []time.Time{time.Now().Add(-10 * time.Minute).UTC().Round(time.Second), time.Now().Add(-5 * time.Minute).UTC().Round(time.Second)}
	b, _ := json.Marshal(sent)
	if err := sp.SetState(rateKey("up"), b); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	ups := func(port int, envelopeFrom string) string {
		return fmt.Sprintf(`
upstream "keep" {
  type = "maildir"
  path = "md"
}
upstream "up" {
  host = "127.0.0.1"
  port = %d
  tls  = "none"
  rate = "100/hour"
}
upstream "sender" {
  host          = "127.0.0.1"
  port          = 2602
  tls           = "none"
  envelope_from = %q
}
`, port, envelopeFrom)
	}
	set := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "4KiB", root: "old@example.com", upstreams: ups(2600, "old@example.com")}
	d, lg := rlStart(t, dir, set, Options{})
	before := d.r.current().router.targets
	set.upstreams = ups(2601, "new@example.com") + "upstream \"added\" {\n  host = \"127.0.0.1\"\n  tls = \"none\"\n}\n"
	rlRewrite(t, dir, rlHCL(set))
	if err := d.r.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	after := d.r.current().router.targets
	if after["keep"] != before["keep"] {
		t.Error("the unchanged upstream got a new target")
	}
	// Sender rewriting goes around the target: changing it keeps the
	// target, and deliveries use the new address.
	if after["sender"] != before["sender"] {
		t.Error("changing envelope_from alone gave the upstream a new target")
	}
	if st, ok := d.r.current().router.Target("sender").(*senderTarget); !ok || st.envelopeFrom != "new@example.com" {
		t.Errorf("deliveries through %#v, want the new envelope_from", d.r.current().router.Target("sender"))
	}
	if after["up"] == before["up"] {
		t.Fatal("the changed upstream kept its old target")
	}
	got := after["up"].(rateHistorian).RateHistory()
	if len(got) != len(sent) || !got[0].Equal(sent[0]) || !got[1].Equal(sent[1]) {
		t.Errorf("rate history after reload %v, want %v", got, sent)
	}
	if !strings.Contains(lg.String(), "upstreams changed: up") {
		t.Error("the reload log line does not name the changed upstream")
	}
	if addr := after["up"].(*upstream.SMTP).Addr(); addr != "127.0.0.1:2601" {
		t.Errorf("new target for %s, want 127.0.0.1:2601", addr)
	}
	// The paused gauge follows the upstreams in force.
	families, err := d.r.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var paused []string
	for _, f := range families {
		if f.GetName() == "outbox_upstream_paused" {
			for _, m := range f.GetMetric() {
				paused = append(paused, m.GetLabel()[0].GetValue())
			}
		}
	}
	sort.Strings(paused)
	if strings.Join(paused, ",") != "added,sender,up" {
		t.Errorf("outbox_upstream_paused for %v, want added, sender and up", paused)
	}
}

// closeCounter is a target that counts Close calls.
type closeCounter struct {
	*dlvTarget
	mu     sync.Mutex
	closed int
}

func (c *closeCounter) Close() error {
	c.mu.Lock()
	c.closed++
	c.mu.Unlock()
	return nil
}

func (c *closeCounter) closes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// A retired snapshot's targets are closed only when the last delivery
// that uses them ends.
func TestLiveClosesRetiredTargetsWhenIdle(t *testing.T) {
	old := &closeCounter{dlvTarget: newDlvTarget("a")}
	l := newLive(&snapshot{router: &Router{targets: map[string]upstream.Target{"a": old}}})
	inflight := l.acquire()
	next := &snapshot{router: &Router{}}
	l.publish(next, func() { old.Close() })
	if old.closes() != 0 {
		t.Fatal("old target closed while a delivery uses it")
	}
	if got := l.acquire(); got != next {
		t.Fatal("acquire after publish returned the retired snapshot")
	} else {
		got.release()
	}
	inflight.release()
	if old.closes() != 1 {
		t.Fatalf("old target closed %d times after the last delivery ended, want 1", old.closes())
	}

	// Nothing in flight: the retired targets close at once.
	l.publish(&snapshot{router: &Router{}}, func() { old.Close() })
	if old.closes() != 2 {
		t.Fatalf("idle retired snapshot: closed %d times, want 2", old.closes())
	}
}

// Routes and the log level follow the file too.
func TestReloadRoutesAndLogLevel(t *testing.T) {
	dir := t.TempDir()
	ab := "upstream \"a\" {\n  host = \"127.0.0.1\"\n  tls = \"none\"\n}\nupstream \"b\" {\n  host = \"127.0.0.1\"\n  tls = \"none\"\n}\n"
	set := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "4KiB", root: "old@example.com", upstreams: ab}
	a, b := newDlvTarget("a"), newDlvTarget("b")
	level := new(slog.LevelVar)
	d, _ := rlStart(t, dir, set, Options{Targets: map[string]upstream.Target{"a": a, "b": b}, Level: level})

	set.extra = "route {\n  recipient_domain = [\"example.net\"]\n  upstreams = [\"b\"]\n}\nlog { level = \"warn\" }\n"
	rlRewrite(t, dir, rlHCL(set))
	if err := d.r.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelWarn {
		t.Errorf("log level %v after reload, want WARN", level.Level())
	}
	dlvSend(t, d.addr, "app@example.org", []string{"x@example.net", "y@example.com"}, "Subject: hi\r\n\r\nhi\r\n")
	dlvWait(t, "both deliveries", func() bool {
		return len(b.callsTo("x@example.net")) == 1 && len(a.callsTo("y@example.com")) == 1
	})
	if len(a.callsTo("x@example.net")) != 0 {
		t.Error("x@example.net went to the default upstream, not by the reloaded route")
	}
}

// A delivery under way when a reload replaces its upstream's target
// finishes on the old target, which is closed only then; new deliveries
// use the new target at once, and the new queue timings.
func TestReloadInFlightDeliveryKeepsOldTarget(t *testing.T) {
	h := schedStart(t, "", "")
	old := &closeCounter{dlvTarget: newDlvTarget("a")}
	old.block = make(chan struct{})
	old.started = make(chan struct{}, 4)
	h.s.live = newLive(&snapshot{cfg: h.cfg, router: NewRouter(h.cfg, map[string]upstream.Target{"a": old, "b": h.targets["b"]})})
	h.run()
	id1 := h.enqueue("app@example.org", dlvRcpt("x@example.com"))
	select {
	case <-old.started:
	case <-time.After(15 * time.Second):
		t.Fatal("the first delivery did not start")
	}

	next := *h.cfg
	next.Queue.RetryInitial, next.Queue.RetryMax = 30*time.Minute, time.Hour
	fresh := newDlvTarget("a")
	fresh.on("y@example.com", dlvDeferred451)
	h.s.live.publish(&snapshot{cfg: &next, router: NewRouter(&next, map[string]upstream.Target{"a": fresh, "b": h.targets["b"]})},
		func() { old.Close() })

	id2 := h.enqueue("app@example.org", dlvRcpt("y@example.com"))
	dlvWait(t, "the second message tried on the new target", func() bool { return h.attempts(id2) == 1 })
	if m := h.get(id2); m.NextAttempt.Sub(h.clock.Now()) < 27*time.Minute {
		t.Errorf("next attempt in %s, want the reloaded retry_initial (30m ±10%%)", m.NextAttempt.Sub(h.clock.Now()))
	}
	if old.closes() != 0 {
		t.Fatal("the old target was closed with a delivery still on it")
	}
	close(old.block)
	dlvWait(t, "the first delivery finished on the old target", func() bool { return h.get(id1) == nil })
	if len(old.callsTo("x@example.com")) != 1 || len(fresh.callsTo("x@example.com")) != 0 {
		t.Error("the in-flight delivery did not finish on the old target")
	}
	dlvWait(t, "the old target closed once idle", func() bool { return old.closes() == 1 })
}
