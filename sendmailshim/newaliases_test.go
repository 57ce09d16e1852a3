package sendmailshim

import (
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hupListener stands in for the daemon: this test process listens on the
// admin socket and records the SIGHUPs it gets.
func hupListener(t *testing.T, dir string) chan os.Signal {
	t.Helper()
	hup := make(chan os.Signal, 4)
	signal.Notify(hup, syscall.SIGHUP)
	t.Cleanup(func() { signal.Stop(hup) })
	sock := filepath.Join(dir, "var", "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// Connecting to a unix socket needs write permission on it.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return hup
}

// TestNewaliasesReload runs the newaliases binary against a process
// holding the admin socket: as the same user it sends SIGHUP; as an
// ordinary user (nobody) it may not, says so, and still exits 0 after
// checking the aliases.
func TestNewaliasesReload(t *testing.T) {
	needRoot(t)
	bin := shimBinary(t)
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	for _, p := range []string{bin, dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hup := hupListener(t, dir)
	newaliases := func(uid int) (string, int) {
		cmd := exec.Command(filepath.Join(bin, "newaliases"))
		cmd.Env = []string{"OUTBOX_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		if uid != os.Getuid() {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
		}
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}

	out, code := newaliases(os.Getuid())
	if code != 0 || !strings.Contains(out, "asked the daemon (pid "+strconv.Itoa(os.Getpid())+") to reload") {
		t.Errorf("newaliases as the daemon's user: exit %d %q", code, out)
	}
	select {
	case <-hup:
	case <-time.After(10 * time.Second):
		t.Fatal("no SIGHUP reached the daemon")
	}

	out, code = newaliases(65534)
	t.Logf("as nobody: %s", out)
	if code != 0 || !strings.Contains(out, cfg+": 2 aliases (aliases block)") ||
		!strings.Contains(out, "cannot ask the daemon to reload") || !strings.Contains(out, "systemctl reload outbox") {
		t.Errorf("newaliases as nobody: exit %d %q", code, out)
	}
	select {
	case <-hup:
		t.Error("nobody's newaliases signalled the daemon")
	default:
	}
}

// TestSignalDaemonDown: no socket means no daemon, which newaliases
// reports as such rather than as a failure.
func TestSignalDaemonDown(t *testing.T) {
	if _, err := signalDaemon(filepath.Join(testDir(t), "nosuch.sock")); err != errDaemonDown {
		t.Errorf("missing socket: %v, want errDaemonDown", err)
	}
}
