package sendmailshim

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestDaemonUpOrdinaryUser: with the daemon up, an ordinary user with
// umask 077 submits over the socket (mode 0666, as the daemon makes it)
// and nothing goes to the maildrop.
func TestDaemonUpOrdinaryUser(t *testing.T) {
	bin, dir, cfg := userE2E(t)
	sock := filepath.Join(dir, "var", "submit.sock")
	d := startDaemon(t, sock)
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	code, out := runShimAs(t, nobodyUID, bin, cfg, "To: root\nSubject: up\n\nfrom nobody\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("shim as nobody, daemon up: exit %d: %s", code, out)
	}
	if m := d.wait(t, 1); !strings.Contains(string(m.Data), "from nobody") || m.From != "nobody@shim.test" {
		t.Errorf("daemon got %q from %q", m.Data, m.From)
	}
	if names, _ := maildrop.List(filepath.Join(dir, "var", "maildrop")); len(names) != 0 {
		t.Errorf("maildrop holds %v with the daemon up", names)
	}
}

// TestDaemonDownOrdinaryUserBs: -bs with the daemon down, as an ordinary
// user: 250 after DATA only once the file is in the maildrop, and a
// message over the daemon's limits gets a permanent 552, not a 451 that
// would have the client retry for ever.
func TestDaemonDownOrdinaryUserBs(t *testing.T) {
	bin, dir, cfg := userE2E(t)
	cmd := asUser(nobodyUID, []string{"OUTBOX_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}, filepath.Join(bin, "sendmail"), "-bs")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	br := bufio.NewReader(stdout)
	// reply reads one reply, multi-line or not, and returns its code.
	reply := func() string {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading a reply: %v", err)
			}
			if len(line) >= 4 && line[3] == ' ' {
				return line[:3]
			}
		}
	}
	send := func(text, want string) {
		t.Helper()
		if _, err := io.WriteString(stdin, text); err != nil {
			t.Fatal(err)
		}
		if got := reply(); got != want {
			t.Fatalf("after %.40q: reply %s, want %s", text, got, want)
		}
	}
	if got := reply(); got != "220" {
		t.Fatalf("greeting %s", got)
	}
	send("EHLO client\r\n", "250")
	send("MAIL FROM:<app@example.org>\r\n", "250")
	send("RCPT TO:<root>\r\n", "250")
	send("DATA\r\n", "354")
	send("Subject: bs\r\n\r\nhello\r\n.\r\n", "250")
	send("MAIL FROM:<app@example.org>\r\n", "250")
	send("RCPT TO:<root>\r\n", "250")
	send("DATA\r\n", "354")
	// A header section over the daemon's 1 MiB bound as read.
	line := "X-Big: " + strings.Repeat("y", 900) + "\r\n"
	send(strings.Repeat(line, 1200)+"\r\nbody\r\n.\r\n", "552")
	// One 100 bytes under it as read, over it once the shim has added
	// Date, Message-ID and From and the daemon its Received field.
	send("MAIL FROM:<app@example.org>\r\n", "250")
	send("RCPT TO:<root>\r\n", "250")
	send("DATA\r\n", "354")
	hdr := strings.Repeat(line, 1153)
	hdr += "X-End: " + strings.Repeat("y", 1<<20-100-len(hdr)-len("X-End: \r\n")) + "\r\n"
	send(hdr+"\r\nbody\r\n.\r\n", "552")
	send("QUIT\r\n", "221")
	if names, _ := maildrop.List(filepath.Join(dir, "var", "maildrop")); len(names) != 1 {
		t.Errorf("maildrop holds %v, want the first message only", names)
	}
}

// TestMaildropAfterReading: when the daemon refuses for now only after the
// shim has read the message (here a 421 greeting), the maildrop file holds
// the whole message, the part read ahead included.
func TestMaildropAfterReading(t *testing.T) {
	bin, dir, cfg := userE2E(t)
	sock := filepath.Join(dir, "var", "submit.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	greetings := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			greetings++
			io.WriteString(c, "421 4.3.2 shutting down\r\n")
			c.Close()
		}
	}()
	body := strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz\n", 5000) // 190 KiB: more than the readers buffer
	code, out := runShimAs(t, nobodyUID, bin, cfg, "To: root\nSubject: handed over\n\n"+body+"the end\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	l.Close()
	<-done
	if greetings != 1 {
		t.Errorf("%d connections, want 1", greetings)
	}
	md := filepath.Join(dir, "var", "maildrop")
	names, err := maildrop.List(md)
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop = %v, %v; want one file", names, err)
	}
	data, err := os.ReadFile(filepath.Join(md, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	crlf := strings.ReplaceAll(body+"the end\n", "\n", "\r\n")
	if !bytes.Contains(data, []byte("Subject: handed over\r\n")) || !bytes.HasSuffix(data, []byte(crlf)) {
		t.Errorf("maildrop file (%d bytes) does not end with the whole body (%d bytes)", len(data), len(crlf))
	}
}

// TestHandOverEndsAtDotLine: a call sendmail hands to the whole shim (its
// relay.hcl named, the daemon down) ends when the whole shim has the
// message — at the "." line without -i — not when the caller closes its
// end of the input, which a caller waiting for the exit status first
// never does.
func TestHandOverEndsAtDotLine(t *testing.T) {
	bin, dir, cfg := userE2E(t)
	cmd := asUser(nobodyUID, []string{"OUTBOX_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}, filepath.Join(bin, "sendmail"), "root")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(in, "Subject: interactive\n\nhello\n.\n") // and the input stays open
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("the call did not end at the \".\" line while its input stayed open: %s", out.String())
	}
	names, err := maildrop.List(filepath.Join(dir, "var", "maildrop"))
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop = %v, %v; want the message", names, err)
	}
}
