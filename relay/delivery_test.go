package relay

import (
	"bytes"
	"context"
	"fmt"
	"github.com/outbox-mta/outbox/internal/testpki"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// dlvReport parses a DSN a target received and returns the report's
// Content-Type parameters and its per-recipient status blocks.
func dlvReport(t *testing.T, c dlvCall) (report, []textproto.Header) {
	t.Helper()
	if c.From != "" {
		t.Errorf("DSN envelope sender = %q, want <>", c.From)
	}
	r := parseReport(t, c.Body)
	mt, params, err := r.header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type = %s %v (%v), want multipart/report; report-type=delivery-status", mt, params, err)
	}
	for _, p := range r.parts {
		if mt, _, _ := p.header.ContentType(); mt == "message/delivery-status" {
			blocks := parseStatus(t, p.body)
			if len(blocks) < 2 {
				t.Fatalf("delivery-status has %d blocks, want a per-message one and recipients:\n%s", len(blocks), p.body)
			}
			return r, blocks[1:]
		}
	}
	t.Fatalf("DSN has no message/delivery-status part:\n%s", c.Body)
	return r, nil
}

func TestDeliveryRetryAfterDeferral(t *testing.T) {
	h := schedStart(t, "", "")
	a := h.targets["a"]
	a.on("bob@example.com", dlvDeferred451)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"))

	dlvWait(t, "the first attempt to be recorded", func() bool { return h.attempts(id) == 1 })
	m := h.get(id)
	r := m.Recipients[0]
	if r.Status != spool.Pending || r.Attempts != 1 || r.Code != "4.3.0" || !strings.Contains(r.LastError, "451") {
		t.Fatalf("after a 451: %+v, want pending, 1 attempt, 4.3.0 and the reply in last_error", r)
	}
	delay := m.NextAttempt.Sub(h.clock.Now())
	if delay < 54*time.Second || delay > 66*time.Second {
		t.Errorf("next attempt in %s, want retry_initial (1m) ±10%%", delay)
	}

	// Not due yet: a kick does nothing.
	h.advance(30 * time.Second)
	h.s.Kick()
	if n := len(a.Calls()); n != 1 {
		t.Fatalf("%d calls before the backoff elapsed, want 1", n)
	}

	h.advance(time.Minute)
	dlvWait(t, "the message to leave the queue", func() bool { return h.get(id) == nil })
	if calls := a.callsTo("bob@example.com"); len(calls) != 2 {
		t.Fatalf("%d calls to bob, want 2", len(calls))
	}
	if b := a.bounces("app@example.org"); len(b) != 0 {
		t.Errorf("a deferral followed by success brought %d notices", len(b))
	}
}

func TestDeliveryPartialFailureBounces(t *testing.T) {
	h := schedStart(t, "", "")
	a := h.targets["a"]
	a.on("nobody@example.com", dlvFailed550)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"), dlvRcpt("nobody@example.com"))

	dlvWait(t, "the bounce to be delivered", func() bool { return len(a.bounces("app@example.org")) == 1 })
	dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
	if h.get(id) != nil {
		t.Fatal("original still queued")
	}
	first := a.Calls()[0]
	if !slices2Equal(first.To, []string{"bob@example.com", "nobody@example.com"}) || first.From != "app@example.org" {
		t.Errorf("first call from %q to %q", first.From, first.To)
	}
	_, rcpts := dlvReport(t, a.bounces("app@example.org")[0])
	if len(rcpts) != 1 {
		t.Fatalf("DSN reports on %d recipients, want only the failed one", len(rcpts))
	}
	wantFields(t, "recipient", rcpts[0], map[string]string{
		"Final-Recipient": "rfc822; nobody@example.com",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Remote-MTA":      "dns; a.test",
	})
	if d := rcpts[0].Get("Diagnostic-Code"); !strings.HasPrefix(d, "smtp; 550 5.1.1") {
		t.Errorf("Diagnostic-Code = %q, want the upstream's 550 5.1.1 reply", d)
	}
	if n := len(a.callsTo("bob@example.com")); n != 1 {
		t.Errorf("bob got %d deliveries, want 1", n)
	}
}

