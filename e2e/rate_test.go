package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRateLimitSurvivesRestart: with rate = "2/hour", two messages go
// out; after a restart a third waits, deferred by the limit, instead of
// the restart granting a fresh quota.
func TestRateLimitSurvivesRestart(t *testing.T) {
	sk := newSink(t, 0)
	close(sk.gate)
	e := newEnv(t, fmt.Sprintf(`upstream "capped" {
  host = "127.0.0.1"
  port = %d
  tls  = "none"
  rate = "2/hour"
}`, sk.addr.Port), `queue {
  retry_initial = "1h"
}`)
	sendOne := func(i int) {
		t.Helper()
		c, err := dialSMTP(e.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := send(c, newMessage("rate", i, 1024)); err != nil {
			t.Fatal(err)
		}
	}
	d := e.start()
	sendOne(0)
	sendOne(1)
	waitFor(t, "two deliveries", 20*time.Second, func() bool { return sk.count() == 2 })
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}

	d = e.start()
	sendOne(2)
	waitFor(t, "the third message deferred by the rate limit", 20*time.Second, func() bool {
		out, err := exec.Command(outboxBin, "queue", "ls", "--json", "--config", e.conf).Output()
		if err != nil {
			return false
		}
		var list []struct {
			Recipients []struct {
				LastError string `json:"last_error"`
			} `json:"recipients"`
		}
		json.Unmarshal(out, &list)
		return len(list) == 1 && strings.Contains(list[0].Recipients[0].LastError, "rate limit")
	})
	if n := sk.count(); n != 2 {
		t.Fatalf("the upstream got %d messages, want 2 within the hour", n)
	}
	d.signal(syscall.SIGTERM)
	d.wait(30 * time.Second)
}
