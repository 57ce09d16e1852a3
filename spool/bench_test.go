package spool

import (
	"bytes"
	"context"
	"runtime"
	"testing"
)

var body4k = bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz01234\n"), 128)

// BenchmarkEnqueueSerial is one writer: every message pays a full commit.
func BenchmarkEnqueueSerial(b *testing.B) {
	s := openTemp(b)
	b.SetBytes(int64(len(body4k)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Enqueue(context.Background(), newMsg("b@example.org"), bytes.NewReader(body4k)); err != nil {
			b.Fatal(err)
		}
	}
	reportBatching(b, s)
}

// BenchmarkEnqueueParallel has 16 writers per CPU sharing commits.
func BenchmarkEnqueueParallel(b *testing.B) {
	s := openTemp(b)
	b.SetBytes(int64(len(body4k)))
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Enqueue(context.Background(), newMsg("b@example.org"), bytes.NewReader(body4k)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportBatching(b, s)
}

func reportBatching(b *testing.B, s *Spool) {
	st := s.Stats()
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Writes)/float64(st.Commits), "msgs/commit")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkEnqueue25MiB shows the memory cost of a maximum-size message:
// bytes allocated per Enqueue over the message size (alloc/size).
func BenchmarkEnqueue25MiB(b *testing.B) {
	s := openTemp(b)
	big := bytes.Repeat([]byte("x"), 25<<20)
	b.SetBytes(int64(len(big)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Enqueue(context.Background(), newMsg("b@example.org"), bytes.NewReader(big)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N)/float64(len(big)), "alloc/size")
}