// slices2Equal compares two string slices.
func slices2Equal(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func TestDeliveryNotify(t *testing.T) {
	t.Run("never", func(t *testing.T) {
		h := schedStart(t, "", "")
		a := h.targets["a"]
		a.on("nobody@example.com", dlvFailed550)
		h.run()
		h.enqueue("app@example.org", dlvRcpt("nobody@example.com", "NEVER"))
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		if n := len(a.Calls()); n != 1 {
			t.Errorf("%d calls, want 1 and no notice", n)
		}
	})
	t.Run("success", func(t *testing.T) {
		h := schedStart(t, "", "")
		a := h.targets["a"]
		h.run()
		h.enqueue("app@example.org", dlvRcpt("bob@example.com", "SUCCESS"), dlvRcpt("carol@example.com"))
		dlvWait(t, "the notice", func() bool { return len(a.bounces("app@example.org")) == 1 })
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		_, rcpts := dlvReport(t, a.bounces("app@example.org")[0])
		if len(rcpts) != 1 {
			t.Fatalf("notice reports on %d recipients, want 1", len(rcpts))
		}
		wantFields(t, "recipient", rcpts[0], map[string]string{
			"Final-Recipient": "rfc822; bob@example.com",
			"Action":          "delivered",
			"Status":          "2.0.0",
		})
	})
	t.Run("failure-only on success", func(t *testing.T) {
		h := schedStart(t, "", "")
		a := h.targets["a"]
		h.run()
		h.enqueue("app@example.org", dlvRcpt("bob@example.com", "FAILURE"))
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		if n := len(a.Calls()); n != 1 {
			t.Errorf("%d calls, want 1 and no notice", n)
		}
	})
}

func TestDeliveryNullSender(t *testing.T) {
	t.Run("no bounce", func(t *testing.T) {
		h := schedStart(t, "", "")
		a := h.targets["a"]
		a.on("nobody@example.com", dlvFailed550)
		h.run()
		h.enqueue("", dlvRcpt("nobody@example.com"))
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		if n := len(a.Calls()); n != 1 {
			t.Errorf("%d calls, want 1 and no bounce", n)
		}
	})
	t.Run("double bounce", func(t *testing.T) {
		h := schedStart(t, `double_bounce = "postmaster@example.net"`, "")
		a := h.targets["a"]
		a.on("nobody@example.com", dlvFailed550)
		h.run()
		h.enqueue("", dlvRcpt("nobody@example.com"))
		dlvWait(t, "the double bounce", func() bool { return len(a.bounces("postmaster@example.net")) == 1 })
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		_, rcpts := dlvReport(t, a.bounces("postmaster@example.net")[0])
		wantFields(t, "recipient", rcpts[0], map[string]string{"Action": "failed", "Status": "5.1.1"})
		if n := len(a.Calls()); n != 2 {
			t.Errorf("%d calls, want the original and one double bounce", n)
		}
	})
	t.Run("failed bounce", func(t *testing.T) {
		// Our own bounce that fails must not bounce again: no loop.
		h := schedStart(t, "", "")
		a := h.targets["a"]
		a.on("nobody@example.com", dlvFailed550)
		a.on("gone@example.org", dlvFailed550)
		h.run()
		h.enqueue("gone@example.org", dlvRcpt("nobody@example.com"))
		dlvWait(t, "the bounce attempt", func() bool { return len(a.bounces("gone@example.org")) == 1 })
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		if n := len(a.Calls()); n != 2 {
			t.Errorf("%d calls, want the original and one bounce", n)
		}
	})
	t.Run("failed bounce to double_bounce", func(t *testing.T) {
		// A bounce is mail from <>: when it fails, it goes to
		// double_bounce, and a failing double bounce ends there.
		h := schedStart(t, `double_bounce = "postmaster@example.net"`, "")
		a := h.targets["a"]
		a.on("nobody@example.com", dlvFailed550)
		a.on("gone@example.org", dlvFailed550)
		a.on("postmaster@example.net", dlvFailed550)
		h.run()
		h.enqueue("gone@example.org", dlvRcpt("nobody@example.com"))
		dlvWait(t, "the double bounce", func() bool { return len(a.bounces("postmaster@example.net")) == 1 })
		dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 })
		_, rcpts := dlvReport(t, a.bounces("postmaster@example.net")[0])
		wantFields(t, "recipient", rcpts[0], map[string]string{
			"Final-Recipient": "rfc822; gone@example.org",
			"Action":          "failed",
			"Status":          "5.1.1",
		})
		if n := len(a.Calls()); n != 3 {
			t.Errorf("%d calls, want the original, its bounce and one double bounce", n)
		}
	})
}

