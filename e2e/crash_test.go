package e2e

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// holdUpstream is an upstream where nothing answers, and a queue that
// does not retry during a test: accepted mail stays in the spool.
func holdUpstream(t *testing.T) (upstream, queue string) {
	upstream = fmt.Sprintf(`upstream "hold" {
  type = "smtp"
  host = "127.0.0.1"
  port = %d
  tls  = "none"
}`, freePort(t))
	queue = `queue {
  retry_initial = "1h"
  retry_max     = "1h"
}`
	return upstream, queue
}

// TestKillDuringAccept SIGKILLs the daemon at random moments while eight
// clients send mail, restarts it each time, and then checks the spool:
// every message that got its 250 is there byte for byte, and nothing in
// it is half written.
func TestKillDuringAccept(t *testing.T) {
	const (
		clients   = 8
		rounds    = 5
		perClient = 2000 // bounds the load whatever happens
	)
	up, queue := holdUpstream(t)
	e := newEnv(t, up, queue)
	d := e.start()

	l := newLedger()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	senders(ctx, &wg, e.addr, clients, perClient, 0, l)
	defer func() { cancel(); wg.Wait() }()

	for round := range rounds {
		// Kill after a random number of 250s, so the kill lands at a
		// random point of some session's DATA or commit.
		target := l.count() + 20 + mrand.IntN(150)
		waitFor(t, fmt.Sprintf("round %d: %d messages accepted", round, target), 30*time.Second,
			func() bool { return l.count() >= target })
		d.kill()
		t.Logf("round %d: SIGKILL after %d accepted", round, l.count())
		d = e.start()
	}
	// Let the restarted daemon take some more, then stop cleanly.
	target := l.count() + 50
	waitFor(t, "messages after the last restart", 30*time.Second, func() bool { return l.count() >= target })
	cancel()
	wg.Wait()
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d after SIGTERM, want 0", code)
	}
	l.check(t, readSpool(t, e.spoolPath()))
}

// TestTermDuringData sends SIGTERM while one client is in the middle of a
// large DATA and others send in a loop or sit idle between messages. The
// daemon must let the DATA finish, commit it and answer 250, then exit 0;
// every message that got a 250 is in the spool.
func TestTermDuringData(t *testing.T) {
	up, queue := holdUpstream(t)
	e := newEnv(t, up, queue)
	d := e.start()

	l := newLedger()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	senders(ctx, &wg, e.addr, 4, 500, 0, l)
	defer func() { cancel(); wg.Wait() }()

	// An idle client, between messages when the signal comes.
	idle, err := dialSMTP(e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	first := newMessage("idle", 0, 1024)
	l.attempt(first)
	if err := send(idle, first); err != nil {
		t.Fatalf("idle client's first message: %v", err)
	}
	l.accept(first)

	// The slow client: a big message, of which most is written before the
	// signal. Writing far more than the socket buffers hold proves that
	// the daemon is reading the body, that is, inside DATA.
	big := newMessage("big", 0, 9<<20)
	l.attempt(big)
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	slow := smtp.NewClient(conn)
	defer slow.Close()
	if err := slow.Hello("slow.e2e.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := slow.Mail(big.from, nil); err != nil {
		t.Fatal(err)
	}
	if err := slow.Rcpt(big.to, nil); err != nil {
		t.Fatal(err)
	}
	w, err := slow.Data()
	if err != nil {
		t.Fatal(err)
	}
	cut := 8 << 20
	if _, err := w.Write(big.data[:cut]); err != nil {
		t.Fatalf("writing the first part of the big message: %v", err)
	}
	waitFor(t, "some messages from the looping clients", 30*time.Second, func() bool { return l.count() >= 20 })

	d.signal(syscall.SIGTERM)
	d.waitLog("shutting down", 1, 10*time.Second)
	// The rest of the body, in small pieces, after the daemon began to
	// shut down.
	for rest := big.data[cut:]; len(rest) > 0; {
		k := min(64<<10, len(rest))
		if _, err := w.Write(rest[:k]); err != nil {
			t.Fatalf("daemon cut the session in the middle of DATA: %v", err)
		}
		rest = rest[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatalf("big message after SIGTERM: got %v, want 250", err)
	}
	l.accept(big)

	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("daemon exited %d after SIGTERM, want 0", code)
	}
	cancel()
	wg.Wait()
	// The idle client was disconnected, not left hanging.
	if err := idle.Noop(); err == nil {
		t.Error("idle session still answers after the daemon stopped")
	}
	l.check(t, readSpool(t, e.spoolPath()))
}
