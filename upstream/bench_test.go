package upstream

import (
	"context"
	"github.com/outbox-mta/outbox/internal/testpki"
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
