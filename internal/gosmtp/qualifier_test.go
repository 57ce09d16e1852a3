package gosmtp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// bareSession feeds a client stream through a qualifier in chunks of
// random sizes, replying 354 to DATA as a server would, and returns what
// the server would read.
func bareSession(t testing.TB, stream string, seed uint64, dataOK bool) string {
	t.Helper()
	q := NewQualifier("relay.test")
	rng := rand.New(rand.NewPCG(seed, 1))
	src := &clientStream{b: []byte(stream), rng: rng}
	// A client waits for the reply to DATA before it sends the body.
	if i := strings.Index(asciiUpper(stream), "DATA\r\n"); i >= 0 {
		src.stop = i + len("DATA\r\n")
	}
	var got bytes.Buffer
	buf := make([]byte, 1+rng.IntN(64))
	for {
		n, err := q.Read(src, buf)
		got.Write(buf[:n])
		// A server answers DATA once it has read the command line.
		if bytes.HasSuffix(bytes.ToUpper(got.Bytes()), []byte("DATA\r\n")) {
			if dataOK {
				q.Wrote([]byte("354 go ahead\r\n"))
			} else {
				q.Wrote([]byte("554 5.5.1 no valid recipients\r\n"))
			}
			src.release(stream)
		}
		if err == io.EOF {
			return got.String()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// clientStream returns its bytes in random pieces, never past stop (the
// point where the client waits for a reply) until released.
type clientStream struct {
	b    []byte
	rng  *rand.Rand
	read int
	stop int // absolute offset; 0 = none
}

// release lets the reader go on to the next DATA in the stream.
func (r *clientStream) release(stream string) {
	r.stop = 0
	if i := strings.Index(asciiUpper(stream[r.read:]), "DATA\r\n"); i >= 0 {
		r.stop = r.read + i + len("DATA\r\n")
	}
}

func (r *clientStream) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	limit := len(r.b)
	if r.stop > 0 {
		limit = r.stop - r.read
	}
	if limit == 0 {
		return 0, errors.New("client waits for a reply the server never sent")
	}
	n := 1 + r.rng.IntN(limit)
	n = min(n, len(p))
	r.read += n
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func TestQualifierRewritesEnvelopeOnly(t *testing.T) {
	stream := "EHLO client\r\n" +
		"MAIL FROM:<cron> BODY=8BITMIME\r\n" +
		"RCPT TO:<root> NOTIFY=FAILURE\r\n" +
		"rcpt to:<Postmaster>\r\n" +
		"RCPT TO:<bob@example.org>\r\n" +
		"RCPT TO:<\"quoted name\">\r\n" +
		"DATA\r\n" +
		"Subject: the body is left alone\r\n\r\n" +
		"RCPT TO:<root>\r\n" +
		"MAIL FROM:<x>\r\n" +
		"..leading dot\r\n" +
		".\r\n" +
		"RSET\r\n" +
		"MAIL FROM:<>\r\n" +
		"RCPT TO:<www-data>\r\n" +
		"BDAT 17\r\n" +
		"RCPT TO:<nope>\r\n\r\n" +
		"BDAT 0 LAST\r\n" +
		"QUIT\r\n"
	want := strings.NewReplacer(
		"MAIL FROM:<cron>", "MAIL FROM:<cron@relay.test>",
		"RCPT TO:<root> NOTIFY", "RCPT TO:<root@relay.test> NOTIFY",
		"rcpt to:<Postmaster>", "rcpt to:<Postmaster@relay.test>",
		"RCPT TO:<www-data>", "RCPT TO:<www-data@relay.test>",
	).Replace(stream)
	for seed := uint64(0); seed < 200; seed++ {
		if got := bareSession(t, stream, seed, true); got != want {
			t.Fatalf("seed %d:\n got %q\nwant %q", seed, got, want)
		}
	}
}

func TestQualifierRefusedData(t *testing.T) {
	// DATA refused: the next lines are commands again.
	stream := "MAIL FROM:<a@example.com>\r\nDATA\r\nRCPT TO:<root>\r\n"
	want := "MAIL FROM:<a@example.com>\r\nDATA\r\nRCPT TO:<root@relay.test>\r\n"
	for seed := uint64(0); seed < 50; seed++ {
		if got := bareSession(t, stream, seed, false); got != want {
			t.Fatalf("seed %d: got %q", seed, got)
		}
	}
}

func TestQualifierStopsAtSTARTTLS(t *testing.T) {
	stream := "STARTTLS\r\nRCPT TO:<root>\r\n\x16\x03\x01binary"
	for seed := uint64(0); seed < 50; seed++ {
		if got := bareSession(t, stream, seed, true); got != stream {
			t.Fatalf("seed %d: bytes after STARTTLS changed: %q", seed, got)
		}
	}
}

// FuzzQualifier: whatever the client sends, only envelope commands in
// command position change, and only by gaining "@relay.test".
func FuzzQualifier(f *testing.F) {
	f.Add("MAIL FROM:<a>\r\nRCPT TO:<b>\r\nDATA\r\nbody\r\n.\r\n", uint64(1))
	f.Add("BDAT 3\r\nabcRCPT TO:<x>\r\n", uint64(2))
	f.Fuzz(func(t *testing.T, stream string, seed uint64) {
		got := bareSession(t, stream, seed, seed%2 == 0)
		if strings.ReplaceAll(got, "@relay.test>", ">") != strings.ReplaceAll(stream, "@relay.test>", ">") {
			t.Fatalf("stream changed beyond qualification:\n in %q\nout %q", stream, got)
		}
		if len(got) < len(stream) {
			t.Fatalf("bytes lost")
		}
	})
}

// asciiUpper upper-cases ASCII letters only, keeping byte offsets.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 32
		}
	}
	return string(b)
}

