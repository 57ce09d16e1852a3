package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/spool"
)

// queue ls --json streams what the filters let through, at most --limit
// of it, and explains a known provider reply beside last_error.
func TestQueueLsJSONFilterLimitHint(t *testing.T) {
	cfg := inWriteConfig(t, inValid)
	dbPath := filepath.Join(filepath.Dir(cfg), "var", "spool.db")
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o750); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(dbPath, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var ids []string
	for i, to := range []string{"a@example.com", "b@example.net", "c@example.net"} {
		m := &spool.Message{ID: spool.NewID(now.Add(time.Duration(i) * time.Millisecond)), From: "app@example.org",
			Recipients: []spool.Recipient{{Address: to, Status: spool.Pending}}, Arrived: now}
		if err := sp.Enqueue(context.Background(), m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := sp.Update(m.ID, func(cur *spool.Message) error {
			cur.Attempts = 1
			cur.Recipients[0].LastError = "550 5.7.30 Basic authentication is not supported for Client Submission"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	sp.Close()

	code, out, errs := inRun(t, "queue", "ls", "--json", "--to", "@example.net", "--limit", "1", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var list []struct {
		ID         string `json:"id"`
		Recipients []struct {
			Address, LastError string
			Hint               string `json:"hint"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].ID != ids[1] {
		t.Fatalf("listing %+v, want only %s (the first to example.net)", list, ids[1])
	}
	if h := list[0].Recipients[0].Hint; !strings.Contains(strings.ToLower(h), "oauth2") {
		t.Errorf("hint = %q, want the explanation of 5.7.30 (configure oauth2)", h)
	}
}
