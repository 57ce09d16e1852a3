package relay

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

func TestSchedBackoff(t *testing.T) {
	cfg := &config.Config{Queue: config.Queue{RetryInitial: time.Minute, RetryMax: 8 * time.Minute}}
	s := &Scheduler{live: testLive(cfg, nil)}
	for _, tc := range []struct {
		attempts int
		base     time.Duration
	}{
		{1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute},
		{4, 8 * time.Minute}, {5, 8 * time.Minute}, {30, 8 * time.Minute}, {1000, 8 * time.Minute},
	} {
		lo, hi := tc.base*9/10, tc.base*11/10
		seen := map[time.Duration]bool{}
		for range 200 {
			d := s.backoff(tc.attempts)
			if d < lo || d > hi {
				t.Fatalf("backoff(%d) = %s, want within ±10%% of %s", tc.attempts, d, tc.base)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("backoff(%d): only %d distinct delays in 200 draws; want jitter", tc.attempts, len(seen))
		}
	}
}

func TestSchedApply(t *testing.T) {
	arrived := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	now := arrived.Add(10 * time.Minute)
	m := &spool.Message{
		Arrived: arrived, Attempts: 1,
		Recipients: []spool.Recipient{
			{Address: "ok@example.com", Status: spool.Pending, Attempts: 1},
			{Address: "later@example.com", Status: spool.Pending},
			{Address: "bad@example.com", Status: spool.Pending},
			{Address: "done@example.com", Status: spool.Sent, Attempts: 1},
			{Address: "untried@example.com", Status: spool.Pending},
		},
	}
	results := map[int]attempt{
		0: {res: upstream.Result{Class: upstream.Sent, Code: 250, Enhanced: "2.0.0"}, remote: "mx.test", tried: true},
		1: {res: dlvDeferred451, remote: "mx.test", tried: true},
		2: {res: dlvFailed550, remote: "mx.test", tried: true},
		3: {res: dlvFailed550, remote: "mx.test", tried: true}, // already sent: must not change
	}
	apply(m, results, now, time.Hour, 2*time.Minute)

	if m.Attempts != 2 {
		t.Errorf("message attempts = %d, want 2", m.Attempts)
	}
	if !m.NextAttempt.Equal(now.Add(2 * time.Minute)) {
		t.Errorf("next attempt = %s, want %s", m.NextAttempt, now.Add(2*time.Minute))
	}
	want := []struct {
		status   spool.Status
		attempts int
		code     string
		errHas   string
	}{
		{spool.Sent, 2, "2.0.0", ""},
		{spool.Pending, 1, "4.3.0", "451 4.3.0"},
		{spool.Failed, 1, "5.1.1", "550 5.1.1"},
		{spool.Sent, 1, "", ""},
		{spool.Pending, 0, "", ""},
	}
	for i, w := range want {
		r := m.Recipients[i]
		if r.Status != w.status || r.Attempts != w.attempts || r.Code != w.code {
			t.Errorf("%s: status %s attempts %d code %q, want %s %d %q", r.Address, r.Status, r.Attempts, r.Code, w.status, w.attempts, w.code)
		}
		if w.errHas == "" && r.LastError != "" {
			t.Errorf("%s: last_error = %q, want none", r.Address, r.LastError)
		}
		if w.errHas != "" && !strings.Contains(r.LastError, w.errHas) {
			t.Errorf("%s: last_error = %q, want it to contain %q", r.Address, r.LastError, w.errHas)
		}
	}
	if r := m.Recipients[0]; r.Remote != "mx.test" || !r.Updated.Equal(now) {
		t.Errorf("sent recipient: remote %q updated %s, want mx.test at %s", r.Remote, r.Updated, now)
	}
	if r := m.Recipients[4]; !r.Updated.IsZero() {
		t.Errorf("untried recipient was updated at %s", r.Updated)
	}
}

func TestSchedApplyExpiry(t *testing.T) {
	arrived := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	newMsg := func() *spool.Message {
		return &spool.Message{Arrived: arrived, Recipients: []spool.Recipient{
			{Address: "deferred@example.com", Status: spool.Pending},
			{Address: "quiet@example.com", Status: spool.Pending},
			{Address: "sent@example.com", Status: spool.Sent},
		}}
	}
	results := map[int]attempt{0: {res: dlvDeferred451, tried: true}}

	// Just before the lifetime ends, nothing expires.
	m := newMsg()
	apply(m, results, arrived.Add(time.Hour-time.Second), time.Hour, time.Minute)
	if m.Recipients[0].Status != spool.Pending || m.Recipients[1].Status != spool.Pending {
		t.Fatalf("expired before lifetime: %+v", m.Recipients)
	}

	m = newMsg()
	apply(m, results, arrived.Add(time.Hour), time.Hour, time.Minute)
	for _, i := range []int{0, 1} {
		r := m.Recipients[i]
		if r.Status != spool.Failed || r.Code != "4.4.7" {
			t.Errorf("%s: status %s code %q after lifetime, want failed 4.4.7", r.Address, r.Status, r.Code)
		}
		if !strings.Contains(r.LastError, "expired") {
			t.Errorf("%s: last_error %q does not say it expired", r.Address, r.LastError)
		}
	}
	if !strings.Contains(m.Recipients[0].LastError, "451 4.3.0") {
		t.Errorf("expiry lost the last error: %q", m.Recipients[0].LastError)
	}
	if r := m.Recipients[2]; r.Status != spool.Sent || r.Code != "" {
		t.Errorf("sent recipient changed on expiry: %+v", r)
	}
	if !m.Done() {
		t.Error("expired message is not done")
	}
}

func TestSchedRouter(t *testing.T) {
	cfg := dlvConfig(t, t.TempDir(), `
hostname = "relay.test"
upstream "main" {
  host = "127.0.0.1"
  tls  = "none"
}
upstream "qq" {
  host = "127.0.0.1"
  tls  = "none"
}
upstream "corp" {
  host = "127.0.0.1"
  tls  = "none"
}
upstream "backup" {
  host = "127.0.0.1"
  tls  = "none"
}
route {
  sender    = ["Alerts@App.Example"]
  upstreams = ["qq"]
}
route {
  sender           = ["@billing.example"]
  recipient_domain = ["partner.example"]
  upstreams        = ["corp", "backup"]
}
route {
  recipient_domain = ["@corp.example"]
  upstreams        = ["corp", "backup", "main"]
}
`)
	r := NewRouter(cfg, nil)
	for _, tc := range []struct {
		from, to string
		want     []string
	}{
		{"someone@else.example", "x@gmail.example", []string{"main"}},
		{"", "x@gmail.example", []string{"main"}},
		{"alerts@app.example", "x@gmail.example", []string{"qq"}},
		{"ALERTS@APP.EXAMPLE", "x@corp.example", []string{"qq"}}, // first match wins
		{"other@app.example", "x@gmail.example", []string{"main"}},
		{"pay@billing.example", "x@partner.example", []string{"corp", "backup"}},
		{"pay@billing.example", "x@mx.partner.example", []string{"corp", "backup"}},
		{"pay@billing.example", "x@gmail.example", []string{"main"}}, // both conditions must hold
		{"pay@sub.billing.example", "x@partner.example", []string{"main"}},
		{"me@home.example", "x@partner.example", []string{"main"}},
		{"me@home.example", "X@Corp.Example", []string{"corp", "backup", "main"}},
		{"me@home.example", "x@notcorp.example", []string{"main"}},
	} {
		if got := r.Route(tc.from, tc.to); !slices.Equal(got, tc.want) {
			t.Errorf("Route(%q, %q) = %q, want %q", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestSchedApplyNextAttemptCappedAtLifetime(t *testing.T) {
	arrived := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	m := &spool.Message{Arrived: arrived, Recipients: []spool.Recipient{{Address: "x@example.com", Status: spool.Pending}}}
	results := map[int]attempt{0: {res: dlvDeferred451, tried: true}}
	now := arrived.Add(55 * time.Minute)
	apply(m, results, now, time.Hour, 30*time.Minute)
	if want := arrived.Add(time.Hour); !m.NextAttempt.Equal(want) {
		t.Errorf("next attempt %s, want the deadline %s", m.NextAttempt, want)
	}
	m.Recipients[0].Status = spool.Pending
	apply(m, results, arrived.Add(10*time.Minute), time.Hour, 5*time.Minute)
	if want := arrived.Add(15 * time.Minute); !m.NextAttempt.Equal(want) {
		t.Errorf("next attempt %s, want %s", m.NextAttempt, want)
	}
}

// TestSchedInFlightRetriedAtOnceAfterCrash: what a crash during a delivery
// leaves in the spool is the message with its past next-attempt time, so
// the scheduler of a restarted daemon (one without the first one's memory
// of what is in flight) tries it again at once, not after a backoff.
func TestSchedInFlightRetriedAtOnceAfterCrash(t *testing.T) {
	h := schedStart(t, "", "")
	h.s.ShutdownGrace = 10 * time.Millisecond
	a := h.targets["a"]
	a.block, a.started = make(chan struct{}), make(chan struct{}, 4)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"))
	select {
	case <-a.started:
	case <-time.After(15 * time.Second):
		t.Fatal("delivery never started")
	}
	if m := h.get(id); m == nil || m.NextAttempt.After(h.clock.Now()) {
		t.Fatalf("in-flight message not due in the spool: %+v", m)
	}

	// The restarted daemon's scheduler, on the same spool and clock.
	after := newDlvTarget("a")
	s := NewScheduler(h.sp, testLive(h.cfg, NewRouter(h.cfg, map[string]upstream.Target{"a": after, "b": h.targets["b"]})), dlvLogger(t), h.clock.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	dlvWait(t, "the retry after the restart", func() bool { return len(after.callsTo("bob@example.com")) == 1 })
	dlvWait(t, "the message to leave the queue", func() bool { return h.get(id) == nil })
}
