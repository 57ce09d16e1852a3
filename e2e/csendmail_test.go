package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests here hold the C sendmail (cmd/sendmail-c) to its side of the
// sendmail protocol against a scripted daemon, and check its hand-overs
// with a stand-in outbox-sendmail that records how it was called. The
// daemon's side is tested in package sendmailshim and relay, and both
// together in TestCSendmailDaemon.

// cShim is a built C sendmail in a folder of its own, with a stand-in
// outbox-sendmail beside it.
type cShim struct {
	dir, bin string
}

// buildCShim compiles cmd/sendmail-c into a folder every user may enter,
// with an outbox-sendmail script beside it that writes its arguments and
// input into the folder and exits 42.
func buildCShim(t *testing.T) *cShim {
	t.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Fatal("no C compiler (.ci/run installs gcc):", err)
	}
	dir, err := os.MkdirTemp("/tmp", "outbox-csendmail")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sendmail")
	// The daemon's first answer is awaited 2 s here instead of 60 s, so
	// that a test can see the limit.
	out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-DANSWER_SEC=2", "-o", bin, "../cmd/sendmail-c/sendmail.c").CombinedOutput()
	if err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	stand := "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$0\" \"$@\" > \"$d/handed-args\"\ncat > \"$d/handed-input\"\nexit 42\n"
	if err := os.WriteFile(filepath.Join(dir, "outbox-sendmail"), []byte(stand), 0o755); err != nil {
		t.Fatal(err)
	}
	return &cShim{dir: dir, bin: bin}
}

