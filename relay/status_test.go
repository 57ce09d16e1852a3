package relay

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
)

// TestStatus checks outbox status's figures on a relay whose upstream
// refuses connections: the upstream failing with its error, the queue
// with one deferred message, listeners, version and spool size.
func TestStatus(t *testing.T) {
	dir := t.TempDir()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(down.Addr().(*net.TCPAddr).Port)
	down.Close()
	listen := "127.0.0.1:" + strconv.Itoa(dlvFreePort(t))
	cfg := dlvConfig(t, dir, `
hostname = "relay.test"
listen { address = "`+listen+`" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
upstream "down" {
  host = "127.0.0.1"
  port = `+port+`
  tls  = "none"
}
upstream "capture" {
  type = "maildir"
  path = "md"
}
`)
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o750); err != nil {
		t.Fatal(err)
	}
	d := dlvStartRelay(t, cfg, Options{Now: time.Now, Version: "1.2.3"})
	dlvSend(t, d.addr, "app@example.org", []string{"bob@example.com"}, dlvBody)
	c := adminapi.NewClient(filepath.Join(dir, "var", "admin.sock"))
	var st adminapi.Status
	dlvWait(t, "the deferral in the status", func() bool {
		st, err = c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Queue.Deferred == 1
	})
	if st.Version != "1.2.3" || st.Uptime < 0 || len(st.Listeners) != 1 || st.Listeners[0] != listen || st.SpoolSize < 4096 {
		t.Errorf("status %+v", st)
	}
	if q := st.Queue; q.Messages != 1 || q.Pending != 0 || q.Held != 0 || q.OldestAge < 0 || q.OldestAge > 60 {
		t.Errorf("queue %+v, want 1 deferred message", q)
	}
	if len(st.Upstreams) != 2 {
		t.Fatalf("upstreams %+v", st.Upstreams)
	}
	u := st.Upstreams[0]
	if u.Name != "down" || u.Address != "127.0.0.1:"+port || u.State != "failing" || u.LastSuccess != nil ||
		u.LastErrorAt == nil || !strings.Contains(u.LastError, "connect") {
		t.Errorf("upstream down: %+v", u)
	}
	if m := st.Upstreams[1]; m.Name != "capture" || m.State != "unknown" || m.Address != "maildir:"+filepath.Join(dir, "md") {
		t.Errorf("upstream capture: %+v", m)
	}
}
