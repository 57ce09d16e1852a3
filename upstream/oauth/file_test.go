package oauth

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWriteAtomicKeepsTheDaemonsOwnership: root running `outbox oauth
// login` or `outbox test-upstream` must leave a token file the daemon's
// user can still read and replace.
func TestWriteAtomicKeepsTheDaemonsOwnership(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs as root; this test needs it")
		}
		t.Skip("needs root to hand the folder to another user")
	}
	const uid, gid = 65534, 8 // nobody, group mail: the daemon's user in this test
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "oauth2-m365.json")
	check := func(what string) {
		t.Helper()
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: owner %d:%d mode %o, want %d:%d 600", what, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
		}
	}
	// A new file takes the folder's owner.
	if err := writeAtomic(file, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	check("new file")
	// A replaced file keeps its owner, even in a folder owned by another.
	if err := os.Chown(dir, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(file, []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	check("replaced file")
	if b, _ := os.ReadFile(file); string(b) != `{"a":1}` {
		t.Errorf("content %q", b)
	}
}