// handed returns the arguments and input the stand-in outbox-sendmail got,
// or ok false when it did not run.
func (c *cShim) handed(t *testing.T) (args []string, input string, ok bool) {
	t.Helper()
	a, err := os.ReadFile(filepath.Join(c.dir, "handed-args"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	in, _ := os.ReadFile(filepath.Join(c.dir, "handed-input"))
	return strings.Split(strings.TrimSuffix(string(a), "\n"), "\n"), string(in), true
}

// cRun is one finished call of the C sendmail.
type cRun struct {
	code           int
	stdout, stderr string
}

// run calls the shim as name (a link to it when not "sendmail") with args,
// env and input, as the user nobody when asNobody.
func (c *cShim) run(t *testing.T, name string, env []string, input string, asNobody bool, args ...string) cRun {
	t.Helper()
	cmd := c.command(t, name, env, asNobody, args...)
	cmd.Stdin = strings.NewReader(input)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	return c.wait(t, cmd, &out, &errb, cmd.Start())
}

func (c *cShim) command(t *testing.T, name string, env []string, asNobody bool, args ...string) *exec.Cmd {
	t.Helper()
	path := c.bin
	if name != "sendmail" {
		path = filepath.Join(c.dir, name)
		if err := os.Symlink("sendmail", path); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	if asNobody {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	}
	return cmd
}

func (c *cShim) wait(t *testing.T, cmd *exec.Cmd, out, errb *bytes.Buffer, err error) cRun {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("sendmail did not finish within 20 s; stderr: %s", errb)
	}
	r := cRun{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// request is what a scripted daemon read of a request's header.
type request struct {
	args, env []string
}

// fakeDaemon serves one connection on a unix socket in dir with script,
// which gets the connection, a reader on it and the parsed request. It
// reports what went wrong on the returned channel, or "" when script
// returned "".
func fakeDaemon(t *testing.T, dir string, script func(c net.Conn, r *bufio.Reader, req request) string) (sock string, done <-chan string) {
	t.Helper()
	sock = filepath.Join(dir, "sendmail.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o666)
	t.Cleanup(func() { l.Close() })
	ch := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- "accept: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(15 * time.Second))
		r := bufio.NewReader(c)
		req, err := readRequest(r)
		if err != nil {
			ch <- "request: " + err.Error()
			return
		}
		ch <- script(c, r, req)
	}()
	return sock, ch
}

func readRequest(r *bufio.Reader) (request, error) {
	var req request
	line, err := r.ReadString('\n')
	if err != nil || line != "OUTBOX-SENDMAIL 1\n" {
		return req, fmt.Errorf("first line %q, %v", line, err)
	}
	for {
		kind, err := r.ReadByte()
		if err != nil {
			return req, err
		}
		if kind == '.' {
			if b, err := r.ReadByte(); err != nil || b != '\n' {
				return req, fmt.Errorf("end of header: %q %v", b, err)
			}
			return req, nil
		}
		n, err := r.ReadString(':')
		if err != nil {
			return req, err
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
		if err != nil {
			return req, err
		}
		v := make([]byte, size+1)
		if _, err := io.ReadFull(r, v); err != nil || v[size] != '\n' {
			return req, fmt.Errorf("item of %d bytes: %v", size, err)
		}
		switch kind {
		case 'A':
			req.args = append(req.args, string(v[:size]))
		case 'E':
			req.env = append(req.env, string(v[:size]))
		default:
			return req, fmt.Errorf("item kind %q", kind)
		}
	}
}

// readChunks reads the input's chunks up to the "0" one; max stops it
// early (0: no limit). It returns what it read and whether the end came.
func readChunks(r *bufio.Reader, max int) (string, bool, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return b.String(), false, err
		}
		n, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
		if err != nil {
			return b.String(), false, err
		}
		if n == 0 {
			return b.String(), true, nil
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(r, chunk); err != nil {
			return b.String(), false, err
		}
		b.Write(chunk)
		if max > 0 && b.Len() >= max {
			return b.String(), false, nil
		}
	}
}

func exitLine(code int, text string) string {
	return fmt.Sprintf("EXIT %d %d:%s\n", code, len(text), text)
}

// takeAll is a scripted daemon that answers GO, reads the input up to its
// end mark (into *body when body is not nil), then answers answer, or
// hangs up without one when answer is "".
func takeAll(body *string, answer string) func(net.Conn, *bufio.Reader, request) string {
	return func(conn net.Conn, r *bufio.Reader, _ request) string {
		conn.Write([]byte("GO\n"))
		got, end, err := readChunks(r, 0)
		if err != nil || !end {
			return fmt.Sprintf("chunks: end %v, %v", end, err)
		}
		if body != nil {
			*body = got
		}
		conn.Write([]byte(answer))
		return ""
	}
}

// takeSome is a scripted daemon that answers GO, reads at least n bytes
// of the input, then answers answer, or hangs up without one when answer
// is "".
func takeSome(n int, answer string) func(net.Conn, *bufio.Reader, request) string {
	return func(conn net.Conn, r *bufio.Reader, _ request) string {
		conn.Write([]byte("GO\n"))
		if _, _, err := readChunks(r, n); err != nil {
			return err.Error()
		}
		conn.Write([]byte(answer))
		return ""
	}
}

// The call goes whole to the daemon: arguments with argv[0], the three
// environment variables the shim reads and no others, the input in chunks;
// the daemon's status and text are the call's.
func TestCSendmailRequest(t *testing.T) {
	c := buildCShim(t)
	var got request
	var body string
	sock, done := fakeDaemon(t, c.dir, func(conn net.Conn, r *bufio.Reader, req request) string {
		got = req
		return takeAll(&body, exitLine(0, ""))(conn, r, req)
	})
	input := "To: bob@example.org\nSubject: s\n\n" + strings.Repeat("line of the body\n", 8000)
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock, "NAME=Ann Example", "LOGNAME=ann", "SECRET=x"}, input, true, "-t", "-i", "-f", "ann@example.org")
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 0 || res.stderr != "" {
		t.Fatalf("exit %d, stderr %q", res.code, res.stderr)
	}
	if want := []string{c.bin, "-t", "-i", "-f", "ann@example.org"}; strings.Join(got.args, "|") != strings.Join(want, "|") {
		t.Errorf("arguments %q, want %q", got.args, want)
	}
	if strings.Join(got.env, "|") != "NAME=Ann Example|LOGNAME=ann" {
		t.Errorf("environment sent %q, want NAME and LOGNAME only", got.env)
	}
	if body != input {
		t.Errorf("daemon got %d bytes of input, want the %d sent", len(body), len(input))
	}
	if _, _, ok := c.handed(t); ok {
		t.Error("the whole shim ran, though the daemon took the call")
	}
}

// A refusal's status and text reach the caller as the daemon gave them.
func TestCSendmailExitFromDaemon(t *testing.T) {
	c := buildCShim(t)
	sock, done := fakeDaemon(t, c.dir, takeAll(nil, exitLine(67, "sendmail: bob@x: no such user; nothing was sent\n")))
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, "Subject: s\n\nbody\n", false, "bob@x")
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 67 || res.stderr != "sendmail: bob@x: no such user; nothing was sent\n" {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
}

// Without -i a line "." ends the message: the shim sends it, reads no
// further and exits on the daemon's answer, though its caller has not
// closed the input. The pieces are written one by one, each once the
// previous one reached the daemon, so that ".\r" and its "\n" come in
// reads of their own.
func TestCSendmailDotEnds(t *testing.T) {
	c := buildCShim(t)
	chunks := make(chan string, 10)
	sock, done := fakeDaemon(t, c.dir, func(conn net.Conn, r *bufio.Reader, _ request) string {
		conn.Write([]byte("GO DOT\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return "chunks: " + err.Error()
			}
			n, err := strconv.Atoi(strings.TrimSuffix(line, "\n"))
			if err != nil {
				return "chunk length: " + err.Error()
			}
			if n == 0 {
				break
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return "chunk: " + err.Error()
			}
			chunks <- string(b)
		}
		conn.Write([]byte(exitLine(0, "")))
		return ""
	})
	cmd := c.command(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, false, "bob@x")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Start()
	// As an interactive caller writes; the input stays open.
	pieces := []string{"Subject: s\n\n", ".not the end\n", ".\r", "\n"}
	for _, p := range pieces {
		in.Write([]byte(p))
		select {
		case got := <-chunks:
			if got != p {
				t.Fatalf("daemon got the chunk %q, want %q", got, p)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q did not reach the daemon", p)
		}
	}
	res := c.wait(t, cmd, &out, &errb, err)
	in.Close()
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 0 {
		t.Errorf("exit %d (%s)", res.code, res.stderr)
	}
}

// The daemon may refuse before it has the whole input (too big): the shim
// stops sending and reports the refusal.
func TestCSendmailEarlyRefusal(t *testing.T) {
	c := buildCShim(t)
	sock, done := fakeDaemon(t, c.dir, takeSome(100_000, exitLine(69, "sendmail: message too big; nothing was sent\n")))
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, strings.Repeat("x", 8<<20), false, "-i", "bob@x")
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 69 || !strings.Contains(res.stderr, "too big") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
	if _, _, ok := c.handed(t); ok {
		t.Error("the whole shim ran after the daemon's refusal")
	}
}

// A daemon gone before the end of the input stored nothing: the whole
// shim gets the call, with all of the input.
func TestCSendmailLostBeforeEnd(t *testing.T) {
	c := buildCShim(t)
	sock, done := fakeDaemon(t, c.dir, takeSome(10_000, "")) // hangs up without an answer
	input := strings.Repeat("0123456789abcdef\n", 200_000)
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, input, true, "-i", "bob@x")
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	args, got, ok := c.handed(t)
	if !ok || res.code != 42 {
		t.Fatalf("exit %d (%s), whole shim ran: %v", res.code, res.stderr, ok)
	}
	if strings.Join(args[1:], " ") != "-i bob@x" || got != input {
		t.Errorf("whole shim got %q and %d bytes, want the call's arguments and its %d bytes", args, len(got), len(input))
	}
}

// A daemon gone after the whole input reached it may have stored the
// message: 75, and no second copy through the whole shim.
func TestCSendmailLostAfterEnd(t *testing.T) {
	c := buildCShim(t)
	sock, done := fakeDaemon(t, c.dir, takeAll(nil, "")) // hangs up without an answer
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, "Subject: s\n\nbody\n", false, "-i", "bob@x")
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 75 || !strings.Contains(res.stderr, "may have been stored") {
		t.Errorf("exit %d, stderr %q", res.code, res.stderr)
	}
	if _, _, ok := c.handed(t); ok {
		t.Error("the whole shim ran: the message could be stored twice")
	}
}

