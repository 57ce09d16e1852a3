package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-smtp"
	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// TestRcpt552Defers: 552 to RCPT is a temporary failure (RFC 5321
// §4.5.3.1.10: too many recipients, treat as 452), not a bounce.
func TestRcpt552Defers(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.rcptErr["many@example.net"] = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 5, 3}, Message: "too many recipients"}
	})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	out := deliver(t, s, envelope(testMessage, "good@example.net", "many@example.net"))
	wantClass(t, out, Sent, Deferred)
	if r := out.Results[1]; r.Code != 452 || r.Enhanced != "4.5.3" {
		t.Errorf("552 at RCPT became %+v, want 452 4.5.3", r)
	}
}

// TestRateSpentOnlyByAcceptedTransactions: attempts the upstream did not
// take (a connection that fails, every recipient refused) leave the
// provider's quota untouched; sends that got to DATA spend it.
func TestRateSpentOnlyByAcceptedTransactions(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.rcptErr["bad@example.net"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	cfg.RateN, cfg.RatePer = 2, time.Hour
	var mu sync.Mutex
	down := 2 // the first two connections fail
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if down > 0 {
			down--
			return nil, errors.New("connection refused")
		}
		return dial(ctx, network, addr)
	}
	s := newTarget(t, cfg)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Deferred)
	wantClass(t, deliver(t, s, envelope(testMessage, "bad@example.net")), Failed)
	if h := s.RateHistory(); len(h) != 0 {
		t.Fatalf("attempts the upstream did not take spent %d slots: %v", len(h), h)
	}
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	wantClass(t, deliver(t, s, envelope(testMessage, "b@example.net")), Sent)
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Deferred)
	if h := s.RateHistory(); len(h) != 2 {
		t.Fatalf("history %v, want the two sends", h)
	}
}

func TestLimiterRelease(t *testing.T) {
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	l := newLimiter(2, time.Hour)
	for i := 0; i < 2; i++ {
		if _, ok := l.reserve(base, 0); !ok {
			t.Fatalf("slot %d refused", i)
		}
	}
	if _, ok := l.reserve(base, time.Minute); ok {
		t.Fatal("third slot within the hour")
	}
	l.release(base)
	if _, ok := l.reserve(base, 0); !ok {
		t.Fatal("a released slot was not free again")
	}
	if h := l.history(); len(h) != 2 {
		t.Fatalf("history %v", h)
	}
}

// lineEnds is what crlfWriter must make of a body: every CRLF, bare CR and
// bare LF becomes CRLF.
var lineEnds = strings.NewReplacer("\r\n", "\r\n", "\r", "\r\n", "\n", "\r\n")

