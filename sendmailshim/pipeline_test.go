package sendmailshim

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// scripted accepts one connection on sock and greets it as the daemon
// would (after EHLO when greetLate is set), answers EHLO with the
// extensions ehlo lists, then leaves the dialogue to script. A client
// that does not start with EHLO is reported on done.
func scripted(t *testing.T, sock string, greetLate bool, ehlo string, done chan<- string, script func(c net.Conn, r *bufio.Reader)) {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		if !greetLate {
			c.Write([]byte("220 scripted ESMTP\r\n"))
		}
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "EHLO") {
			done <- "no EHLO: " + line
			return
		}
		if greetLate {
			c.Write([]byte("220 scripted ESMTP\r\n"))
		}
		c.Write([]byte(ehlo))
		script(c, r)
	}()
}

// scriptedDaemon answers on sock as a daemon advertising PIPELINING
// would, but reads the whole envelope (MAIL, each RCPT, DATA) before it
// replies to any of it, so a client that waits for each reply before
// the next command hangs there until the deadline. rcptReply gives the
// reply to each RCPT. It sends what happened on the returned channel:
// "stored" after the final dot, "hangup" when the client closed before it.
func scriptedDaemon(t *testing.T, sock string, rcptReply func(rcpt string) string) <-chan string {
	t.Helper()
	return scriptedDaemonGreeting(t, sock, rcptReply, false)
}

// scriptedDaemonGreeting is scriptedDaemon; with greetLate it sends its
// greeting only once EHLO has arrived, so that a client that waits for
// the greeting before saying EHLO hangs until the deadline.
func scriptedDaemonGreeting(t *testing.T, sock string, rcptReply func(rcpt string) string, greetLate bool) <-chan string {
	t.Helper()
	done := make(chan string, 1)
	scripted(t, sock, greetLate, "250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 DSN\r\n", done, func(c net.Conn, r *bufio.Reader) {
		var replies []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- "envelope cut: " + err.Error()
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case strings.HasPrefix(line, "MAIL FROM:"):
				replies = append(replies, "250 2.1.0 ok")
			case strings.HasPrefix(line, "RCPT TO:<"):
				rcpt := strings.TrimPrefix(line, "RCPT TO:<")
				rcpt = rcpt[:strings.IndexByte(rcpt, '>')]
				replies = append(replies, rcptReply(rcpt))
			case line == "DATA":
				replies = append(replies, "354 go ahead")
			default:
				done <- "unexpected " + line
				return
			}
			if line == "DATA" {
				break
			}
		}
		c.Write([]byte(strings.Join(replies, "\r\n") + "\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- "hangup"
				return
			}
			if line == ".\r\n" {
				c.Write([]byte("250 2.0.0 queued\r\n"))
				done <- "stored"
				return
			}
		}
	})
	return done
}

func TestSubmitPipelines(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	done := scriptedDaemon(t, filepath.Join(dir, "var", "submit.sock"), func(string) string { return "250 2.1.5 ok" })
	code, _, stderr := run(t, cfg, "To: a@example.com, b@example.com\nSubject: s\n\nbody\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := <-done; got != "stored" {
		t.Errorf("daemon saw %q, want the pipelined envelope and a stored message", got)
	}
}

// A recipient refused inside a pipelined envelope must end the call with
// nothing stored, though DATA was accepted for the other recipient.
func TestSubmitPipelinedRcptRefused(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	done := scriptedDaemon(t, filepath.Join(dir, "var", "submit.sock"), func(rcpt string) string {
		if rcpt == "bad@example.com" {
			return "550 5.1.1 no such user"
		}
		return "250 2.1.5 ok"
	})
	code, _, stderr := run(t, cfg, "To: good@example.com, bad@example.com\nSubject: s\n\nbody\n", "-t", "-i")
	if code != ExitNoUser {
		t.Errorf("exit %d, want %d: %s", code, ExitNoUser, stderr)
	}
	if !strings.Contains(stderr, "bad@example.com") {
		t.Errorf("stderr %q does not name the refused recipient", stderr)
	}
	if got := <-done; got != "hangup" {
		t.Errorf("daemon saw %q, want a hang-up before the final dot", got)
	}
}