// Calls the daemon does not take go to the whole shim with the same
// arguments and untouched input: its HANDOVER answer, no daemon, mailq, a
// configuration named by the call.
func TestCSendmailHandsOver(t *testing.T) {
	for _, tc := range []struct {
		name, argv0 string
		env         []string
		args        []string
		daemon      bool // a scripted daemon answers HANDOVER
		closeOnly   bool // the daemon closes without an answer (over its cap)
	}{
		{name: "answer", argv0: "sendmail", args: []string{"-bs"}, daemon: true},
		{name: "closed", argv0: "sendmail", args: []string{"-t", "-i"}, daemon: true, closeOnly: true},
		{name: "no daemon", argv0: "sendmail", env: []string{"OUTBOX_SENDMAIL_SOCKET=/nonexistent/sendmail.sock"}, args: []string{"-t"}},
		{name: "mailq", argv0: "mailq", args: []string{"-v"}},
		{name: "OUTBOX_CONFIG", argv0: "sendmail", env: []string{"OUTBOX_CONFIG=/etc/x.hcl"}, args: []string{"bob@x"}},
		{name: "-C", argv0: "sendmail", args: []string{"-C/etc/x.hcl", "bob@x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := buildCShim(t)
			env := tc.env
			var done <-chan string
			if tc.daemon {
				var sock string
				sock, done = fakeDaemon(t, c.dir, func(conn net.Conn, _ *bufio.Reader, _ request) string {
					if !tc.closeOnly {
						conn.Write([]byte("HANDOVER\n"))
					}
					return ""
				})
				env = append(env, "OUTBOX_SENDMAIL_SOCKET="+sock)
			}
			res := c.run(t, tc.argv0, env, "the input\n", true, tc.args...)
			if done != nil {
				if msg := <-done; msg != "" {
					t.Fatal(msg)
				}
			}
			args, input, ok := c.handed(t)
			if !ok || res.code != 42 {
				t.Fatalf("exit %d (%s), whole shim ran: %v", res.code, res.stderr, ok)
			}
			if filepath.Base(args[0]) != "outbox-sendmail" || strings.Join(args[1:], " ") != strings.Join(tc.args, " ") || input != "the input\n" {
				t.Errorf("whole shim got %q with input %q", args, input)
			}
		})
	}
}

