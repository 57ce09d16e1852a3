package relay

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/upstream"
)

// hookReceiver is a local webhook that records the events posted to it
// and answers with status (200 unless set).
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []Event
	tries  int
	status int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{status: 200}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.tries++
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("webhook got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			t.Errorf("webhook body is not an event: %q", b)
		}
		if h.status == 200 {
			h.events = append(h.events, e)
		}
		w.WriteHeader(h.status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) got() ([]Event, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Event(nil), h.events...), h.tries
}

// hookCommand writes a script that appends each event it reads on stdin,
// one per line, to a file.
func hookCommand(t *testing.T) (cmd, out string) {
	dir := t.TempDir()
	out = filepath.Join(dir, "events")
	cmd = filepath.Join(dir, "page-me")
	script := "#!/bin/sh\ncat >> '" + out + "'\necho >> '" + out + "'\n"
	if err := os.WriteFile(cmd, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

func commandEvents(t *testing.T, out string) []Event {
	b, _ := os.ReadFile(out)
	var evs []Event
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("command got no event: %q", l)
		}
		evs = append(evs, e)
	}
	return evs
}

func fastNotify(t *testing.T) {
	every, backoff := notifyEvery, notifyBackoff
	notifyBackoff = 10 * time.Millisecond
	t.Cleanup(func() { notifyEvery, notifyBackoff = every, backoff })
}

