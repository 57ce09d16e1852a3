package relay

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/maildrop"
)

// A reload reaches the maildrop importer too: a file dropped by the shim
// after the reload is imported with the new aliases.
func TestReloadAppliesToMaildropImport(t *testing.T) {
	dir := t.TempDir()
	withDrop := func(s rlSettings) string {
		return rlHCL(s) // the maildrop folder is var/maildrop, beside the spool
	}
	s := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "1MiB", root: "old@example.com"}
	rlRewrite(t, dir, withDrop(s))
	if err := maildrop.Setup(filepath.Join(dir, "var", "maildrop")); err != nil {
		t.Fatal(err)
	}
	d, _ := rlStart(t, dir, s, Options{MaildropInterval: 20 * time.Millisecond})
	s.root = "new@example.com"
	rlRewrite(t, dir, withDrop(s))
	if err := d.r.ReloadFile(); err != nil {
		t.Fatal(err)
	}
	if _, err := maildrop.Write(filepath.Join(dir, "var", "maildrop"),
		&maildrop.Envelope{From: "app@example.com", Recipients: []string{"root"}, UID: os.Getuid()},
		strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		list, err := d.r.Spool().List()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			if m.From == "app@example.com" {
				if got := m.Recipients[0].Address; got != "new@example.com" {
					t.Fatalf("imported after the reload to %s, want the new alias new@example.com", got)
				}
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the dropped file was not imported")
}
