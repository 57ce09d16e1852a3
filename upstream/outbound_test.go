package upstream

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/outbox-mta/outbox/internal/testpki"
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
		Name: "aiosmtpd", Host: "127.0.0.1", Port: port, TLS: "starttls",
		RootCAs: ca.Pool, Hostname: "client.test",
		Username: "relay@example.com", Password: staticSecret("pw"),
		CommandTimeout: 20 * time.Second, Logger: testLogger(&logs),
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