// A daemon that closes with the whole input unread, its end mark
// included, stored nothing (the kernel says so with ECONNRESET): the whole
// shim gets the message, not an exit 75 that may have the caller drop it.
func TestCSendmailResetAfterEnd(t *testing.T) {
	c := buildCShim(t)
	input := "Subject: s\n\nbody\n"
	want := len(fmt.Sprintf("%d\n", len(input))) + len(input) + len("0\n")
	sock, done := fakeDaemon(t, c.dir, func(conn net.Conn, _ *bufio.Reader, _ request) string {
		conn.Write([]byte("GO\n"))
		raw, err := conn.(*net.UnixConn).SyscallConn()
		if err != nil {
			return err.Error()
		}
		deadline := time.Now().Add(10 * time.Second)
		for queued := 0; queued < want; {
			if time.Now().After(deadline) {
				return fmt.Sprintf("%d bytes queued, want %d", queued, want)
			}
			raw.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
			time.Sleep(time.Millisecond)
		}
		return "" // closes with all of it unread
	})
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, input, false, "-i", "bob@x")
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	_, got, ok := c.handed(t)
	if !ok || res.code != 42 || got != input {
		t.Errorf("exit %d (%s); whole shim ran: %v, with %q", res.code, res.stderr, ok, got)
	}
}

