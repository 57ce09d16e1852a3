package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outbox-mta/outbox/maildrop"
	"github.com/outbox-mta/outbox/spool"
)

// TestMaildropKeepsFileOnStorageError: a maildrop file whose import
// fails for a local, temporary reason (the spool cannot write) stays in
// the maildrop for the next round; only a file that can never be accepted
// goes to rejected/. The shim already told its caller the mail was stored.
func TestMaildropKeepsFileOnStorageError(t *testing.T) {
	dir := t.TempDir()
	cfg := dlvConfig(t, dir, minimalHCL)
	if err := os.MkdirAll(cfg.Spool.Maildrop, 0o755); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp.Close()
	// A read-only spool stands for one that cannot write (a full disk).
	ro, err := spool.Open(cfg.Spool.Path, spool.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	clock := newDlvClock()
	r := &Relay{cfg: cfg, log: dlvLogger(t), now: clock.Now, spool: ro,
		in: testInbound(cfg, ro, dlvLogger(t), clock.Now)}
	r.sched = NewScheduler(ro, testLive(cfg, nil), r.log, clock.Now)
	name, err := maildrop.Write(cfg.Spool.Maildrop, &maildrop.Envelope{From: "app@example.org", Recipients: []string{"bob@example.com"}, UID: os.Getuid()},
		strings.NewReader("Subject: hi\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := r.importMaildrop(context.Background()); n != 0 {
		t.Fatalf("imported %d into a spool that cannot write", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.Spool.Maildrop, name)); err != nil {
		t.Fatalf("maildrop file gone after a temporary storage error: %v (rejected/ holds it: %v)", err,
			fileExists(filepath.Join(cfg.Spool.Maildrop, "rejected", name)))
	}
}

// fileExists reports whether path names an existing file.
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// minimalHCL is a configuration with one loopback listener, a maildrop and
// one plain upstream: enough for tests that build a Relay by hand.
const minimalHCL = `
hostname = "relay.test"
listen { address = "127.0.0.1:2525" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
`

// TestMaildropNotify: the -N value of a maildrop file is stored as the
// NOTIFY values the SMTP side stores; a value the shim would not have
// written gives the default notices, not none.
func TestMaildropNotify(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"failure,delay", "[FAILURE DELAY]"},
		{"Never", "[NEVER]"},
		{"", "[]"},
		{"sometimes", "[]"},
	} {
		r := mdRelay(t)
		mdWrite(t, r, &maildrop.Envelope{From: "app@example.org", Recipients: []string{"bob@example.com"}, Notify: tc.file}, "Subject: hi\r\n\r\nhello\r\n")
		if n := r.importMaildrop(context.Background()); n != 1 {
			t.Fatalf("%q: imported %d files, want 1", tc.file, n)
		}
		orig, _ := mdQueue(t, r)
		if len(orig) != 1 || len(orig[0].Recipients) != 1 {
			t.Fatalf("%q: queue holds %v", tc.file, orig)
		}
		if got := fmt.Sprint(orig[0].Recipients[0].Notify); got != tc.want {
			t.Errorf("-N %q stored as NOTIFY %s, want %s", tc.file, got, tc.want)
		}
	}
}
