package sendmailshim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/sendmailtest"
)

func sendChunks(w io.Writer, in string, size int) error {
	if size == 0 {
		size = 64 << 10
	}
	for len(in) > 0 {
		n := min(size, len(in))
		if _, err := fmt.Fprintf(w, "%d\n%s", n, in[:n]); err != nil {
			return err
		}
		in = in[n:]
	}
	return nil
}

// serveSock serves the sendmail protocol on a socket in dir with the
// configuration at cfgPath, storing into d, and returns the socket and a
// channel that receives a value as each call's Serve returns.
func serveSock(t testing.TB, dir, cfgPath string, d *fakeDaemon, tune func(*ServeConfig)) (string, chan struct{}) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "var", "sendmail.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	served := make(chan struct{}, 100)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sc := ServeConfig{Config: cfg, ConfigPath: cfgPath, UID: os.Getuid(),
				NewSession:  func() (smtp.Session, error) { return &fakeSession{d: d}, nil },
				ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
			if tune != nil {
				tune(&sc)
			}
			go func() {
				Serve(c, sc)
				served <- struct{}{}
			}()
		}
	}()
	return sock, served
}

// TestServeSameAsShim runs each call through the whole shim over the
// submission socket and through the sendmail protocol, against one fake
// daemon, and wants the same exit status, stderr and stored message.
func TestServeSameAsShim(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "limits {\n  max_message_size = \"2KiB\"\n}\n")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	sock, _ := serveSock(t, dir, cfgPath, d, nil)
	fixed := "Date: Mon, 2 Jan 2006 15:04:05 +0000\nMessage-ID: <fixed@shim.test>\n"
	for _, tc := range []struct {
		name   string
		args   []string
		input  string
		answer string
		code   int
	}{
		{"-t -i with Bcc", []string{"-t", "-i"}, fixed + "To: a@example.com\nCc: b@example.com\nBcc: c@example.com\nSubject: hi\n\nline\n.\nafter\n", "GO", 0},
		{"recipients on argv, dots end", []string{"-f", "app@example.org", "a@example.com, B <b@example.com>", "root"}, fixed + "Subject: dots\n\nbody\n..stuffed\n.\nnot sent\n", "GO DOT", 0},
		{"DSN options", []string{"-i", "-N", "success,delay", "-R", "hdrs", "-V", "env-1", "-B", "8BITMIME", "a@example.com"}, fixed + "\nx\n", "GO", 0},
		{"unknown local name", []string{"-i", "a@example.com", "nosuchname"}, fixed + "\nx\n", "GO", 67},
		{"no recipients", []string{"-i"}, "x\n", "GO", 64},
		{"-t without recipients", []string{"-t", "-i"}, fixed + "Subject: none\n\nx\n", "GO", 65},
		{"bad -f", []string{"-i", "-f", "a b@@", "a@example.com"}, "x\n", "GO", 64},
		{"too big", []string{"-i", "a@example.com"}, fixed + "\n" + strings.Repeat("0123456789abcdef\n", 200), "GO", 69},
		{"bad header recipient", []string{"-t", "-i"}, fixed + "To: not an address@@\n\nx\n", "GO", 65},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := d.count()
			code, _, stderr := run(t, cfgPath, tc.input, tc.args...)
			afterShim := d.count()
			rep := sendmailtest.Call{Argv: append([]string{"/usr/sbin/sendmail"}, tc.args...), Env: []string{"LOGNAME=tester"}, Input: tc.input}.Run(t, sock)
			if rep.Answer != tc.answer {
				t.Fatalf("answer %q, want %q", rep.Answer, tc.answer)
			}
			if code != tc.code || rep.Code != code || rep.Text != stderr {
				t.Fatalf("shim: %d %q; protocol: %d %q; want %d", code, stderr, rep.Code, rep.Text, tc.code)
			}
			stored := afterShim - before
			if d.count()-afterShim != stored || stored != map[bool]int{true: 1}[code == 0] {
				t.Fatalf("stored %d by the shim, %d by the protocol", stored, d.count()-afterShim)
			}
			if stored == 1 {
				a, b := d.wait(t, before+1), d.wait(t, before+2)
				if !reflect.DeepEqual(a, b) {
					t.Errorf("shim stored\n%+v\nprotocol stored\n%+v", a, b)
				}
				if strings.Contains(string(b.Data), "not sent") || strings.Contains(string(b.Data), "Bcc") {
					t.Errorf("stored %q", b.Data)
				}
			}
		})
	}
}

