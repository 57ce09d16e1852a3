package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sink is an SMTP upstream on loopback that records every message it
// accepts and answers DATA only after a delay, so that deliveries are in
// flight for a while.
type sink struct {
	delay time.Duration
	srv   *smtp.Server
	addr  *net.TCPAddr
	quit  chan struct{}
	gate  chan struct{} // DATA replies wait until it is closed

	mu   sync.Mutex
	got  map[string][][]byte // Message-ID → every copy received
	n    int                 // messages accepted, duplicates included
	cuts int                 // DATA that ended before the final dot
}

func newSink(t *testing.T, delay time.Duration) *sink {
	t.Helper()
	s := &sink{delay: delay, quit: make(chan struct{}), gate: make(chan struct{}), got: map[string][][]byte{}}
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.test"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.ErrorLog = log.New(io.Discard, "", 0) // the relay being killed resets connections
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().(*net.TCPAddr)
	go s.srv.Serve(l)
	t.Cleanup(func() {
		close(s.quit)
		s.srv.Close()
	})
	return s
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

type sinkSession struct{ s *sink }

func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		ss.s.mu.Lock()
		ss.s.cuts++
		ss.s.mu.Unlock()
		return err
	}
	// A slow upstream: the relay waits for this reply.
	select {
	case <-ss.s.gate:
	case <-ss.s.quit:
	}
	select {
	case <-time.After(ss.s.delay):
	case <-ss.s.quit:
	}
	body, err := stripReceived(data)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: err.Error()}
	}
	id := messageID(body)
	ss.s.mu.Lock()
	ss.s.got[id] = append(ss.s.got[id], body)
	ss.s.n++
	ss.s.mu.Unlock()
	return nil
}

// queueLen asks the running daemon, through `outbox queue ls --json`, how
// many messages are queued.
func queueLen(t *testing.T, e *env) int {
	t.Helper()
	cmd := exec.Command(outboxBin, "queue", "ls", "--json", "--config", e.conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("outbox queue ls --json: %v: %s", err, stderr.String())
	}
	var list []struct {
		ID         string `json:"id"`
		Recipients []struct {
			Status string `json:"status"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("outbox queue ls --json printed %q: %v", out, err)
	}
	return len(list)
}

// TestKillDuringDelivery queues mail for a slow upstream, SIGKILLs the
// daemon several times while deliveries are in flight, restarts it, and
// waits for the queue to drain: every accepted message reaches the
// upstream at least once, byte for byte (duplicates are allowed).
func TestKillDuringDelivery(t *testing.T) {
	const (
		total = 300
		kills = 3
	)
	sk := newSink(t, 10*time.Millisecond)
	up := fmt.Sprintf(`upstream "sink" {
  type            = "smtp"
  host            = "127.0.0.1"
  port            = %d
  tls             = "none"
  max_connections = 2
}`, sk.addr.Port)
	// A short retry in case a delivery is deferred (it should not be).
	queue := `queue {
  retry_initial = "200ms"
  retry_max     = "1s"
}`
	e := newEnv(t, up, queue)
	d := e.start()

	// Queue every message first, over a few sessions.
	var msgs []*message
	for i := range total {
		msgs = append(msgs, newMessage("dlv", i, 2048+i*16))
	}
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialSMTP(e.addr, 5*time.Second)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			for i := k; i < total; i += 4 {
				if err := send(c, msgs[i]); err != nil {
					errc <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// Deliveries begin only now, so the kills below land among them.
	close(sk.gate)

	for round := range kills {
		target := sk.count() + 10 + round*20
		waitFor(t, fmt.Sprintf("round %d: %d deliveries", round, target), 30*time.Second,
			func() bool { return sk.count() >= target })
		d.kill()
		t.Logf("round %d: SIGKILL after %d deliveries", round, sk.count())
		if sk.count() >= total {
			t.Fatalf("round %d: every message was delivered before the kill; the test killed nothing in flight", round)
		}
		d = e.start()
	}
	waitFor(t, "the queue to drain", 60*time.Second, func() bool { return queueLen(t, e) == 0 })
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d after SIGTERM, want 0", code)
	}
	if n := len(readSpool(t, e.spoolPath())); n != 0 {
		t.Errorf("spool holds %d messages after the queue drained", n)
	}

	sk.mu.Lock()
	defer sk.mu.Unlock()
	dups := 0
	for _, m := range msgs {
		copies := sk.got[m.id]
		if len(copies) == 0 {
			t.Errorf("message %s was accepted but never delivered", m.id)
			continue
		}
		dups += len(copies) - 1
		for _, c := range copies {
			if !bytes.Equal(c, m.data) {
				t.Errorf("message %s reached the upstream altered (%d bytes, sent %d)", m.id, len(c), len(m.data))
			}
		}
	}
	if len(sk.got) != total {
		t.Errorf("upstream got %d distinct messages, want %d", len(sk.got), total)
	}
	t.Logf("%d messages, %d deliveries (%d duplicates from the kills), %d DATA cut by a kill", total, sk.n, dups, sk.cuts)
}