// -B's body type reaches the daemon on the socket path too, as it does in
// a maildrop file.
func TestSubmitBodyType(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	if code, _, stderr := run(t, cfg, "Subject: x\n\nplain\n", "-B", "7BIT", "-i", "x@example.com"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if m := d.wait(t, 1); m.MailOpts.Body != "7BIT" {
		t.Errorf("BODY = %q, want 7BIT as -B asked", m.MailOpts.Body)
	}
}

// EHLO goes out without waiting for the greeting: one round trip less.
// (Two recipients: the envelope then goes with DATA.)
func TestSubmitEHLOBeforeGreeting(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	done := scriptedDaemonGreeting(t, filepath.Join(dir, "var", "submit.sock"), func(string) string { return "250 2.1.5 ok" }, true)
	code, _, stderr := run(t, cfg, "To: a@example.com, b@example.com\nSubject: s\n\nbody\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := <-done; got != "stored" {
		t.Errorf("daemon saw %q, want EHLO before its greeting and a stored message", got)
	}
}

// chunkingDaemon answers on sock as a daemon advertising PIPELINING and
// CHUNKING would, but reads MAIL, RCPT and BDAT with its chunk before it
// replies to any of them, so that a client waiting for a reply before its
// next command hangs until the deadline. rcptReply gives the RCPT reply.
// It sends the message it stored on the returned channel, or what went
// wrong.
func chunkingDaemon(t *testing.T, sock string, rcptReply string) <-chan string {
	t.Helper()
	done := make(chan string, 1)
	scripted(t, sock, false, "250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING\r\n", done, func(c net.Conn, r *bufio.Reader) {
		var cmds []string
		for i := 0; i < 3; i++ {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- "envelope cut: " + err.Error()
				return
			}
			cmds = append(cmds, strings.TrimRight(line, "\r\n"))
		}
		var size int
		if !strings.HasPrefix(cmds[0], "MAIL FROM:") || !strings.HasPrefix(cmds[1], "RCPT TO:") {
			done <- "unexpected " + strings.Join(cmds, " | ")
			return
		}
		if _, err := fmt.Sscanf(cmds[2], "BDAT %d LAST", &size); err != nil {
			done <- "unexpected " + cmds[2]
			return
		}
		chunk := make([]byte, size)
		if _, err := io.ReadFull(r, chunk); err != nil {
			done <- "chunk cut: " + err.Error()
			return
		}
		if !strings.HasPrefix(rcptReply, "250") {
			c.Write([]byte("250 2.1.0 ok\r\n" + rcptReply + "\r\n554 5.5.1 no valid recipients\r\n"))
			done <- "refused"
			return
		}
		c.Write([]byte("250 2.1.0 ok\r\n" + rcptReply + "\r\n250 2.0.0 queued\r\n"))
		done <- string(chunk)
	})
	return done
}