func startNotifier(t *testing.T, c config.Notify, now func() time.Time) (*notifier, *syncBuffer) {
	var logs syncBuffer
	n := newNotifier(func() config.Notify { return c }, func() string { return "relay.test" }, slog.New(slog.NewTextHandler(&logs, nil)), now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n, &logs
}

// TestNotifyBounce checks that a bounce reaches the webhook and the
// command as JSON with the contract's fields, from a real delivery round.
func TestNotifyBounce(t *testing.T) {
	fastNotify(t)
	hook := newHookReceiver(t)
	cmd, out := hookCommand(t)
	h := schedStart(t, "", "")
	h.s.notify, _ = startNotifier(t, config.Notify{Webhook: hook.srv.URL, Command: cmd, On: config.NotifyEvents, StuckAfter: time.Hour}, h.clock.Now)
	h.targets["a"].on("bad@example.com", dlvFailed550)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("bad@example.com"), dlvRcpt("ok@example.com"))
	dlvWait(t, "the webhook and the command", func() bool {
		evs, _ := hook.got()
		return len(evs) == 1 && len(commandEvents(t, out)) == 1
	})
	evs, _ := hook.got()
	for _, e := range []Event{evs[0], commandEvents(t, out)[0]} {
		if e.Event != "bounce" || e.ID != id || e.Hostname != "relay.test" || e.Time.IsZero() ||
			len(e.Recipients) != 1 || e.Recipients[0] != "bad@example.com" || !strings.Contains(e.Reason, "550 5.1.1") {
			t.Errorf("event %+v, want a bounce of %s for bad@example.com with the reply", e, id)
		}
	}
	// The raw JSON carries the contract's field names.
	b, _ := json.Marshal(evs[0])
	for _, k := range []string{`"event"`, `"time"`, `"hostname"`, `"id"`, `"recipients"`, `"reason"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON %s lacks %s", b, k)
		}
	}
}

// TestNotifyRateLimitAndRetry checks that events of one type are rate
// limited (and the ones held back counted in the next), that other types
// are not held back by them, that a failing webhook is retried a few
// times and logged, and that sending never waits for the hook.
func TestNotifyRateLimitAndRetry(t *testing.T) {
	fastNotify(t)
	clock := newDlvClock()
	hook := newHookReceiver(t)
	n, logs := startNotifier(t, config.Notify{Webhook: hook.srv.URL, On: []string{"bounce", "stuck"}, StuckAfter: time.Hour}, clock.Now)
	for range 3 {
		n.send(Event{Event: "bounce", ID: "X", Reason: "550"})
	}
	n.send(Event{Event: "stuck", ID: "Y", Reason: "old"})
	n.send(Event{Event: "upstream_down", Upstream: "a", Reason: "not asked for"})
	dlvWait(t, "two events", func() bool { evs, _ := hook.got(); return len(evs) == 2 })
	clock.Advance(notifyEvery)
	n.send(Event{Event: "bounce", ID: "Z", Reason: "550"})
	dlvWait(t, "the third event", func() bool { evs, _ := hook.got(); return len(evs) == 3 })
	evs, _ := hook.got()
	if evs[0].Event != "bounce" || evs[1].Event != "stuck" || evs[2].ID != "Z" || !strings.Contains(evs[2].Reason, "and 2 more bounce events") {
		t.Errorf("events %+v", evs)
	}

	// A failing hook: tried notifyTries times, then logged.
	hook.mu.Lock()
	hook.status = 500
	hook.mu.Unlock()
	_, before := hook.got()
	clock.Advance(notifyEvery)
	start := time.Now()
	n.send(Event{Event: "bounce", ID: "F", Reason: "550"})
	if d := time.Since(start); d > time.Second {
		t.Errorf("send waited %s for the hook", d)
	}
	dlvWait(t, "the failure to be logged", func() bool { return strings.Contains(logs.String(), "notify failed; event not delivered") })
	if _, tries := hook.got(); tries-before != notifyTries {
		t.Errorf("%d tries of a failing webhook, want %d", tries-before, notifyTries)
	}
}

// watchTarget is an upstream whose pause and AUTH failures a test sets.
type watchTarget struct {
	inHoldTarget
	paused bool
	auth   uint64
}

func (w *watchTarget) Paused() (time.Time, string, bool) {
	return time.Date(2025, 6, 1, 13, 0, 0, 0, time.UTC), "421 4.7.0 try later", w.paused
}
func (w *watchTarget) Failures() upstream.Failures { return upstream.Failures{Auth: w.auth} }

// TestNotifyWatch checks the events found by watching: a stuck message
// (once per message), an upstream that became paused, new AUTH failures.
func TestNotifyWatch(t *testing.T) {
	fastNotify(t)
	notifyEvery = 0
	clock := newDlvClock()
	hook := newHookReceiver(t)
	n, _ := startNotifier(t, config.Notify{Webhook: hook.srv.URL, On: config.NotifyEvents, StuckAfter: time.Hour}, clock.Now)
	oldestID, oldest := "", time.Time{}
	counts := func() (string, time.Time, error) { return oldestID, oldest, nil }
	tg := &watchTarget{inHoldTarget: inHoldTarget{"gmail"}}
	targets := func() map[string]upstream.Target { return map[string]upstream.Target{"gmail": tg} }

	n.check(counts, targets) // nothing to report
	oldestID, oldest = "M1", clock.Now().Add(-59*time.Minute)
	n.check(counts, targets) // not an hour yet
	clock.Advance(time.Minute)
	n.check(counts, targets) // stuck
	n.check(counts, targets) // the same message: once
	tg.paused, tg.auth = true, 2
	n.check(counts, targets)
	n.check(counts, targets) // still paused, no new failure
	// One worker sends in order: once a marker sent last arrives, every
	// event the checks queued has arrived too.
	n.send(Event{Event: "bounce", ID: "marker"})
	dlvWait(t, "the marker", func() bool { evs, _ := hook.got(); return len(evs) > 0 && evs[len(evs)-1].ID == "marker" })
	evs, _ := hook.got()
	evs = evs[:len(evs)-1]
	byType := map[string]Event{}
	for _, e := range evs {
		byType[e.Event] = e
	}
	if len(evs) != 3 || byType["stuck"].ID != "M1" || byType["upstream_down"].Upstream != "gmail" ||
		!strings.Contains(byType["upstream_down"].Reason, "421 4.7.0") || byType["auth_failed"].Upstream != "gmail" {
		t.Errorf("events %+v, want stuck M1, upstream_down and auth_failed for gmail", evs)
	}
}
