package relay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/spool"
)

// TestAdminListingOutlastsWriteTimeout: a listing that takes longer than
// the admin server's write timeout to reach a (slow) client arrives
// whole: the deadline moves on with each batch. A listing written in one
// piece was cut at the timeout.
func TestAdminListingOutlastsWriteTimeout(t *testing.T) {
	saved := adminLimits
	t.Cleanup(func() { adminLimits = saved })
	adminLimits.write = time.Second // 256 envelopes per deadline take ~75 ms here: a wide margin for a loaded machine

	dir := t.TempDir()
	cfg := dlvConfig(t, dir, schedHCL("", ""))
	cfg.Listen[0].Addr = fmt.Sprintf("127.0.0.1:%d", dlvFreePort(t))
	d := dlvStartRelay(t, cfg, Options{})
	const n = 4000
	later := time.Now().Add(24 * time.Hour)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				m := &spool.Message{From: "a@example.com", Held: true, NextAttempt: later,
					Recipients: []spool.Recipient{{Address: "b@example.org", Status: spool.Pending, LastError: strings.Repeat("x", 200)}}}
				if err := d.r.Spool().Enqueue(context.Background(), m, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	start := time.Now()
	got := 0
	err := adminapi.NewClient(cfg.Admin.Socket).QueueEach(context.Background(), 0, func(adminapi.Message) error {
		got++
		if got%10 == 0 {
			time.Sleep(3 * time.Millisecond) // a slow reader: 1.2 s in all
		}
		return nil
	})
	if err != nil || got != n {
		t.Fatalf("listing: %d of %d messages in %v, %v", got, n, time.Since(start), err)
	}
	if el := time.Since(start); el < adminLimits.write {
		t.Fatalf("the listing took %v, not longer than the write timeout: the test proves nothing", el)
	}
	// --limit reaches the daemon.
	got = 0
	err = adminapi.NewClient(cfg.Admin.Socket).QueueEach(context.Background(), 7, func(adminapi.Message) error { got++; return nil })
	if err != nil || got != 7 {
		t.Fatalf("limit 7: %d messages, %v", got, err)
	}
}
