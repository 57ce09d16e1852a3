package relay

// The target harness: a recording upstream.Target driven by a script.

import (
	"context"
	"io"
	"sync"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/upstream"
)

// dlvCall is one Deliver call as a dlvTarget saw it.
type dlvCall struct {
	From   string
	To     []string
	Notify [][]dsn.Notify
	Body   []byte
}

// dlvTarget is a recording upstream.Target. Each recipient has a script of
// results, one per call that includes it; an exhausted or missing script
// means Sent.
type dlvTarget struct {
	name string

	mu     sync.Mutex
	script map[string][]upstream.Result
	calls  []dlvCall
	// block, when set, makes Deliver wait until it is closed or ctx ends
	// (the recipients are then deferred).
	block   chan struct{}
	started chan struct{} // receives a value as each Deliver begins (if set)
}

func newDlvTarget(name string) *dlvTarget {
	return &dlvTarget{name: name, script: map[string][]upstream.Result{}}
}

// on appends results to the script of rcpt.
func (d *dlvTarget) on(rcpt string, rs ...upstream.Result) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.script[rcpt] = append(d.script[rcpt], rs...)
}

func (d *dlvTarget) Name() string { return d.name }
func (d *dlvTarget) Close() error { return nil }

func (d *dlvTarget) Deliver(ctx context.Context, env *upstream.Envelope) upstream.Outcome {
	d.mu.Lock()
	block, started := d.block, d.started
	d.mu.Unlock()
	if started != nil {
		started <- struct{}{}
	}
	// Port 25, as the harness configurations' tls = "none" upstreams have.
	out := upstream.Outcome{Remote: d.name + ".test", Port: 25}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			for range env.Recipients {
				out.Results = append(out.Results, upstream.Result{Class: upstream.Deferred, Message: "cancelled: " + ctx.Err().Error()})
			}
			return out
		}
	}
	call := dlvCall{From: env.From}
	if rc, err := env.Body(); err == nil {
		call.Body, _ = io.ReadAll(rc)
		rc.Close()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range env.Recipients {
		call.To = append(call.To, r.Address)
		call.Notify = append(call.Notify, r.Notify)
		res := upstream.Result{Class: upstream.Sent, Code: 250, Enhanced: "2.0.0", Message: "ok"}
		if s := d.script[r.Address]; len(s) > 0 {
			res, d.script[r.Address] = s[0], s[1:]
		}
		out.Results = append(out.Results, res)
	}
	d.calls = append(d.calls, call)
	return out
}

func (d *dlvTarget) Calls() []dlvCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dlvCall(nil), d.calls...)
}

// callsTo returns the calls that included rcpt.
func (d *dlvTarget) callsTo(rcpt string) []dlvCall {
	var out []dlvCall
	for _, c := range d.Calls() {
		for _, to := range c.To {
			if to == rcpt {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// bounces returns the calls from the null sender to rcpt.
func (d *dlvTarget) bounces(rcpt string) []dlvCall {
	var out []dlvCall
	for _, c := range d.callsTo(rcpt) {
		if c.From == "" {
			out = append(out, c)
		}
	}
	return out
}
