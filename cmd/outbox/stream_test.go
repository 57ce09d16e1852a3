package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/spool"
)

// TestQueueLsStreamsAndLimits: a listing longer than the daemon's read
// batch arrives whole and in order, --limit cuts it, and flush makes the
// waiting messages due, for an ordinary user.
func TestQueueLsStreamsAndLimits(t *testing.T) {
	asUserOK(t)
	e := startPrivEnv(t, "")
	const n = 600
	ids := make([]string, 0, n)
	later := time.Now().Add(24 * time.Hour)
	for i := 0; i < n; i++ {
		m := &spool.Message{From: "app@relay.test", Held: i == 0, NextAttempt: later, Attempts: 1,
			Recipients: []spool.Recipient{{Address: "bob@example.org", Status: spool.Pending, LastError: "451 4.3.0 later"}}}
		if err := e.r.Spool().Enqueue(context.Background(), m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	code, out, errs := e.run(uidNobody, "queue", "ls", "--json")
	if code != 0 {
		t.Fatalf("queue ls --json: exit %d\n%s", code, errs)
	}
	var all []adminapi.Message
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatalf("queue ls --json is no JSON array: %v", err)
	}
	if len(all) != n {
		t.Fatalf("queue ls --json listed %d messages, want %d", len(all), n)
	}
	for i, m := range all {
		if m.ID != ids[i] {
			t.Fatalf("message %d is %s, want %s (oldest first)", i, m.ID, ids[i])
		}
	}
	code, out, errs = e.run(uidNobody, "queue", "ls", "--json", "--limit", "5")
	var five []adminapi.Message
	if err := json.Unmarshal([]byte(out), &five); code != 0 || err != nil || len(five) != 5 || five[4].ID != ids[4] {
		t.Fatalf("queue ls --json --limit 5: exit %d, %d messages (%v)\n%s", code, len(five), err, errs)
	}
	code, out, errs = e.run(uidNobody, "queue", "ls", "--limit", "3")
	if code != 0 || strings.Count(out, "bob@example.org") != 3 || !strings.Contains(out, "3 message(s)") || strings.Contains(out, ids[3]) {
		t.Fatalf("queue ls --limit 3: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = e.run(uidNobody, "queue", "ls")
	if code != 0 || !strings.Contains(out, ids[n-1]) || !strings.Contains(out, "600 message(s)") {
		t.Fatalf("queue ls: exit %d\n%.300s…%s", code, out, errs)
	}
	code, out, errs = e.run(uidNobody, "queue", "flush")
	if code != 0 || !strings.Contains(out, "599 message(s) scheduled") {
		t.Fatalf("queue flush: exit %d, want 599 scheduled (the held one stays)\n%s%s", code, out, errs)
	}
	if m, err := e.r.Spool().Get(ids[0]); err != nil || !m.Held || m.NextAttempt.Before(later.Add(-time.Second)) {
		t.Fatalf("the held message changed: %+v, %v", m, err)
	}
	if c, err := e.r.Spool().Counts(); err != nil || c.Total != n || c.Held != 1 {
		t.Fatalf("counts %+v, %v", c, err)
	}
	code, out, errs = e.run(uidNobody, "queue", "stats")
	if code != 0 || !strings.Contains(out, "queued: 600 (pending 0, deferred 599, held 1)") {
		t.Fatalf("queue stats: exit %d\n%s%s", code, out, errs)
	}
}