func TestDeliveryExpiry(t *testing.T) {
	h := schedStart(t, "", "") // lifetime 2h
	a := h.targets["a"]
	for range 20 {
		a.on("slow@example.com", dlvDeferred451)
	}
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("slow@example.com"))
	dlvWait(t, "the first attempt", func() bool { return h.attempts(id) == 1 })
	for i := 0; ; i++ {
		m := h.get(id)
		if m == nil {
			break
		}
		if i > 30 {
			t.Fatal("message never expired")
		}
		h.advance(m.NextAttempt.Sub(h.clock.Now()))
		dlvWait(t, "the next attempt", func() bool { return h.attempts(id) != m.Attempts })
	}
	// The retry schedule never sleeps past the lifetime: the sender
	// hears at the deadline, not up to retry_max later.
	if now, deadline := h.clock.Now(), newDlvClock().Now().Add(2*time.Hour); !now.Equal(deadline) {
		t.Errorf("message expired at %s, want at its lifetime %s", now, deadline)
	}
	dlvWait(t, "the expiry bounce", func() bool { return len(a.bounces("app@example.org")) == 1 })
	_, rcpts := dlvReport(t, a.bounces("app@example.org")[0])
	wantFields(t, "recipient", rcpts[0], map[string]string{
		"Final-Recipient": "rfc822; slow@example.com",
		"Action":          "failed",
		"Status":          "4.4.7",
	})
}

func TestDeliveryDelayWarning(t *testing.T) {
	h := schedStart(t, `delay_warning = "5m"`, "")
	a := h.targets["a"]
	for range 6 {
		a.on("slow@example.com", dlvDeferred451)
	}
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("slow@example.com"))
	dlvWait(t, "the first attempt", func() bool { return h.attempts(id) == 1 })
	if n := len(a.bounces("app@example.org")); n != 0 {
		t.Fatalf("%d notices before delay_warning", n)
	}
	for h.attempts(id) < 5 {
		n := h.attempts(id)
		h.advance(9 * time.Minute)
		dlvWait(t, "the next attempt", func() bool { return h.attempts(id) != n })
	}
	dlvWait(t, "the delay notice", func() bool { return len(a.bounces("app@example.org")) >= 1 })
	if n := len(a.bounces("app@example.org")); n != 1 {
		t.Fatalf("%d delay notices, want exactly 1", n)
	}
	_, rcpts := dlvReport(t, a.bounces("app@example.org")[0])
	wantFields(t, "recipient", rcpts[0], map[string]string{
		"Final-Recipient": "rfc822; slow@example.com",
		"Action":          "delayed",
		"Status":          "4.3.0",
	})
	if !h.get(id).DelayWarned {
		t.Error("delay_warned not recorded")
	}
	// The script runs out: the next attempt delivers, with no further notice.
	for h.get(id) != nil {
		n := h.attempts(id)
		h.advance(9 * time.Minute)
		dlvWait(t, "the next attempt", func() bool { return h.attempts(id) != n })
	}
	if n := len(a.bounces("app@example.org")); n != 1 {
		t.Errorf("%d delay notices in all, want 1", n)
	}
}