// rvQualify runs a client stream through a qualifier: the client sends
// each element of groups in one write after the server's replies to the
// previous group, and replies lists what the server answers after each.
func rvQualify(t *testing.T, groups []string, replies [][]string) string {
	t.Helper()
	q := NewQualifier("relay.test")
	var out strings.Builder
	buf := make([]byte, 7)
	for i, g := range groups {
		r := strings.NewReader(g)
		for {
			n, err := q.Read(r, buf)
			out.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, rep := range replies[i] {
			q.Wrote([]byte(rep))
		}
	}
	return out.String()
}

// TestQualifierPipelinedRejectedRcpt: one refused recipient in a
// pipelined group does not make the qualifier lose the body that follows
// the 354.
func TestQualifierPipelinedRejectedRcpt(t *testing.T) {
	body := "Subject: x\r\n\r\nRCPT TO:<root>\r\n.\r\n"
	got := rvQualify(t,
		[]string{"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody>\r\nRCPT TO:<root>\r\nDATA\r\n", body, "RCPT TO:<root>\r\n"},
		[][]string{{"250 2.0.0 ok\r\n", "550 5.1.1 no\r\n", "250 2.0.0 ok\r\n", "354 go ahead\r\n"}, {"250 2.0.0 queued\r\n"}, nil})
	want := "MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@relay.test>\r\nRCPT TO:<root@relay.test>\r\nDATA\r\n" + body + "RCPT TO:<root@relay.test>\r\n"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	// All recipients refused: DATA is refused too, and what follows are
	// commands again.
	got = rvQualify(t,
		[]string{"MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody>\r\nDATA\r\n", "RCPT TO:<root>\r\n"},
		[][]string{{"250 2.0.0 ok\r\n", "550 5.1.1 no\r\n", "554 5.5.1 no valid recipients\r\n"}, nil})
	if want := "MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@relay.test>\r\nDATA\r\nRCPT TO:<root@relay.test>\r\n"; got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}
