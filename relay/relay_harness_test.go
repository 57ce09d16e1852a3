package relay

// The delivery harness: a whole running Relay and a client that sends to it.

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
)

// dlvRelay is a whole running Relay.
type dlvRelay struct {
	r      *Relay
	addr   string // the SMTP listener
	clock  *dlvClock
	cancel context.CancelFunc
	done   chan error
}

// dlvStartRelay builds a Relay from the configuration in dir and runs it
// until the test ends.
func dlvStartRelay(t testing.TB, cfg *config.Config, opts Options) *dlvRelay {
	t.Helper()
	return dlvRunRelay(t, cfg, opts, dlvLogger(t))
}

// dlvRunRelay is dlvStartRelay with the relay's logger given: the relay runs
// on the harness's clock unless opts.Now says otherwise, and stops when the
// test ends.
func dlvRunRelay(t testing.TB, cfg *config.Config, opts Options, log *slog.Logger) *dlvRelay {
	t.Helper()
	clock := newDlvClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	r, err := New(cfg, log, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &dlvRelay{r: r, addr: cfg.Listen[0].Addr, clock: clock, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop")
		}
	})
	select {
	case <-ready:
	case err := <-d.done:
		t.Fatalf("relay stopped at start: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("relay not ready")
	}
	return d
}

// dlvSend sends one message to the relay's listener with go-smtp's client
// and checks the final reply is 250.
func dlvSend(t testing.TB, addr, from string, to []string, body string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := io.WriteString(w, body); err != nil {
		t.Fatal(err)
	}
	// go-smtp's client returns an *SMTPError for anything but 2yz.
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Logf("QUIT: %v", err)
	}
}