func TestDeliveryFailover(t *testing.T) {
	h := schedStart(t, "", `
route {
  recipient_domain = ["example.com"]
  upstreams        = ["a", "b"]
}`)
	a, b := h.targets["a"], h.targets["b"]
	a.on("bob@example.com", dlvDeferred451)
	a.on("nobody@example.com", dlvFailed550)
	h.run()
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"), dlvRcpt("nobody@example.com"))
	dlvWait(t, "the original to leave the queue", func() bool { return h.get(id) == nil })
	if n := h.attempts(id); n != -1 {
		t.Fatal("still queued")
	}
	if calls := a.callsTo("bob@example.com"); len(calls) != 1 {
		t.Errorf("a got bob %d times, want 1", len(calls))
	}
	calls := b.callsTo("bob@example.com")
	if len(calls) != 1 || !slices2Equal(calls[0].To, []string{"bob@example.com"}) {
		t.Fatalf("b calls for bob: %+v, want one with bob alone (a permanent failure is not failed over)", calls)
	}
	if len(b.callsTo("nobody@example.com")) != 0 {
		t.Error("a permanent failure at a was retried at b")
	}
	// The bounce for nobody goes through the default route (upstream a).
	dlvWait(t, "the bounce", func() bool { return len(a.bounces("app@example.org")) == 1 })
}

func TestDeliveryEnvelopeFromRewrite(t *testing.T) {
	h := schedStart(t, "", "")
	// Rebuild upstream a's settings with envelope_from.
	h.cfg.Upstreams[0].EnvelopeFrom = "account@qq.example"
	h.reroute()
	h.run()
	a := h.targets["a"]
	h.enqueue("app@example.org", dlvRcpt("bob@example.com"))
	dlvWait(t, "delivery", func() bool { return len(a.Calls()) == 1 })
	c := a.Calls()[0]
	if c.From != "account@qq.example" {
		t.Errorf("envelope from = %q, want account@qq.example", c.From)
	}
	if !bytes.Contains(c.Body, []byte("From: App <app@example.org>\r\n")) {
		t.Errorf("from_header = keep changed the header:\n%s", c.Body)
	}

	// Bounces (the null sender) go out as the account too: such providers
	// refuse MAIL FROM:<> from an authenticated client.
	h.enqueue("", dlvRcpt("carol@example.com"))
	dlvWait(t, "delivery", func() bool { return len(a.Calls()) == 2 })
	if c := a.Calls()[1]; c.From != "account@qq.example" {
		t.Errorf("null sender sent as %q, want account@qq.example", c.From)
	}
	// Without envelope_from, the null sender stays null.
	h.cfg.Upstreams[0].EnvelopeFrom = ""
	h.reroute()
	h.enqueue("", dlvRcpt("dave@example.com"))
	dlvWait(t, "delivery", func() bool { return len(a.Calls()) == 3 })
	if c := a.Calls()[2]; c.From != "" {
		t.Errorf("null sender rewritten to %q without envelope_from", c.From)
	}
}

func TestDeliveryFromHeaderRewrite(t *testing.T) {
	h := schedStart(t, "", "")
	h.cfg.Upstreams[0].EnvelopeFrom = "account@qq.example"
	h.cfg.Upstreams[0].FromHeader = "rewrite"
	h.reroute()
	h.run()
	a := h.targets["a"]
	id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"))
	dlvWait(t, "delivery", func() bool { return len(a.Calls()) == 1 })
	c := a.Calls()[0]
	r, err := textproto.ReadHeader(bufioReader(bytes.NewReader(c.Body)))
	if err != nil {
		t.Fatalf("body the target read: %v\n%s", err, c.Body)
	}
	if got := r.Get("From"); got != "App <account@qq.example>" {
		t.Errorf("From: %q, want App <account@qq.example>", got)
	}
	if got := r.Get("Reply-To"); got != "App <app@example.org>" {
		t.Errorf("Reply-To: %q, want the original From", got)
	}
	if !bytes.HasSuffix(c.Body, []byte("\r\n\r\nReport body.\r\n")) {
		t.Errorf("body changed:\n%q", c.Body)
	}
	if c.From != "account@qq.example" {
		t.Errorf("envelope from = %q", c.From)
	}
	_ = id

	// An existing Reply-To is kept.
	body := "From: App <app@example.org>\r\nReply-To: help@example.org\r\nSubject: x\r\n\r\nhi\r\n"
	h.enqueueBody("app@example.org", body, dlvRcpt("carol@example.com"))
	dlvWait(t, "delivery", func() bool { return len(a.Calls()) == 2 })
	r, err = textproto.ReadHeader(bufioReader(bytes.NewReader(a.Calls()[1].Body)))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Values("Reply-To"); len(got) != 1 || got[0] != "help@example.org" {
		t.Errorf("Reply-To = %q, want the original one only", got)
	}
}

