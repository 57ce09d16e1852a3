package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestQueueLsColumns: in `outbox queue ls`, every message line keeps the
// header's columns, however long the recipients and errors under it are.
func TestQueueLsColumns(t *testing.T) {
	up, queue := holdUpstream(t)
	e := newEnv(t, up, queue)
	d := e.start()
	for i, rcpts := range [][]string{{"a@example.org"}, {"a-much-longer-recipient-address@example.org", "b@example.net"}} {
		c, err := dialSMTP(e.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("sender@example.com", rcpts, strings.NewReader(fmt.Sprintf("Subject: qa %d\r\n\r\nbody\r\n", i))); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// Both messages have had their first (failed) attempt.
	d.waitLog("deferred", 3, 20*time.Second)

	out, errOut, code := runOutbox(t, "queue", "ls", "--config", e.conf)
	if code != 0 {
		t.Fatalf("queue ls: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	header := lines[0]
	col := strings.Index(header, "ARRIVED")
	from := strings.Index(header, "FROM")
	if col < 0 || from < 0 {
		t.Fatalf("queue ls header %q lacks ARRIVED or FROM", header)
	}
	msgs := 0
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, " ") || !strings.Contains(l, "sender@example.com") {
			continue
		}
		msgs++
		if len(l) < col+19 || strings.Count(l[col:col+19], ":") != 2 || strings.Index(l, "sender@example.com") != from {
			t.Errorf("message line out of the header's columns:\n%s\n%s", header, l)
		}
	}
	if msgs != 2 {
		t.Errorf("queue ls shows %d message lines, want 2:\n%s", msgs, out)
	}
	if !strings.Contains(out, "connection refused") {
		t.Errorf("queue ls does not show the recipients' last error:\n%s", out)
	}
}
