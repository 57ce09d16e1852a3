package relay

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/outbox-mta/outbox/upstream"
)

// TestRouterSenderWrapper: the router delivers through the sender
// rewriting that envelope_from asks for, keeps the target as built for
// status and reloads (which look for its Paused, RateHistory, ...), and
// leaves the caller's envelope as it was.
func TestRouterSenderWrapper(t *testing.T) {
	dir := t.TempDir()
	cfg := dlvConfig(t, dir, schedHCL("", ""))
	cfg.Upstreams[0].EnvelopeFrom = "account@qq.example"
	cfg.Upstreams[0].FromHeader = "rewrite"
	a, b := newDlvTarget("a"), newDlvTarget("b")
	r := NewRouter(cfg, map[string]upstream.Target{"a": a, "b": b})

	if r.targets["a"] != upstream.Target(a) {
		t.Errorf("targets[a] is %T, want the target as built", r.targets["a"])
	}
	if r.Target("b") != upstream.Target(b) {
		t.Errorf("b, without sender rewriting, is delivered through %T, want the target itself", r.Target("b"))
	}
	if r.Target("nosuch") != nil {
		t.Error("an unknown upstream has a target")
	}
	body := "From: App <app@example.org>\r\nSubject: x\r\n\r\nhi\r\n"
	env := &upstream.Envelope{From: "app@example.org", Recipients: []upstream.Rcpt{{Address: "bob@example.com"}},
		Body: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	r.Target("a").Deliver(context.Background(), env)
	calls := a.Calls()
	if len(calls) != 1 || calls[0].From != "account@qq.example" || !strings.Contains(string(calls[0].Body), "From: App <account@qq.example>\r\n") {
		t.Fatalf("calls %+v, want one from account@qq.example with From: rewritten", calls)
	}
	if env.From != "app@example.org" {
		t.Errorf("the caller's envelope sender became %q", env.From)
	}
}

// TestRelayName: a Local outcome is named as the target names itself; an
// SMTP one by host and port.
func TestRelayName(t *testing.T) {
	for _, tc := range []struct {
		out  upstream.Outcome
		want string
	}{
		{upstream.Outcome{Remote: "smtp.example.com", Port: 587}, "u[smtp.example.com:587]"},
		{upstream.Outcome{Remote: "::1", Port: 25}, "u[[::1]:25]"},
		{upstream.Outcome{Remote: "maildir:/var/md", Local: true}, "u[maildir:/var/md]"},
		{upstream.Outcome{}, "u[]"},
	} {
		if got := relayName("u", tc.out); got != tc.want {
			t.Errorf("relayName(%+v) = %q, want %q", tc.out, got, tc.want)
		}
	}
}