func TestDeliveryShutdownInFlight(t *testing.T) {
	for _, finish := range []bool{false, true} {
		name := map[bool]string{false: "cancelled", true: "finished"}[finish]
		t.Run(name, func(t *testing.T) {
			h := schedStart(t, "", "")
			h.s.ShutdownGrace = 50 * time.Millisecond
			if finish {
				h.s.ShutdownGrace = time.Minute
			}
			a := h.targets["a"]
			a.block, a.started = make(chan struct{}), make(chan struct{}, 4)
			h.run()
			id := h.enqueue("app@example.org", dlvRcpt("bob@example.com"))
			select {
			case <-a.started:
			case <-time.After(15 * time.Second):
				t.Fatal("delivery never started")
			}
			stopped := make(chan struct{})
			go func() { h.stop(); close(stopped) }()
			if finish {
				close(a.block) // the delivery finishes within the grace period
			}
			select {
			case <-stopped:
			case <-time.After(15 * time.Second):
				t.Fatal("Run did not return")
			}
			m := h.get(id)
			if finish {
				if m != nil {
					t.Fatalf("finished delivery still queued: %+v", m.Recipients)
				}
				if len(a.Calls()) != 1 {
					t.Fatal("delivery not recorded")
				}
				return
			}
			if m == nil {
				t.Fatal("message lost: it left the queue without delivery")
			}
			if r := m.Recipients[0]; r.Status != spool.Pending {
				t.Fatalf("recipient %+v, want pending", r)
			}
			if len(a.Calls()) != 0 {
				t.Fatal("cancelled delivery was recorded as made")
			}
		})
	}
}

var _ upstream.Target = (*dlvTarget)(nil)