// An input that breaks while the whole shim is being given it: the whole
// shim is stopped before it could take what it got for a whole message,
// and the call fails with 75.
func TestCSendmailInputErrorDuringHandOver(t *testing.T) {
	c := buildCShim(t)
	// It hangs up without an answer: the shim hands over.
	sock, done := fakeDaemon(t, c.dir, takeSome(1, ""))
	// Standard input is a TCP connection whose far end resets it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	far, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer far.Close()
	near, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := near.(*net.TCPConn).File()
	near.Close()
	if err != nil {
		t.Fatal(err)
	}
	far.Write([]byte("Subject: s\n\npart of the body\n"))
	cmd := c.command(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, false, "-i", "bob@x")
	cmd.Stdin = f
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Start()
	f.Close()
	waitFor(t, "the whole shim to be running", 10*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(c.dir, "handed-args"))
		return err == nil
	})
	far.(*net.TCPConn).SetLinger(0)
	far.Close()
	res := c.wait(t, cmd, &out, &errb, err)
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 75 || !strings.Contains(res.stderr, "cannot read the message") {
		t.Errorf("exit %d, stderr %q; want 75: the whole shim must not have ended the message", res.code, res.stderr)
	}
}

// A caller that ignores SIGCHLD (the setting survives exec) still gets the
// whole shim's status after a hand-over, not a 75 for a message stored.
func TestCSendmailSIGCHLDIgnored(t *testing.T) {
	c := buildCShim(t)
	sock, done := fakeDaemon(t, c.dir, takeSome(1, ""))
	// perl-base is in every Debian; shells keep SIGCHLD to themselves.
	cmd := exec.Command("perl", "-e", `$SIG{CHLD} = "IGNORE"; exec @ARGV or die`, c.bin, "-i", "bob@x")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "OUTBOX_SENDMAIL_SOCKET=" + sock}
	cmd.Stdin = strings.NewReader(strings.Repeat("a line of the body\n", 20000))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	res := c.wait(t, cmd, &out, &errb, cmd.Start())
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if _, _, ok := c.handed(t); !ok || res.code != 42 {
		t.Errorf("exit %d (%s), whole shim ran: %v; want its status, 42", res.code, res.stderr, ok)
	}
}

// A caller that closed standard input: the socket must not become fd 0.
func TestCSendmailClosedStdin(t *testing.T) {
	c := buildCShim(t)
	var body string
	sock, done := fakeDaemon(t, c.dir, takeAll(&body, exitLine(0, "")))
	cmd := exec.Command("/bin/sh", "-c", `exec "$0" "$@" <&-`, c.bin, "-i", "bob@x")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "OUTBOX_SENDMAIL_SOCKET=" + sock}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	res := c.wait(t, cmd, &out, &errb, cmd.Start())
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if res.code != 0 || body != "" {
		t.Errorf("exit %d (%s), daemon got %q; want an empty input and exit 0", res.code, res.stderr, body)
	}
}

// A socket nobody answers on (systemd holding it for a daemon that does
// not take it) must not hold the caller: after the first answer's limit
// the whole shim gets the call, its input untouched.
func TestCSendmailNoAnswer(t *testing.T) {
	c := buildCShim(t)
	release := make(chan struct{})
	defer close(release)
	sock, done := fakeDaemon(t, c.dir, func(net.Conn, *bufio.Reader, request) string {
		<-release // reads the request, never answers
		return ""
	})
	start := time.Now()
	res := c.run(t, "sendmail", []string{"OUTBOX_SENDMAIL_SOCKET=" + sock}, "the input\n", false, "-i", "bob@x")
	took := time.Since(start)
	_, input, ok := c.handed(t)
	if !ok || res.code != 42 || input != "the input\n" {
		t.Errorf("exit %d (%s), whole shim ran: %v with %q", res.code, res.stderr, ok, input)
	}
	if took < 2*time.Second || took > 15*time.Second {
		t.Errorf("handed over after %v, want the 2 s limit of this build", took)
	}
	release <- struct{}{}
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
}