// TestServeHandover: what the daemon does not run itself goes back to the
// client before any input is read; a connection that is not the protocol
// gets no answer.
func TestServeHandover(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	sock, _ := serveSock(t, dir, cfgPath, d, nil)
	for _, tc := range []struct {
		name string
		pc   sendmailtest.Call
		want string
	}{
		{"-bp", sendmailtest.Call{Argv: []string{"sendmail", "-bp"}}, "HANDOVER"},
		{"-bs", sendmailtest.Call{Argv: []string{"sendmail", "-bs"}}, "HANDOVER"},
		{"-bv", sendmailtest.Call{Argv: []string{"sendmail", "-bv", "a@example.com"}}, "HANDOVER"},
		{"-bi", sendmailtest.Call{Argv: []string{"sendmail", "-bi"}}, "HANDOVER"},
		{"-q", sendmailtest.Call{Argv: []string{"sendmail", "-q"}}, "HANDOVER"},
		{"-q30m", sendmailtest.Call{Argv: []string{"sendmail", "-q30m"}}, "HANDOVER"},
		{"-v", sendmailtest.Call{Argv: []string{"sendmail", "-v", "a@example.com"}}, "HANDOVER"},
		{"-C", sendmailtest.Call{Argv: []string{"sendmail", "-C", "x", "a@example.com"}}, "HANDOVER"},
		{"-C empty", sendmailtest.Call{Argv: []string{"sendmail", "-tC", "", "a@example.com"}}, "HANDOVER"},
		{"mailq", sendmailtest.Call{Argv: []string{"/usr/bin/mailq"}}, "HANDOVER"},
		{"newaliases", sendmailtest.Call{Argv: []string{"newaliases"}}, "HANDOVER"},
		{"outbox-sendmail", sendmailtest.Call{Argv: []string{"outbox-sendmail", "a@example.com"}}, "HANDOVER"},
		{"parse error", sendmailtest.Call{Argv: []string{"sendmail", "-y"}}, "HANDOVER"},
		{"missing argument", sendmailtest.Call{Argv: []string{"sendmail", "-f"}}, "HANDOVER"},
		{"no argv", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nE8:USER=bob\n.\n"}, "HANDOVER"},
		{"unknown item", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA8:sendmail\nX1:y\n.\n"}, "HANDOVER"},
		{"short item", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA9:sendmail\n.\n"}, "HANDOVER"},
		{"signed length", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA+8:sendmail\n.\n"}, "HANDOVER"},
		{"item too long", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA65537:" + strings.Repeat("x", 65537) + "\n.\n"}, "HANDOVER"},
		{"too many items", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA8:sendmail\n" + strings.Repeat("A1:x\n", 4096) + ".\n"}, "HANDOVER"},
		{"header over 1 MiB", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA8:sendmail\n" + strings.Repeat("A65536:"+strings.Repeat("x", 65536)+"\n", 16) + ".\n"}, "HANDOVER"},
		{"other version", sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 2\nA8:sendmail\n.\n"}, ""},
		{"not the protocol", sendmailtest.Call{Raw: "EHLO x\r\n"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := tc.pc.Run(t, sock)
			if rep.Answer != tc.want {
				t.Errorf("answer %q, want %q", rep.Answer, tc.want)
			}
		})
	}
	// Up to the limits, the header is read.
	rep := sendmailtest.Call{Raw: "OUTBOX-SENDMAIL 1\nA8:sendmail\nA2:-i\n" + strings.Repeat("A0:\n", 4093) + ".\n", Input: "x\n"}.Run(t, sock)
	if rep.Answer != "GO" || rep.Code != ExitUsage {
		t.Errorf("4096 items: %+v, want GO and exit 64 (empty recipients)", rep)
	}
	if d.count() != 0 {
		t.Errorf("%d messages stored", d.count())
	}
}

// TestServeCutInput: a client gone before the end mark stores nothing,
// wherever the input was cut, the "." line of GO DOT included.
func TestServeCutInput(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	sock, served := serveSock(t, dir, cfgPath, d, nil)
	msg := "Subject: cut\n\nline one\nline two\n.\n"
	for _, tc := range []struct {
		args []string
		cut  int
	}{
		{[]string{"-i", "a@example.com"}, 5},                    // in the header
		{[]string{"-i", "a@example.com"}, len(msg) - 3},         // in the body
		{[]string{"-i", "a@example.com"}, len(msg)},             // all but the end mark
		{[]string{"a@example.com"}, len(msg) - 1},               // "." without its line end
		{[]string{"a@example.com"}, len(msg)},                   // the "." line without the end mark
		{[]string{"-oi", "a@example.com", "b@example.com"}, 20}, // several recipients
	} {
		rep := sendmailtest.Call{Argv: append([]string{"sendmail"}, tc.args...), Input: msg, Cut: tc.cut}.Run(t, sock)
		if !strings.HasPrefix(rep.Answer, "GO") {
			t.Fatalf("%v: answer %q", tc.args, rep.Answer)
		}
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatalf("%v cut at %d: the call did not end", tc.args, tc.cut)
		}
		if d.count() != 0 {
			t.Fatalf("%v cut at %d: stored %q", tc.args, tc.cut, d.wait(t, 1).Data)
		}
	}
	// The same, whole, is stored.
	rep := sendmailtest.Call{Argv: []string{"sendmail", "a@example.com"}, Input: msg}.Run(t, sock)
	if rep.Code != 0 || d.count() != 1 {
		t.Fatalf("whole message: %+v, %d stored", rep, d.count())
	}
}

// TestServeEarlyExit: a message too big or refused gets EXIT before the
// daemon has read the whole input, which the client cannot finish sending.
func TestServeEarlyExit(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "limits {\n  max_message_size = \"64KiB\"\n}\n")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	sock, _ := serveSock(t, dir, cfgPath, d, nil)
	big := "Subject: big\n\n" + strings.Repeat(strings.Repeat("x", 99)+"\n", 80<<10) // 8 MiB
	rep := sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com"}, Input: big}.Run(t, sock)
	if rep.Code != ExitUnavailable || !strings.Contains(rep.Text, "message too big") || rep.SentAll {
		t.Errorf("too big: %+v, want 69 before the input was all sent", rep)
	}
	rep = sendmailtest.Call{Argv: []string{"sendmail", "-i", "nosuchname"}, Input: big}.Run(t, sock)
	if rep.Code != ExitNoUser || rep.SentAll {
		t.Errorf("refused recipient: %+v, want 67 before the input was all sent", rep)
	}
	if d.count() != 0 {
		t.Errorf("%d stored", d.count())
	}
}

// TestServeSession: the session gets what the submission socket gives the
// daemon, and its failures, replies or not, read as over the socket.
func TestServeSession(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	var mu sync.Mutex
	var sessErr error
	sock, _ := serveSock(t, dir, cfgPath, d, func(sc *ServeConfig) {
		sc.NewSession = func() (smtp.Session, error) {
			mu.Lock()
			defer mu.Unlock()
			return &failSession{fakeSession: fakeSession{d: d}, err: sessErr}, nil
		}
	})
	for _, tc := range []struct {
		err  error
		code int
		text string
	}{
		{nil, 0, ""},
		{&smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as X"}, 0, ""},
		{&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error"}, ExitTempFail, "sendmail: DATA refused by the daemon: 451 4.3.0 Local error; nothing was sent; try again later\n"},
		{&smtp.SMTPError{Code: 552, Message: "too large"}, ExitUnavailable, "sendmail: DATA refused by the daemon: 552 5.0.0 too large; nothing was sent\n"},
		{errors.New("disk on fire"), ExitUnavailable, "sendmail: DATA refused by the daemon: 554 5.0.0 Error: transaction failed: disk on fire; nothing was sent\n"},
	} {
		mu.Lock()
		sessErr = tc.err
		mu.Unlock()
		rep := sendmailtest.Call{Argv: []string{"sendmail", "-i", "a@example.com"}, Input: "Subject: s\n\nx\n"}.Run(t, sock)
		if rep.Code != tc.code || rep.Text != tc.text {
			t.Errorf("Data returning %v: %d %q, want %d %q", tc.err, rep.Code, rep.Text, tc.code, tc.text)
		}
	}
}

// failSession is a fakeSession whose Data reads the message, then returns
// err.
type failSession struct {
	fakeSession
	err error
}

func (s *failSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return s.err
}

// TestChunkReader: only the end mark ends the input.
func TestChunkReader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		err  bool
	}{
		{"3\nabc2\nde0\n", "abcde", false},
		{"0\n", "", false},
		{"3\nabc0\ntrailing", "abc", false},
		{"3\nabc", "abc", true},
		{"3\nab", "ab", true},
		{"3\nabc0", "abc", true},
		{"x\nabc0\n", "", true},
		{"-3\nabc0\n", "", true},
		{"\n0\n", "", true},
		{"1048577\n", "", true},
	} {
		c := &chunkReader{br: bufio.NewReader(strings.NewReader(tc.in))}
		got, err := io.ReadAll(c)
		if string(got) != tc.want || (err != nil) != tc.err || errors.Is(err, io.EOF) {
			t.Errorf("%q: read %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	var b bytes.Buffer
	sendChunks(&b, strings.Repeat("y", 150<<10), 0)
	b.WriteString("0\n")
	got, err := io.ReadAll(&chunkReader{br: bufio.NewReader(&b)})
	if err != nil || len(got) != 150<<10 {
		t.Errorf("three chunks: %d bytes, %v", len(got), err)
	}
}

// TestServeHeaderDeadline: the request header has one time limit as a
// whole, so a client trickling it a byte at a time does not keep its
// connection (and a slot of the daemon's cap) beyond it.
func TestServeHeaderDeadline(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	sock, served := serveSock(t, dir, cfgPath, d, func(sc *ServeConfig) { sc.ReadTimeout = 300 * time.Millisecond })
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	header := sendmailtest.Call{Argv: []string{"sendmail", "a@example.com"}}.Header()
	sent := 0
	for ; sent < len(header); sent++ {
		if _, err := c.Write([]byte{header[sent]}); err != nil {
			break // the daemon closed: the limit came
		}
		select {
		case <-served:
			sent = -1
		case <-time.After(100 * time.Millisecond):
		}
		if sent < 0 {
			break
		}
	}
	if sent == len(header) {
		t.Fatalf("a header trickled over %v arrived whole: the limit is per read", time.Since(start))
	}
	if sent >= 0 {
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Fatal("a trickled header kept the call open")
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the call ended after %v, want about the 300 ms limit", took)
	}
}

// TestServeTooMuchAfterDot: the client sends no more after the "." line
// than it read with it; a peer that keeps sending is refused and nothing
// is stored, rather than read for as long as it lasts.
func TestServeTooMuchAfterDot(t *testing.T) {
	dir := testDir(t)
	cfgPath := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	sock, _ := serveSock(t, dir, cfgPath, d, nil)
	in := "Subject: s\n\nbody\n.\n" + strings.Repeat("after the dot\n", 2*maxChunk/14)
	rep := sendmailtest.Call{Argv: []string{"sendmail", "a@example.com"}, Input: in, Whole: true}.Run(t, sock)
	if rep.Answer != "GO DOT" || rep.Code != ExitTempFail || d.count() != 0 {
		t.Fatalf("%+v, %d stored; want exit 75 and nothing stored", rep, d.count())
	}
	// As the client sends it, the message is stored.
	rep = sendmailtest.Call{Argv: []string{"sendmail", "a@example.com"}, Input: "Subject: s\n\nbody\n.\nthe rest of its read\n", Whole: true}.Run(t, sock)
	if rep.Code != 0 || d.count() != 1 {
		t.Fatalf("%+v, %d stored", rep, d.count())
	}
}
