package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
)

func TestPrintStatus(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	until := now.Add(10 * time.Minute)
	st := adminapi.Status{
		Version: "1.2.3", Started: now.Add(-26 * time.Hour), Uptime: (26 * time.Hour).Seconds(),
		Listeners: []string{"127.0.0.1:25", "unix:/run/outbox/submit.sock"},
		Upstreams: []adminapi.UpstreamStatus{
			{Name: "gmail", Address: "smtp.gmail.com:587", State: "paused", Paused: true, PausedUntil: &until,
				PauseReason: "421 4.7.0 try later", LastSuccess: ago(2 * time.Hour), LastError: "421 4.7.0 try later", LastErrorAt: ago(time.Minute),
				TokenExpiry: &until},
			{Name: "capture", Address: "maildir:/tmp/md", State: "unknown"},
		},
		Queue:     adminapi.QueueStatus{Messages: 3, Pending: 1, Deferred: 2, OldestAge: 7260},
		SpoolSize: 3 << 20,
	}
	var b bytes.Buffer
	printStatus(&b, st, now)
	out := b.String()
	for _, want := range []string{
		"outbox 1.2.3, up 26h0m0s",
		"listening: 127.0.0.1:25, unix:/run/outbox/submit.sock",
		"queue:     3 messages (1 pending, 2 deferred, 0 held), oldest 2h1m0s old",
		"spool:     3.0 MiB",
		"  gmail (smtp.gmail.com:587): paused",
		": 421 4.7.0 try later",
		"last success: 2h0m0s ago",
		"last error:   1m0s ago: 421 4.7.0 try later",
		"token expires:",
		"  capture (maildir:/tmp/md): unknown",
		"last success: never",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