// TestCSendmailDaemon runs the C sendmail as nobody against a real daemon
// run as its own user (mail stands in for outbox): a submission through
// the sendmail socket, stored with nobody as the submitter and completed
// as the shim completes mail; a refused recipient; mailq handed to the
// whole shim; then, the daemon stopped, the maildrop folder through the
// whole shim.
func TestCSendmailDaemon(t *testing.T) {
	needRoot(t, "to run the shim and the daemon as other users")
	const nobody, mail = 65534, 8
	shim := buildShim(t)
	if err := os.Chmod(filepath.Dir(outboxBin), 0o755); err != nil {
		t.Fatal(err)
	}
	mailq := filepath.Join(filepath.Dir(shim), "mailq")
	if err := os.Symlink("sendmail", mailq); err != nil && !errors.Is(err, os.ErrExist) {
		t.Fatal(err)
	}
	state, conf := packagedState(t, mail)
	md := filepath.Join(state, "maildrop")
	sock := filepath.Join(state, "sendmail.sock")
	as := func(uid int, prog string, args ...string) *exec.Cmd {
		cmd := exec.Command(prog, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}}
		cmd.Env = []string{"OUTBOX_CONFIG=" + conf, "OUTBOX_SENDMAIL_SOCKET=" + sock, "PATH=/usr/bin:/bin", "NAME=Nobody Example"}
		cmd.Dir = "/"
		return cmd
	}
	call := func(prog, input string, args ...string) (int, string) {
		cmd := as(nobody, prog, args...)
		cmd.Stdin = strings.NewReader(input)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return ee.ExitCode(), out.String()
		case err != nil:
			t.Fatal(err)
		}
		return 0, out.String()
	}

	log := &logBuf{}
	serve := as(mail, outboxBin, "serve", "--config", conf)
	serve.Stdout, serve.Stderr = log, log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serve.Wait(); close(done) }()
	stop := func() {
		serve.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			serve.Process.Kill()
			<-done
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("daemon log:\n%s", tail(log.String(), 40))
		}
	})
	waitFor(t, "the sendmail socket", 20*time.Second, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	if code, out := call(shim, "To: root\nBcc: hidden@example.org\nSubject: through the sendmail socket\n\nbody\n", "-t", "-i"); code != 0 || out != "" {
		t.Fatalf("sendmail -t -i as nobody: exit %d: %s", code, out)
	}
	var msg []byte
	waitFor(t, "the message in the Maildir", 20*time.Second, func() bool {
		files, _ := filepath.Glob(filepath.Join(state, "md", "new", "*"))
		if len(files) == 0 {
			return false
		}
		msg, _ = os.ReadFile(files[0])
		return true
	})
	for _, want := range []string{"Subject: through the sendmail socket", "from userid 65534 (nobody)", "From: \"Nobody Example\" <nobody@relay.test>", "Date: ", "Message-ID: ", "X-Envelope-To: <hidden@example.org>"} {
		if !bytes.Contains(msg, []byte(want)) {
			t.Errorf("delivered message lacks %q:\n%s", want, msg)
		}
	}
	if bytes.Contains(msg, []byte("Bcc:")) {
		t.Errorf("the Bcc field was delivered:\n%s", msg)
	}
	// It came through the sendmail socket, not a hand-over to the whole
	// shim (which would have used the SMTP socket).
	if m := adminGet(t, filepath.Join(state, "admin.sock"), "/metrics"); !strings.Contains(m, `outbox_accepted_messages_total{source="sendmail"} 1`) {
		t.Errorf("not counted as a sendmail-socket submission:\n%s", grepLines(m, "accepted"))
	}

	code, out := call(shim, "Subject: s\n\nbody\n", "-i", "nosuchname")
	if code != 67 || !strings.Contains(out, "nosuchname") || !strings.Contains(out, "nothing was sent") {
		t.Errorf("an unknown local name: exit %d: %q, want 67 naming it", code, out)
	}
	if code, out := call(mailq, ""); code != 0 {
		t.Errorf("mailq as nobody: exit %d: %s", code, out)
	}

	stop()
	if code, out := call(shim, "To: root\nSubject: while the daemon is down\n\nbody\n", "-t", "-i"); code != 0 {
		t.Fatalf("sendmail with the daemon down: exit %d: %s", code, out)
	}
	names, _ := filepath.Glob(filepath.Join(md, "[0-9]*"))
	if len(names) != 1 {
		t.Errorf("maildrop holds %v, want the message sent while the daemon was down", names)
	}
}

// adminGet sends an HTTP/1.0 GET to the admin socket and returns the body.
func adminGet(t *testing.T, sock, path string) string {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: outbox\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	return body
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