// dlvSMTPConfig writes a configuration whose one upstream is the test
// server u, over STARTTLS with AUTH PLAIN, trusting ca through ca_file.
func dlvSMTPConfig(t *testing.T, u *dlvUpstream, ca *testpki.CA, password string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	if ca != nil {
		ca.WritePEM(t, filepath.Join(dir, "ca.pem"))
	} else {
		testpki.NewCA(t, "outbox relay test CA").WritePEM(t, filepath.Join(dir, "ca.pem"))
	}
	if err := os.WriteFile(filepath.Join(dir, "secret.txt"), []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dlvConfig(t, dir, fmt.Sprintf(`
hostname = "relay.test"
listen { address = "127.0.0.1:%d" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
queue {
  retry_initial = "1m"
  retry_max     = "8m"
  lifetime      = "2h"
}
upstream "smarthost" {
  host            = "127.0.0.1"
  port            = %d
  tls             = "starttls"
  ca_file         = "ca.pem"
  username        = "relay@example.org"
  password_file   = "secret.txt"
  connect_timeout = "10s"
}
`, dlvFreePort(t), u.Port))
}

const dlvSMTPBody = "From: App <app@example.org>\r\n" +
	"To: bob@example.com\r\n" +
	"Subject: over TLS\r\n" +
	"Message-ID: <tls-1@example.org>\r\n" +
	"\r\n" +
	"Hello over TLS.\r\n"

func TestDeliverySMTPUpstream(t *testing.T) {
	ca := testpki.NewCA(t, "outbox relay test CA")
	u := dlvStartUpstream(t, ca, "relay@example.org", "s3cret pass")
	rl := dlvStartRelay(t, dlvSMTPConfig(t, u, ca, "s3cret pass"), Options{})
	dlvSend(t, rl.addr, "app@example.org", []string{"bob@example.com", "carol@example.net"}, dlvSMTPBody)

	dlvWait(t, "the message at the upstream", func() bool { return len(u.messages()) == 1 })
	got := u.messages()[0]
	if !got.TLS || got.User != "relay@example.org" {
		t.Errorf("upstream saw TLS=%v user=%q, want TLS and relay@example.org", got.TLS, got.User)
	}
	if got.From != "app@example.org" || !slices2Equal(got.To, []string{"bob@example.com", "carol@example.net"}) {
		t.Errorf("envelope at the upstream: from %q to %q", got.From, got.To)
	}
	if !bytes.Contains(got.Data, []byte("Subject: over TLS\r\n")) || !bytes.HasSuffix(got.Data, []byte("\r\n\r\nHello over TLS.\r\n")) {
		t.Errorf("body at the upstream:\n%s", got.Data)
	}
	if !bytes.HasPrefix(got.Data, []byte("Received: ")) {
		t.Errorf("no Received header first:\n%s", got.Data)
	}
	dlvWait(t, "the queue to empty", func() bool {
		n, err := rl.r.Spool().Count()
		return err == nil && n == 0
	})
	if raw := u.rawInput(); bytes.Contains(raw, []byte("s3cret")) {
		t.Error("the password crossed the wire in clear")
	}
}

// dlvQueuedRecipient waits until the relay's one message has been tried
// and returns it.
func dlvQueuedRecipient(t *testing.T, rl *dlvRelay) *spool.Message {
	t.Helper()
	var m *spool.Message
	dlvWait(t, "a delivery attempt to be recorded", func() bool {
		list, err := rl.r.Spool().List()
		if err != nil || len(list) != 1 || list[0].Attempts == 0 {
			return false
		}
		m = list[0]
		return true
	})
	return m
}

func TestDeliverySMTPNoSTARTTLS(t *testing.T) {
	u := dlvStartUpstream(t, nil, "relay@example.org", "s3cret pass")
	rl := dlvStartRelay(t, dlvSMTPConfig(t, u, nil, "s3cret pass"), Options{})
	dlvSend(t, rl.addr, "app@example.org", []string{"bob@example.com"}, dlvSMTPBody)

	m := dlvQueuedRecipient(t, rl)
	r := m.Recipients[0]
	if r.Status != spool.Pending || !strings.Contains(r.LastError, "STARTTLS") {
		t.Errorf("recipient %+v, want pending with STARTTLS in last_error", r)
	}
	if !m.NextAttempt.After(rl.clock.Now()) {
		t.Errorf("next attempt %s not deferred", m.NextAttempt)
	}
	raw := u.rawInput()
	if bytes.Contains(bytes.ToUpper(raw), []byte("AUTH")) || bytes.Contains(raw, []byte("s3cret")) {
		t.Errorf("the relay tried AUTH without TLS:\n%s", raw)
	}
	if len(u.messages()) != 0 {
		t.Error("the message was delivered without TLS")
	}
}

func TestDeliverySMTPAuthRefused(t *testing.T) {
	ca := testpki.NewCA(t, "outbox relay test CA")
	u := dlvStartUpstream(t, ca, "relay@example.org", "right")
	rl := dlvStartRelay(t, dlvSMTPConfig(t, u, ca, "wrong"), Options{})
	dlvSend(t, rl.addr, "app@example.org", []string{"bob@example.com"}, dlvSMTPBody)

	m := dlvQueuedRecipient(t, rl)
	r := m.Recipients[0]
	if r.Status != spool.Pending || !strings.Contains(r.LastError, "535") {
		t.Errorf("recipient %+v, want pending (deferred) with the 535 in last_error", r)
	}
	u.mu.Lock()
	tries := u.authTries
	u.mu.Unlock()
	if tries == 0 {
		t.Error("no AUTH attempt reached the upstream")
	}
	list, err := rl.r.Spool().List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("%d messages queued, want the original only (no bounce)", len(list))
	}
}

