package main

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
)

func TestQueueLsFilter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	msgs := []adminapi.Message{
		{ID: "A", From: "app@example.org", Arrived: now.Add(-2 * time.Hour), Attempts: 3,
			Recipients: []adminapi.Recipient{{Address: "bob@example.com"}, {Address: "ann@Example.NET"}}},
		{ID: "B", From: "", Arrived: now.Add(-10 * time.Minute), Recipients: []adminapi.Recipient{{Address: "app@example.org"}}},
		{ID: "C", From: "cron@host.example.org", Arrived: now.Add(-3 * time.Hour), Held: true, Attempts: 1,
			Recipients: []adminapi.Recipient{{Address: "root@example.com"}}},
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "ABC"},
		{[]string{"--from", "app@example.org"}, "A"},
		{[]string{"--from", "@example.org"}, "A"}, // a domain, not its subdomains
		{[]string{"--from", "@host.example.org"}, "C"},
		{[]string{"--from", "<>"}, "B"},
		{[]string{"--to", "@example.net"}, "A"},
		{[]string{"--to", "ROOT@example.com"}, "C"},
		{[]string{"--older-than", "1h"}, "AC"},
		{[]string{"--state", "pending"}, "B"},
		{[]string{"--state", "deferred"}, "A"},
		{[]string{"--state", "held"}, "C"},
		{[]string{"--older-than", "1h", "--to", "@example.com", "--state", "deferred"}, "A"},
	} {
		fs := flag.NewFlagSet("ls", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := &lsFilter{now: now}
		f.flags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := f.check(); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		got := ""
		for _, m := range msgs {
			if f.match(m) {
				got += m.ID
			}
		}
		if got != tc.want {
			t.Errorf("%v: %s, want %s", tc.args, got, tc.want)
		}
	}
	bad := &lsFilter{state: "stuck"}
	if bad.check() == nil {
		t.Error("--state stuck accepted")
	}
}