func TestCRLFWriter(t *testing.T) {
	for _, in := range []string{
		"a\nb\n", "a\r\nb\r\n", "a\rb\r", "a\r\r\nb", "\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r",
		"x\r", "", "no end",
	} {
		// Byte by byte, so a CR at the end of one write meets its LF in
		// the next.
		var got bytes.Buffer
		w := newCRLFWriter(&got)
		for i := 0; i < len(in); i++ {
			if _, err := w.Write([]byte{in[i]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if want := lineEnds.Replace(in); got.String() != want {
			t.Errorf("%q became %q, want %q", in, got.String(), want)
		}
	}
}

// TestInteropLineEnds sends bodies with bare CR and LF in the line-end
// positions that SMTP smuggling uses to a real third-party server
// (aiosmtpd) and checks the exact bytes it received: one message, not cut
// short, with CRLF line ends and every other byte as it was.
func TestInteropLineEnds(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	port, outdir := startAiosmtpd(t, ca, "relay@example.com", "pw")
	var logs syncBuffer
	s := newTarget(t, SMTPConfig{
		SMTP:           settings.SMTP{Name: "aiosmtpd", Host: "127.0.0.1", Port: port, TLS: "starttls", Username: "relay@example.com"},
		RootCAs:        ca.Pool,
		Hostname:       "client.test",
		Password:       staticSecret("pw"),
		CommandTimeout: 20 * time.Second,
		Logger:         testLogger(&logs),
	})
	const hdr = "From: a@example.com\r\nTo: b@example.net\r\nSubject: line ends\r\n\r\n"
	smuggled := "MAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nsmuggled\r\n.\r\n"
	n := 0
	for _, seq := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n", "\r\n.\r"} {
		for _, body := range []string{
			"before" + seq + smuggled + "after\r\n",
			"before" + seq + "..two dots\r\n.leading dot\r\n",
			"before" + seq,
		} {
			n++
			msg := hdr + body
			out := deliver(t, s, envelope(msg, "b@example.net"))
			wantClass(t, out, Sent)
			path := filepath.Join(outdir, "msg"+strconv.Itoa(n))
			var got []byte
			waitFor(t, "aiosmtpd to write "+path, func() bool {
				var err error
				got, err = os.ReadFile(path)
				return err == nil
			})
			_, data, _ := strings.Cut(string(got), "\n\n")
			want := lineEnds.Replace(msg)
			if !strings.HasSuffix(want, "\r\n") {
				want += "\r\n"
			}
			if data != want {
				t.Errorf("sequence %q: aiosmtpd got\n%q\nwant\n%q", seq, data, want)
			}
		}
	}
	// No message beyond those sent: nothing was smuggled.
	if _, err := os.Stat(filepath.Join(outdir, "msg"+strconv.Itoa(n+1))); err == nil {
		t.Errorf("aiosmtpd received more messages than were sent")
	}
}

// aiosmtpdTarget starts aiosmtpd with flags and a target that delivers to
// it; got reads the n-th message it received: its envelope lines, its
// MAIL parameters and its content.
func aiosmtpdTarget(t *testing.T, flags string) (s *SMTP, got func(n int) (env, opts, data string)) {
	t.Helper()
	ca := testpki.NewCA(t, "test CA")
	port, outdir := startAiosmtpdFlags(t, ca, "relay@example.com", "pw", flags)
	var logs syncBuffer
	s = newTarget(t, SMTPConfig{
		SMTP:           settings.SMTP{Name: "aiosmtpd", Host: "127.0.0.1", Port: port, TLS: "starttls", Username: "relay@example.com"},
		RootCAs:        ca.Pool,
		Hostname:       "client.test",
		Password:       staticSecret("pw"),
		CommandTimeout: 20 * time.Second,
		Logger:         testLogger(&logs),
	})
	return s, func(n int) (string, string, string) {
		path := filepath.Join(outdir, "msg"+strconv.Itoa(n))
		var b []byte
		waitFor(t, "aiosmtpd to write "+path, func() bool {
			var err error
			b, err = os.ReadFile(path)
			return err == nil
		})
		o, err := os.ReadFile(path + ".opts")
		if err != nil {
			t.Fatal(err)
		}
		env, data, _ := strings.Cut(string(b), "\n\n")
		return env, string(o), data
	}
}

// leaves returns the decoded content of every non-multipart part of msg,
// in order, descending into enclosed messages.
func leaves(t *testing.T, msg string) []string {
	t.Helper()
	e, err := message.Read(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("parsing %q: %v", msg, err)
	}
	var out []string
	err = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if p.MultipartReader() != nil {
			return nil
		}
		if mt, _, _ := p.Header.ContentType(); mt == "message/rfc822" {
			b, _ := io.ReadAll(p.Body)
			out = append(out, leaves(t, string(b))...)
			return nil
		}
		b, err := io.ReadAll(p.Body)
		out = append(out, string(b))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInterop8BitToSevenBitUpstream: an upstream that does not offer
// 8BITMIME (aiosmtpd told to leave it out) never receives 8-bit data; the
// parts that held it arrive as quoted-printable or base64 and decode to
// what was sent, the others arrive byte for byte.
func TestInterop8BitToSevenBitUpstream(t *testing.T) {
	s, got := aiosmtpdTarget(t, "no8bitmime")
	binary := "\x00\x01\xff\xfe bytes \xc3\xa9\r\n"
	const ascii = "Plain ASCII part.\r\n.leading dot\r\n"
	msgs := []struct {
		name   string
		msg    string
		leaves []string
	}{
		{"plain", "From: a@example.com\r\nTo: b@example.net\r\nSubject: caf\xc3\xa9\r\n\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln.\r\nTrailing space \r\n", []string{"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln.\r\nTrailing space \r\n"}},
		{"multipart", "From: a@example.com\r\nTo: b@example.net\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=\"b1\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text\r\n" +
			"--b1\r\nContent-Type: text/plain\r\n\r\n" + ascii +
			"--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" + binary +
			"--b1\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsch\xc3\xb6n\r\n" +
			"--b1--\r\n",
			[]string{"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e text", ascii[:len(ascii)-2], binary[:len(binary)-2], "sch\xc3\xb6n"}},
	}
	for i, m := range msgs {
		wantClass(t, deliver(t, s, envelope(m.msg, "b@example.net")), Sent)
		_, opts, data := got(i + 1)
		if strings.Contains(opts, "8BITMIME") {
			t.Errorf("%s: MAIL had %q to a server without 8BITMIME", m.name, opts)
		}
		for j := 0; j < len(data); j++ {
			if data[j] >= 0x80 {
				t.Fatalf("%s: 8-bit byte %#x at %d reached a server without 8BITMIME:\n%q", m.name, data[j], j, data)
			}
		}
		if l := leaves(t, m.msg); strings.Join(l, "|") != strings.Join(m.leaves, "|") {
			t.Fatalf("%s: the message sent decodes to %q, want %q", m.name, l, m.leaves)
		}
		if l := leaves(t, data); strings.Join(l, "|") != strings.Join(m.leaves, "|") {
			t.Errorf("%s: parts decode to\n%q\nwant\n%q\nreceived:\n%q", m.name, l, m.leaves, data)
		}
		if m.name == "multipart" && !strings.Contains(data, "Content-Type: text/plain\r\n\r\n"+ascii) {
			t.Errorf("the 7-bit part did not go through byte for byte:\n%q", data)
		}
	}
}

// TestInteropInternationalAddresses: to an upstream without SMTPUTF8
// (aiosmtpd's default), a non-ASCII domain goes in A-label form and a
// non-ASCII local part fails that recipient alone with 5.6.7; with
// SMTPUTF8 offered, addresses go unchanged.
func TestInteropInternationalAddresses(t *testing.T) {
	const msg = "From: a@example.com\r\nTo: x@example.net\r\nSubject: idn\r\n\r\nhi\r\n"
	s, got := aiosmtpdTarget(t, "")
	env := envelope(msg, "user@b\u00fccher.example", "\u00fc@example.net", "plain@example.net")
	env.From = "app@m\u00fcnchen.example"
	env.UTF8 = true
	out := deliver(t, s, env)
	wantClass(t, out, Sent, Failed, Sent)
	if out.Results[1].Enhanced != "5.6.7" {
		t.Errorf("non-ASCII local part: %+v, want 5.6.7", out.Results[1])
	}
	envLines, opts, _ := got(1)
	want := "FROM app@xn--mnchen-3ya.example\nTO user@xn--bcher-kva.example\nTO plain@example.net\nAUTH relay@example.com"
	if envLines != want || strings.Contains(opts, "SMTPUTF8") {
		t.Errorf("aiosmtpd got envelope\n%s\nparameters %q\nwant\n%s", envLines, opts, want)
	}

	s2, got2 := aiosmtpdTarget(t, "smtputf8")
	wantClass(t, deliver(t, s2, env), Sent, Sent, Sent)
	envLines, opts, _ = got2(1)
	want = "FROM app@m\u00fcnchen.example\nTO user@b\u00fccher.example\nTO \u00fc@example.net\nTO plain@example.net\nAUTH relay@example.com"
	if envLines != want || !strings.Contains(opts, "SMTPUTF8") {
		t.Errorf("aiosmtpd got envelope\n%s\nparameters %q\nwant\n%s", envLines, opts, want)
	}
}

// FuzzCRLFWriter: whatever the input and however it is split into
// writes, the output has CRLF line ends only and differs from the input
// in line ends alone.
func FuzzCRLFWriter(f *testing.F) {
	for _, s := range []string{"\r.\r\n", "\n.\n", "a\r\r\nb", "\r"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var got bytes.Buffer
		w := newCRLFWriter(&got)
		step := int(split%16) + 1
		for i := 0; i < len(in); i += step {
			w.Write(in[i:min(i+step, len(in))])
		}
		w.Close()
		if want := lineEnds.Replace(string(in)); got.String() != want {
			t.Fatalf("%q became %q, want %q", in, got.String(), want)
		}
		out := got.Bytes()
		for i, c := range out {
			if c == '\r' && (i+1 == len(out) || out[i+1] != '\n') || c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare line end at %d in %q", i, out)
			}
		}
	})
}

// FuzzTo7bit: the converter never panics, and what it writes from a
// message with a plain header section has no 8-bit byte in its body.
func FuzzTo7bit(f *testing.F) {
	f.Add("Subject: x\r\n\r\nh\xc3\xa9\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\n\xff\r\n--b--\r\n")
	f.Add("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n\xff")
	f.Fuzz(func(t *testing.T, msg string) {
		var out bytes.Buffer
		if err := to7bit(&out, strings.NewReader(msg)); err != nil {
			return
		}
		if !has8bit([]byte(msg)) {
			return
		}
		hdr, body, _ := strings.Cut(out.String(), "\r\n\r\n")
		if !has8bit([]byte(hdr)) && !strings.Contains(msg, "multipart") && !strings.Contains(msg, "message/") && has8bit([]byte(body)) {
			t.Fatalf("8-bit body after conversion of %q: %q", msg, out.String())
		}
	})
}

// countedBody is an envelope body that counts how often it is opened and
// how many bytes are read from it.
type countedBody struct {
	msg   string
	opens int
	read  int64
}

func (c *countedBody) open() (io.ReadCloser, error) {
	c.opens++
	return io.NopCloser(&countingReader{r: strings.NewReader(c.msg), n: &c.read}), nil
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// TestPlanReadsBodyOnce: a message converted for an upstream without
// 8BITMIME is read from the spool once per attempt when it fits in
// keepInMemory (once to look at and convert it, kept for the send), and
// twice when it does not; what is sent is 7-bit and its SIZE= is exact.
func TestPlanReadsBodyOnce(t *testing.T) {
	small := "From: a@example.com\r\nSubject: caf\xc3\xa9\r\n\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln.\r\n"
	big := "From: a@example.com\r\n\r\n" + strings.Repeat("Gr\xc3\xbc\xc3\x9fe "+strings.Repeat("x", 66)+"\r\n", keepInMemory/80+1)
	for _, tc := range []struct {
		name           string
		msg            string
		has8bit, utf8  bool
		opens, convert int
	}{
		{"small, converted", small, false, false, 1, 1},
		{"large, converted", big, false, false, 2, 1},
		{"small, 7-bit clean", "Subject: x\r\n\r\nhello\r\n", false, false, 1, 0},
		{"small, 8BITMIME but UTF-8 to check", small, true, true, 1, 0},
		{"8BITMIME, nothing to check", small, true, false, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cb := &countedBody{msg: tc.msg}
			env := &Envelope{From: "a@example.com", Recipients: []Rcpt{{Address: "b@example.net"}}, Size: int64(len(tc.msg)), Body: cb.open}
			res := make([]Result, 1)
			s := &SMTP{addr: "test:25"}
			out, ok := s.plan(env, tc.has8bit, tc.utf8, res)
			if !ok {
				t.Fatalf("plan refused: %+v", res)
			}
			if out.convert != (tc.convert == 1) {
				t.Errorf("convert = %v", out.convert)
			}
			data, done, err := out.open(env)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(data)
			done()
			if err != nil {
				t.Fatal(err)
			}
			if cb.opens != tc.opens || cb.read != int64(tc.opens)*int64(len(tc.msg)) {
				t.Errorf("body opened %d times, %d bytes read; want %d times, %d bytes", cb.opens, cb.read, tc.opens, tc.opens*len(tc.msg))
			}
			if out.convert {
				if has8bit(b) {
					t.Errorf("8-bit data left after conversion")
				}
				if out.size != int64(len(b)) {
					t.Errorf("SIZE=%d, sent %d bytes", out.size, len(b))
				}
			} else if string(b) != tc.msg {
				t.Errorf("sent %q, want the message unchanged", b)
			}
		})
	}
}

// TestScanner8bit: the scanner finds 8-bit bytes in the header section and
// in the body, whatever pieces the message is written in.
func TestScanner8bit(t *testing.T) {
	for _, tc := range []struct {
		msg          string
		header, body bool
	}{
		{"Subject: x\r\n\r\nbody\r\n", false, false},
		{"Subject: caf\xc3\xa9\r\n\r\nbody\r\n", true, false},
		{"Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n", false, true},
		{"Subject: x\n\nGr\xc3\xbc\xc3\x9fe\n", false, true},
		{"Subject: x\r\n\r\n\r\nGr\xc3\xbc\r\n", false, true},
		{"Subject: x\r\nX: \r\xc3\xa9\r\n", true, false},
		{"Subject: x", false, false},
	} {
		for _, piece := range []int{1, 2, 3, len(tc.msg)} {
			var s scanner8bit
			for i := 0; i < len(tc.msg); i += piece {
				s.Write([]byte(tc.msg[i:min(i+piece, len(tc.msg))]))
			}
			if s.header != tc.header || s.body != tc.body {
				t.Errorf("%q in pieces of %d: header %v body %v, want %v %v", tc.msg, piece, s.header, s.body, tc.header, tc.body)
			}
		}
	}
}

// TestInspectKeepsNoCopyOfLargeMessage: a message whose stored size is
// over keepInMemory is looked at without copying it (a copy would be
// dropped at the bound and the body read again to send). Converting its
// parts still holds one leaf part at a time, which this does not measure.
func TestInspectKeepsNoCopyOfLargeMessage(t *testing.T) {
	msg := "From: a@example.com\r\n\r\n" + strings.Repeat("Gr\xc3\xbc\xc3\x9fe "+strings.Repeat("x", 66)+"\r\n", 4*keepInMemory/80)
	cb := &countedBody{msg: msg}
	env := &Envelope{From: "a@example.com", Recipients: []Rcpt{{Address: "b@example.net"}}, Size: int64(len(msg)), Body: cb.open}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	in, err := inspect(env, false)
	runtime.ReadMemStats(&after)
	if err != nil || in.raw.kept() != nil || !in.scan.body {
		t.Fatalf("inspect: %v, kept %d bytes, 8-bit found %v", err, len(in.raw.kept()), in.scan.body)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > keepInMemory/8 {
		t.Errorf("looking at a %d-byte message allocated %d bytes", len(msg), got)
	}
}
