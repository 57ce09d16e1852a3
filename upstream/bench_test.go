package upstream

import (
	"context"
	"github.com/outbox-mta/outbox/internal/testpki"
	"io"
	"strings"
	"testing"
)

// BenchmarkSMTPDeliver relays a 4 KiB message over pooled STARTTLS+AUTH
// connections to the in-test server.
func BenchmarkSMTPDeliver(b *testing.B) {
	ca := testpki.NewCA(b, "bench CA")
	fs := startFake(b, ca, fakeOptions{User: "u", Password: "pw"})
	var logs syncBuffer
	cfg := clientConfig(fs, ca, &logs)
	cfg.MaxConnections = 4
	cfg.Logger = nil
	s := newTarget(b, cfg)
	body := "From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
	env := envelope(body, "b@example.net")
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			out := s.Deliver(context.Background(), env)
			if out.Results[0].Class != Sent {
				b.Errorf("result %+v", out.Results[0])
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCRLFWriter measures the line-end normalisation every message
// goes through on its way out, on 32 KiB writes as io.Copy makes them.
func BenchmarkCRLFWriter(b *testing.B) {
	chunk := []byte(strings.Repeat(strings.Repeat("x", 78)+"\r\n", 32<<10/80))
	w := newCRLFWriter(io.Discard)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		w.Write(chunk)
	}
}

// BenchmarkTo7bit measures the 8BITMIME conversion of a 1 MiB 8-bit text
// message (only for upstreams that do not offer 8BITMIME).
func BenchmarkTo7bit(b *testing.B) {
	msg := "From: a@example.com\r\nSubject: x\r\n\r\n" + strings.Repeat("Gr\xc3\xbc\xc3\x9fe "+strings.Repeat("x", 66)+"\r\n", 1<<20/80)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if err := to7bit(io.Discard, strings.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlanSend measures what one attempt does with a 1 MiB 8-bit
// text message for an upstream without 8BITMIME: look at it, convert it
// for its size, and convert it again for the send.
func BenchmarkPlanSend(b *testing.B) {
	msg := "From: a@example.com\r\nSubject: x\r\n\r\n" + strings.Repeat("Gr\xc3\xbc\xc3\x9fe "+strings.Repeat("x", 66)+"\r\n", 1<<20/80)
	env := &Envelope{From: "a@example.com", Recipients: []Rcpt{{Address: "b@example.net"}}, Size: int64(len(msg)),
		Body: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(msg)), nil }}
	s := &SMTP{addr: "bench:25"}
	res := make([]Result, 1)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		out, ok := s.plan(env, false, false, res)
		if !ok || !out.convert {
			b.Fatalf("plan: %v %+v", ok, res)
		}
		data, done, err := out.open(env)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, data)
		done()
	}
}