func TestDeliverySlowDeliveryDoesNotDelayOthers(t *testing.T) {
	// A real clock and a short retry_initial: the scheduler must wake by
	// itself for a retry that falls due while another delivery hangs.
	h := schedStart(t, "", `
route {
  recipient_domain = ["slow.example"]
  upstreams        = ["b"]
}`)
	h.cfg.Queue.RetryInitial, h.cfg.Queue.RetryMax = 100*time.Millisecond, 100*time.Millisecond
	h.s.now = time.Now
	h.clock = nil
	a, b := h.targets["a"], h.targets["b"]
	a.on("bob@example.com", dlvDeferred451)
	b.block, b.started = make(chan struct{}), make(chan struct{}, 4)
	defer close(b.block)
	h.run()

	m := &spool.Message{From: "app@example.org", Recipients: []spool.Recipient{dlvRcpt("bob@example.com")}, Submitter: "test"}
	if err := h.sp.Enqueue(t.Context(), m, strings.NewReader(dlvBody)); err != nil {
		t.Fatal(err)
	}
	h.s.Kick()
	dlvWait(t, "the first attempt", func() bool { return h.attempts(m.ID) == 1 })

	slow := &spool.Message{From: "app@example.org", Recipients: []spool.Recipient{dlvRcpt("x@slow.example")}, Submitter: "test"}
	if err := h.sp.Enqueue(t.Context(), slow, strings.NewReader(dlvBody)); err != nil {
		t.Fatal(err)
	}
	h.s.Kick()
	select {
	case <-b.started:
	case <-time.After(15 * time.Second):
		t.Fatal("slow delivery never started")
	}
	dlvWait(t, "the retry while the slow delivery hangs", func() bool { return h.get(m.ID) == nil })
}

func TestDeliveryRelayShutdownKeepsMail(t *testing.T) {
	dir := t.TempDir()
	cfg := dlvConfig(t, dir, fmt.Sprintf(`
hostname = "relay.test"
listen { address = "127.0.0.1:%d" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
`, dlvFreePort(t)))
	a := newDlvTarget("a")
	a.block, a.started = make(chan struct{}), make(chan struct{}, 4)
	ready := make(chan struct{})
	r, err := New(cfg, dlvLogger(t), Options{Targets: map[string]upstream.Target{"a": a}, Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	r.sched.ShutdownGrace = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-ready
	dlvSend(t, cfg.Listen[0].Addr, "app@example.org", []string{"bob@example.com"}, dlvSMTPBody)
	select {
	case <-a.started:
	case <-time.After(15 * time.Second):
		t.Fatal("delivery never started")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}

	// The spool is closed now: open it again, as a restart would.
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	list, err := sp.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Recipients[0].Status != spool.Pending || list[0].Held {
		t.Fatalf("after shutdown the queue holds %+v, want the message with bob pending", list)
	}
	if due, err := sp.DueExcept(time.Now().Add(time.Hour), 10, nil); err != nil || len(due) != 1 {
		t.Errorf("message not scheduled for another attempt: %v %v", due, err)
	}
}

func TestDeliveryExactlyOncePerRound(t *testing.T) {
	// Bounces queued while the original's results are being recorded wake
	// the scheduler; it must not pick up the original again from a stale
	// view of the queue.
	h := schedStart(t, "", "")
	a := h.targets["a"]
	const n = 40
	for i := range n {
		if i%2 == 0 {
			a.on(fmt.Sprintf("r%d@example.com", i), dlvFailed550)
		}
	}
	h.run()
	for i := range n {
		h.enqueue(fmt.Sprintf("s%d@example.org", i), dlvRcpt(fmt.Sprintf("r%d@example.com", i)))
	}
	dlvWait(t, "the queue to empty", func() bool { return h.queued() == 0 && len(a.Calls()) >= n+n/2 })
	for i := range n {
		if c := len(a.callsTo(fmt.Sprintf("r%d@example.com", i))); c != 1 {
			t.Errorf("r%d got %d deliveries, want 1", i, c)
		}
		want := 0
		if i%2 == 0 {
			want = 1
		}
		if c := len(a.bounces(fmt.Sprintf("s%d@example.org", i))); c != want {
			t.Errorf("s%d got %d bounces, want %d", i, c, want)
		}
	}
}
