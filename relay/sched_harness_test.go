package relay

// The scheduler harness: a Scheduler over a real spool with recording
// targets and an injected clock.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// schedHCL is a configuration for scheduler tests: spool in dir, upstreams
// a and b (replaced by fake targets), extra queue settings and extra blocks.
func schedHCL(queue, extra string) string {
	return fmt.Sprintf(`
hostname = "relay.test"
listen { address = "127.0.0.1:2525" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
queue {
  retry_initial = "1m"
  retry_max     = "8m"
  lifetime      = "2h"
  %s
}
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
upstream "b" {
  host = "127.0.0.1"
  tls  = "none"
}
%s
`, queue, extra)
}

// testLive is a configuration in force for a test: cfg with its policy,
// and router (nil: one without targets).
func testLive(cfg *config.Config, router *Router) *live {
	if router == nil {
		router = NewRouter(cfg, nil)
	}
	return newLive(&snapshot{cfg: cfg, policy: NewPolicy(cfg), router: router})
}

// schedHarness runs a Scheduler over a real spool with fake targets.
type schedHarness struct {
	t       testing.TB
	cfg     *config.Config
	sp      *spool.Spool
	s       *Scheduler
	clock   *dlvClock
	targets map[string]*dlvTarget
	cancel  context.CancelFunc
	done    chan struct{}
}

// schedStart opens a spool and starts a scheduler with fake targets "a"
// and "b". It stops them when the test ends.
func schedStart(t testing.TB, queue, extra string) *schedHarness {
	t.Helper()
	dir := t.TempDir()
	cfg := dlvConfig(t, dir, schedHCL(queue, extra))
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o750); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := &schedHarness{t: t, cfg: cfg, sp: sp, clock: newDlvClock(),
		targets: map[string]*dlvTarget{"a": newDlvTarget("a"), "b": newDlvTarget("b")}}
	h.s = NewScheduler(sp, testLive(cfg, h.router()), dlvLogger(t), h.clock.Now)
	t.Cleanup(func() {
		h.stop()
		sp.Close()
	})
	return h
}

// router builds a router over the fake targets from h.cfg as it is now.
func (h *schedHarness) router() *Router {
	targets := map[string]upstream.Target{}
	for n, d := range h.targets {
		targets[n] = d
	}
	return NewRouter(h.cfg, targets)
}

// reroute gives the scheduler a router built from h.cfg as a test has
// changed it, the way a reload publishes one (safe while it runs).
func (h *schedHarness) reroute() {
	h.s.live.publish(&snapshot{cfg: h.cfg, policy: NewPolicy(h.cfg), router: h.router()}, nil)
}

// run starts the scheduler loop.
func (h *schedHarness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() { h.s.Run(ctx); close(h.done) }()
}

// stop ends the scheduler loop and waits for it.
func (h *schedHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.t.Errorf("scheduler did not stop")
	}
	h.cancel = nil
}

// advance moves the clock and wakes the scheduler.
func (h *schedHarness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.s.Kick()
}

// enqueue spools a message from from to rcpts, arrived now by the clock.
func (h *schedHarness) enqueue(from string, rcpts ...spool.Recipient) string {
	h.t.Helper()
	return h.enqueueBody(from, dlvBody, rcpts...)
}

func (h *schedHarness) enqueueBody(from, body string, rcpts ...spool.Recipient) string {
	h.t.Helper()
	m := &spool.Message{From: from, Recipients: rcpts, Submitter: "test", Arrived: h.clock.Now()}
	if err := h.sp.Enqueue(context.Background(), m, strings.NewReader(body)); err != nil {
		h.t.Fatal(err)
	}
	h.s.Kick()
	return m.ID
}

// get returns a queued message, or nil when it has left the queue.
func (h *schedHarness) get(id string) *spool.Message {
	h.t.Helper()
	m, err := h.sp.Get(id)
	if err == spool.ErrNotFound {
		return nil
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// queued returns the number of messages in the spool.
func (h *schedHarness) queued() int {
	h.t.Helper()
	n, err := h.sp.Count()
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// attempts returns the attempt count of a queued message, -1 once it left.
func (h *schedHarness) attempts(id string) int {
	if m := h.get(id); m != nil {
		return m.Attempts
	}
	return -1
}
