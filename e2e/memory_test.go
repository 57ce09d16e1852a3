package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// procStatus reads the kB figures of /proc/PID/status.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out, nil
}

// TestMemoryLargeMessages sends eight 24 MiB messages at once and checks
// the daemon's peak memory: bodies stream into the spool, so it must stay
// far below the 192 MiB the bodies add up to.
func TestMemoryLargeMessages(t *testing.T) {
	const (
		sessions = 8
		size     = 24 << 20
		// Bounds in kB. Before bodies streamed, the daemon peaked at
		// 764 MiB (752 MiB anonymous); streaming brought it to 55 MiB
		// (43 MiB anonymous).
		limitRSS  = 150 << 10
		limitAnon = 120 << 10
	)
	up, queue := holdUpstream(t)
	e := newEnv(t, up, queue)
	d := e.start()
	pid := d.cmd.Process.Pid
	idle, err := procStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	var peakAnon atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if st, err := procStatus(pid); err == nil && st["RssAnon"] > peakAnon.Load() {
				peakAnon.Store(st["RssAnon"])
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond): // sampling period
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, sessions)
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialSMTP(e.addr, 10*time.Second)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			errs[i] = send(c, newMessage("big", i, size))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	for i, err := range errs {
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	end, err := procStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d × %d MiB in %v: idle VmHWM %d MiB, RssAnon %d MiB; peak VmHWM %d MiB, RssAnon %d MiB",
		sessions, size>>20, elapsed.Round(time.Millisecond), idle["VmHWM"]>>10, idle["RssAnon"]>>10, end["VmHWM"]>>10, peakAnon.Load()>>10)
	if end["VmHWM"] > limitRSS {
		t.Errorf("peak RSS %d MiB, want under %d MiB", end["VmHWM"]>>10, limitRSS>>10)
	}
	if peakAnon.Load() > limitAnon {
		t.Errorf("peak anonymous memory %d MiB, want under %d MiB", peakAnon.Load()>>10, limitAnon>>10)
	}
	if n := queueLen(t, e); n != sessions {
		t.Errorf("%d messages queued, want %d", n, sessions)
	}
}
