package sendmailshim

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outbox-mta/outbox/maildrop"
)

// Users every Debian machine has: the shim runs as nobody, and the
// daemon's side of the maildrop as mail.
const (
	nobodyUID = 65534
	mailUID   = 8
)

// needRoot skips a test that must switch users, unless CI=true, where it
// fails instead: CI runs as root, so the test must run there.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test runs the shim as another user and needs root")
	}
	t.Skip("needs root to run the shim as another user")
}

// asUser returns a command that runs name with args as uid (its group
// the same number) under umask 077, the strictest a caller may have.
func asUser(uid int, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("/bin/sh", append([]string{"-c", `umask 077; exec "$0" "$@"`, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	cmd.Env = env
	cmd.Dir = "/"
	return cmd
}

// userE2E prepares the built shim and a configuration that an ordinary
// user can reach: world-traversable folders, a readable relay.hcl, and
// the maildrop folder as the daemon sets it up (mode 1733), owned by
// mail, standing in for the daemon's user.
func userE2E(t *testing.T) (bin, dir, cfg string) {
	t.Helper()
	needRoot(t)
	bin = shimBinary(t)
	dir = testDir(t)
	cfg = writeConfig(t, dir, "")
	for _, d := range []string{bin, dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	md := filepath.Join(dir, "var", "maildrop")
	if err := maildrop.Setup(md); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(md, mailUID, mailUID); err != nil {
		t.Fatal(err)
	}
	return bin, dir, cfg
}

// runShimAs runs the built shim as uid with umask 077 and returns its exit
// status and output.
func runShimAs(t *testing.T, uid int, bin, cfg, stdin string, args ...string) (int, string) {
	t.Helper()
	cmd := asUser(uid, []string{"OUTBOX_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}, filepath.Join(bin, "sendmail"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// TestDaemonDownOrdinaryUser: with the daemon down, an ordinary user with
// umask 077 gets exit 0, and the daemon's user (not the submitter, not
// root) can read the file it left.
func TestDaemonDownOrdinaryUser(t *testing.T) {
	bin, dir, cfg := userE2E(t)
	code, out := runShimAs(t, nobodyUID, bin, cfg, "To: root\nSubject: umask 077\n\nfrom nobody\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("shim as nobody, daemon down: exit %d: %s", code, out)
	}
	md := filepath.Join(dir, "var", "maildrop")
	names, err := maildrop.List(md)
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop = %v, %v; want one file", names, err)
	}
	p := filepath.Join(md, names[0])
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o644 || st.Sys().(*syscall.Stat_t).Uid != nobodyUID {
		t.Errorf("file mode %v owner %d, want -rw-r--r-- and nobody", st.Mode(), st.Sys().(*syscall.Stat_t).Uid)
	}
	// The daemon's user reads it.
	cat := asUser(mailUID, nil, "/bin/cat", p)
	data, err := cat.Output()
	if err != nil || !bytes.Contains(data, []byte("from nobody")) {
		t.Errorf("reading the file as the daemon's user: %v %q", err, data)
	}
}
