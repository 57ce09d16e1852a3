package sendmailshim

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestMailqRestricted: when the daemon refuses the listing to the caller
// (admin.queue_list = "privileged"), mailq says so and exits 77 as
// `outbox queue ls` does, not 69 ("unavailable").
func TestMailqRestricted(t *testing.T) {
	needRoot(t)
	bin := shimBinary(t)
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	for _, p := range []string{bin, dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "var", "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "permission denied: the queue listing is for root and the outbox user (admin.queue_list)", http.StatusForbidden)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	cmd := exec.Command(filepath.Join(bin, "mailq"))
	cmd.Env = []string{"OUTBOX_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != ExitNoPerm || !strings.Contains(string(out), "permission denied") {
		t.Errorf("mailq as nobody, listing refused: exit %d %q; want %d and the daemon's reason", code, out, ExitNoPerm)
	}
}