// A message to one recipient goes in one write with BDAT: the daemon
// replies to nothing before it has the whole message.
func TestSubmitWholeWithBDAT(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	done := chunkingDaemon(t, filepath.Join(dir, "var", "submit.sock"), "250 2.1.5 ok")
	code, _, stderr := run(t, cfg, "To: a@example.com\nSubject: whole\n\nline one\nline two\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := <-done
	if !strings.Contains(got, "Subject: whole\r\n") || !strings.HasSuffix(got, "\r\n\r\nline one\r\nline two\r\n") {
		t.Errorf("daemon stored %q", got)
	}
}

// The recipient refused: the daemon refuses BDAT too and stores nothing,
// and the call fails as it does when DATA is never finished.
func TestSubmitWholeRcptRefused(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	done := chunkingDaemon(t, filepath.Join(dir, "var", "submit.sock"), "550 5.1.1 no such user")
	code, _, stderr := run(t, cfg, "To: bad@example.com\nSubject: s\n\nbody\n", "-t", "-i")
	if code != ExitNoUser || !strings.Contains(stderr, "bad@example.com") || !strings.Contains(stderr, "nothing was sent") {
		t.Errorf("exit %d, want %d naming the recipient: %s", code, ExitNoUser, stderr)
	}
	if got := <-done; got != "refused" {
		t.Errorf("daemon: %q", got)
	}
}

// A message larger than bdatMax streams with DATA, whole.
func TestSubmitLargeStreams(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	body := strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz\n", bdatMax/38+100)
	if code, _, stderr := run(t, cfg, "Subject: large\n\n"+body, "-i", "x@example.com"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if m := d.wait(t, 1); !strings.HasSuffix(string(m.Data), strings.ReplaceAll(body, "\n", "\r\n")) {
		t.Errorf("stored %d bytes, not ending with the %d-byte body", len(m.Data), len(body))
	}
}

// The daemon goes away after reading MAIL (a restart), before it could
// take the BDAT chunk: the message goes to the maildrop folder and the
// call succeeds, as it does on the DATA path.
func TestSubmitWholeDaemonGoneFallsBack(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	done := make(chan string, 1)
	scripted(t, filepath.Join(dir, "var", "submit.sock"), false, "250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING\r\n", done,
		func(c net.Conn, r *bufio.Reader) { r.ReadString('\n') }) // MAIL, then gone
	code, _, stderr := run(t, cfg, "To: a@example.com\nSubject: restart\n\nbody\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	names, err := filepath.Glob(filepath.Join(dir, "var", "maildrop", "*"))
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop holds %v, want the message", names)
	}
}

// serveOneWrite serves c, which must carry EHLO, MAIL, RCPT and BDAT LAST
// with its chunk before the daemon has said anything, not even its
// greeting; then it gives the replies, the EHLO reply naming ehloExt, and
// BDAT's reply bdatReply. It returns the MAIL command and the chunk it
// stored, "refused", or what went wrong.
func serveOneWrite(c net.Conn, ehloExt []string, bdatReply string) string {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var cmds []string
	for i := 0; i < 4; i++ {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Sprintf("commands cut after %q: %v", cmds, err)
		}
		cmds = append(cmds, strings.TrimRight(line, "\r\n"))
	}
	var size int
	if cmds[0] != "EHLO localhost" || !strings.HasPrefix(cmds[1], "MAIL FROM:<") || !strings.HasPrefix(cmds[2], "RCPT TO:<") {
		return "unexpected " + strings.Join(cmds, " | ")
	}
	if _, err := fmt.Sscanf(cmds[3], "BDAT %d LAST", &size); err != nil {
		return "unexpected " + cmds[3]
	}
	chunk := make([]byte, size)
	if _, err := io.ReadFull(r, chunk); err != nil {
		return "chunk cut: " + err.Error()
	}
	ehlo := "250-scripted\r\n"
	for _, e := range ehloExt {
		ehlo += "250-" + e + "\r\n"
	}
	c.Write([]byte("220 scripted ESMTP\r\n" + ehlo + "250 SIZE\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n" + bdatReply + "\r\n"))
	if !strings.HasPrefix(bdatReply, "250") {
		return "refused"
	}
	return cmds[1] + " " + string(chunk)
}

// listenUnix listens on sock until the test ends.
func listenUnix(t *testing.T, sock string) net.Listener {
	t.Helper()
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// A message to one recipient takes one round trip from connect: the
// daemon hears the whole transaction before it has said a word.
func TestSubmitWholeOneWrite(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	l := listenUnix(t, filepath.Join(dir, "var", "submit.sock"))
	done := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err.Error()
			return
		}
		done <- serveOneWrite(c, []string{"PIPELINING", "8BITMIME", "CHUNKING", "SMTPUTF8", "DSN"}, "250 2.0.0 queued")
	}()
	code, _, stderr := run(t, cfg, "To: a@example.com\nSubject: one\n\nbody\n", "-t", "-i", "-N", "failure")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := <-done; !strings.Contains(got, "BODY=8BITMIME") || !strings.Contains(got, "Subject: one\r\n") {
		t.Errorf("daemon stored %q", got)
	}
}

// A daemon that does not name an extension the single write used, and
// refuses, gets the message again the ordinary way on a new connection:
// EHLO first, then DATA, as its EHLO reply allows.
func TestSubmitWholeNotAsAssumed(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	l := listenUnix(t, filepath.Join(dir, "var", "submit.sock"))
	done := make(chan string, 2)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err.Error()
			return
		}
		done <- serveOneWrite(c, []string{"PIPELINING", "8BITMIME"}, "500 5.5.1 command not recognized")
		c, err = l.Accept()
		if err != nil {
			done <- err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		c.Write([]byte("220 scripted ESMTP\r\n"))
		var got []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				done <- fmt.Sprintf("second connection cut after %q: %v", got, err)
				return
			}
			line = strings.TrimRight(line, "\r\n")
			got = append(got, line)
			switch {
			case line == "EHLO localhost":
				c.Write([]byte("250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n"))
			case line == "DATA":
				c.Write([]byte("354 go ahead\r\n"))
			case line == ".":
				c.Write([]byte("250 2.0.0 queued\r\n"))
				done <- strings.Join(got, " | ")
				return
			case strings.HasPrefix(line, "MAIL FROM:") || strings.HasPrefix(line, "RCPT TO:"):
				c.Write([]byte("250 ok\r\n"))
			}
		}
	}()
	code, _, stderr := run(t, cfg, "To: a@example.com\nSubject: again\n\nbody\n", "-t", "-i")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got := <-done; got != "refused" {
		t.Fatalf("first connection: %q", got)
	}
	got := <-done
	if !strings.HasPrefix(got, "EHLO localhost | MAIL FROM:<") || !strings.Contains(got, " | DATA | ") || !strings.Contains(got, "Subject: again") {
		t.Errorf("second connection: %q", got)
	}
}
