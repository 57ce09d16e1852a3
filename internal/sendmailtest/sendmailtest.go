// Package sendmailtest is a client of the daemon's sendmail protocol for
// tests: the part the C sendmail (cmd/sendmail-c) plays, in Go. The
// protocol is described in package sendmailshim (serve.go).
package sendmailtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Call is one call. After GO DOT it sends the input up to and including
// its first lone "." line, as the C client does, unless Whole is set.
type Call struct {
	Argv  []string
	Env   []string
	Input string
	// Raw, when set, is sent as the request header instead of one built
	// from Argv and Env.
	Raw string
	// Whole sends all of Input after GO DOT.
	Whole bool
	// Cut > 0 sends only that many bytes of the input, then closes
	// without the end mark.
	Cut int
	// Chunk is the chunk size; 0: 64 KiB, as the C client reads.
	Chunk int
}

// Reply is the daemon's first answer ("" when it closed without one), the
// EXIT's code and text, and whether the whole input went out.
type Reply struct {
	Answer  string
	Code    int
	Text    string
	SentAll bool
}

// Header is the request header of c.
func (c Call) Header() string {
	if c.Raw != "" {
		return c.Raw
	}
	var b strings.Builder
	b.WriteString("OUTBOX-SENDMAIL 1\n")
	for _, a := range c.Argv {
		fmt.Fprintf(&b, "A%d:%s\n", len(a), a)
	}
	for _, e := range c.Env {
		fmt.Fprintf(&b, "E%d:%s\n", len(e), e)
	}
	b.WriteString(".\n")
	return b.String()
}

// Run makes the call on the socket at sock, failing t when the daemon's
// answer after the input is not an EXIT.
func (c Call) Run(t testing.TB, sock string) Reply {
	t.Helper()
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	rep, err := c.Talk(conn)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// Talk makes the call on conn. Its error is an answer after the input that
// is not an EXIT.
func (c Call) Talk(conn io.ReadWriteCloser) (Reply, error) {
	// A daemon that refuses part way, or closes at once (over its cap),
	// may fail the write; what it answered, if anything, still counts.
	io.WriteString(conn, c.Header())
	br := bufio.NewReader(conn)
	var rep Reply
	var err error
	if rep.Answer, rep.Code, rep.Text, err = ReadAnswer(br); err != nil {
		return Reply{}, nil // closed without an answer
	}
	if rep.Answer != "GO" && rep.Answer != "GO DOT" {
		return rep, nil
	}
	in := c.Input
	if rep.Answer == "GO DOT" && !c.Whole {
		in = CutAtDot(in)
	}
	if c.Cut > 0 {
		in = in[:c.Cut]
	}
	size := c.Chunk
	if size == 0 {
		size = 64 << 10
	}
	rep.SentAll = true
	for len(in) > 0 && rep.SentAll {
		n := min(size, len(in))
		_, err := fmt.Fprintf(conn, "%d\n%s", n, in[:n])
		rep.SentAll = err == nil
		in = in[n:]
	}
	if c.Cut > 0 {
		conn.Close()
		return rep, nil
	}
	if rep.SentAll {
		_, err := io.WriteString(conn, "0\n")
		rep.SentAll = err == nil
	}
	var answer string
	if answer, rep.Code, rep.Text, err = ReadAnswer(br); err != nil || answer != "EXIT" {
		return rep, fmt.Errorf("answer %q (%v) after the input, want EXIT", answer, err)
	}
	return rep, nil
}

// CutAtDot keeps in up to and including its first lone "." line.
func CutAtDot(in string) string {
	for i := 0; i < len(in); {
		j := strings.IndexByte(in[i:], '\n')
		line := in[i:]
		if j >= 0 {
			line = in[i : i+j+1]
		}
		if line == "." || line == ".\n" || line == ".\r\n" {
			return in[:i+len(line)]
		}
		i += len(line)
	}
	return in
}

// ReadAnswer reads one answer: a line, or "EXIT <code> <len>:<text>\n",
// whose text may hold line ends.
func ReadAnswer(br *bufio.Reader) (answer string, code int, text string, err error) {
	var b []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return "", 0, "", err
		}
		if c == '\n' {
			return string(b), 0, "", nil
		}
		if c == ':' && strings.HasPrefix(string(b), "EXIT ") {
			break
		}
		b = append(b, c)
	}
	var n int
	if _, err := fmt.Sscanf(string(b), "EXIT %d %d", &code, &n); err != nil {
		return "", 0, "", fmt.Errorf("malformed %q", b)
	}
	t := make([]byte, n+1)
	if _, err := io.ReadFull(br, t); err != nil || t[n] != '\n' {
		return "", 0, "", fmt.Errorf("EXIT text of %d bytes: %q, %v", n, t, err)
	}
	return "EXIT", code, string(t[:n]), nil
}
