package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/upstream"
)

// syncBuffer is a log destination tests read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// parseLogfmt splits one line of slog's text format into its keys.
func parseLogfmt(t *testing.T, line string) map[string]any {
	t.Helper()
	out := map[string]any{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not key=value: %q", line)
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("bad quoting in %q: %v", rest, err)
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		out[key] = val
		line = rest
	}
	return out
}

// logLines returns the records of the log whose msg is one of msgs.
func logLines(t *testing.T, text, format string, msgs ...string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var rec map[string]any
		if format == "json" {
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Fatalf("not one JSON object per line: %q: %v", sc.Text(), err)
			}
		} else {
			rec = parseLogfmt(t, sc.Text())
		}
		for _, m := range msgs {
			if rec["msg"] == m {
				out = append(out, rec)
			}
		}
	}
	return out
}

// TestDeliveryLogLines checks the contract of the delivery log: one line
// per recipient per attempt with id, to, relay, delay, attempt, dsn,
// status and reply, in both log formats.
func TestDeliveryLogLines(t *testing.T) {
	const gsmtp = "OK 1732000000 abc123 - gsmtp"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			h := schedStart(t, "", "")
			var buf syncBuffer
			if format == "json" {
				h.s.log = slog.New(slog.NewJSONHandler(&buf, nil))
			} else {
				h.s.log = slog.New(slog.NewTextHandler(&buf, nil))
			}
			h.s.metrics = newMetrics(h.sp, func() map[string]upstream.Target { return nil })
			a := h.targets["a"]
			a.on("ok@example.com", upstream.Result{Class: upstream.Sent, Code: 250, Enhanced: "2.0.0", Message: gsmtp})
			a.on("later@example.com", dlvDeferred451, dlvDeferred451)
			a.on("bad@example.com", dlvFailed550)
			id := h.enqueue("app@example.org", dlvRcpt("ok@example.com"), dlvRcpt("later@example.com"), dlvRcpt("bad@example.com"))
			// The first attempt happens 90 s after arrival.
			h.clock.Advance(90 * time.Second)
			h.run()
			dlvWait(t, "the first round's lines", func() bool {
				return len(logLines(t, buf.String(), format, "deferred", "bounced")) == 2
			})
			// Past the lifetime (2h), the deferred recipient expires.
			h.advance(3 * time.Hour)
			dlvWait(t, "the expiry line", func() bool {
				return len(logLines(t, buf.String(), format, "expired")) == 1
			})

			fams, err := h.s.metrics.reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]float64{}
			for _, f := range fams {
				if f.GetName() == "outbox_bounced_recipients_total" {
					for _, m := range f.GetMetric() {
						got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
			if got["bounced"] != 1 || got["expired"] != 1 {
				t.Errorf("outbox_bounced_recipients_total %v, want bounced 1 and expired 1", got)
			}
			want := map[string]map[string]string{
				"ok@example.com":    {"status": "sent", "dsn": "2.0.0", "reply": "250 2.0.0 " + gsmtp, "attempt": "1", "delay": "90"},
				"later@example.com": {"status": "deferred", "dsn": "4.3.0", "reply": "451 4.3.0 try again later", "attempt": "1", "delay": "90"},
				"bad@example.com":   {"status": "bounced", "dsn": "5.1.1", "reply": "550 5.1.1 no such user", "attempt": "1", "delay": "90"},
			}
			// The bounce to app@example.org has lines of its own.
			var lines []map[string]any
			for _, l := range logLines(t, buf.String(), format, "delivered", "deferred", "bounced", "expired") {
				if l["id"] == id {
					lines = append(lines, l)
				}
			}
			if len(lines) != 4 {
				t.Fatalf("%d delivery lines, want 4 (3 recipients, then the retry that expires):\n%s", len(lines), buf.String())
			}
			seen := map[string]int{}
			for _, l := range lines {
				for _, k := range []string{"id", "to", "relay", "delay", "attempt", "dsn", "status", "reply"} {
					if _, ok := l[k]; !ok {
						t.Errorf("line without %s: %v", k, l)
					}
				}
				if l["relay"] != "a[a.test:25]" {
					t.Errorf("relay %v, want a[a.test:25] (the upstream's name, host and port)", l["relay"])
				}
				to := fmt.Sprint(l["to"])
				seen[to]++
				w := want[to]
				if seen[to] > 1 {
					// The retry after the lifetime: the upstream defers again
					// and the recipient expires with 4.4.7.
					w = map[string]string{"status": "expired", "dsn": "4.4.7", "reply": "451 4.3.0 try again later", "attempt": "2", "delay": "10890"}
				}
				for k, v := range w {
					if got := fmt.Sprint(l[k]); got != v {
						t.Errorf("%s (line %d): %s = %q, want %q", to, seen[to], k, got, v)
					}
				}
			}
		})
	}
}
