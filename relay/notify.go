package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/upstream"
)

// Event is what the notify webhook receives as its JSON body and the
// notify command on its standard input: alerts that must reach the
// operator when mail itself is the broken path.
type Event struct {
	Event      string    `json:"event"` // bounce, stuck, upstream_down, auth_failed
	Time       time.Time `json:"time"`
	Hostname   string    `json:"hostname"`
	Upstream   string    `json:"upstream,omitempty"`
	ID         string    `json:"id,omitempty"`
	Recipients []string  `json:"recipients,omitempty"`
	Reason     string    `json:"reason"`
}

// Tuning of the notifier; tests shorten them.
var (
	// notifyEvery is the least time between two events of one type (per
	// upstream for the upstream events): a flood of bounces or a flapping
	// upstream must not become a flood of pages. Events in between are
	// counted and the count is told with the next one.
	notifyEvery = 5 * time.Minute
	// notifyTries is how often a failing hook is tried per event, with
	// notifyBackoff doubling between tries.
	notifyTries   = 3
	notifyBackoff = 2 * time.Second
	// notifyTimeout bounds one webhook request or command run.
	notifyTimeout = 10 * time.Second
	// notifyPoll is how often the queue and the upstreams are checked
	// for stuck mail, paused upstreams and AUTH failures.
	notifyPoll = 30 * time.Second
)

// notifier sends events to the notify webhook and command. Sending never
// blocks the caller: events wait in a small queue for one worker, and are
// dropped (and logged) when it is full.
type notifier struct {
	conf     func() config.Notify
	hostname func() string
	log      *slog.Logger
	now      func() time.Time
	client   *http.Client
	queue    chan Event

	mu         sync.Mutex
	last       map[notifyKey]time.Time // last event sent per rate limit key
	suppressed map[notifyKey]int

	// What the watcher saw last, to report changes only.
	paused    map[string]bool
	authFails map[string]uint64
	stuckID   string
}

func newNotifier(conf func() config.Notify, hostname func() string, log *slog.Logger, now func() time.Time) *notifier {
	return &notifier{
		conf: conf, hostname: hostname, log: log, now: now,
		client: &http.Client{Timeout: notifyTimeout,
			// A redirect could lead away from https: the answer counts.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		queue:      make(chan Event, 64),
		last:       map[notifyKey]time.Time{},
		suppressed: map[notifyKey]int{},
		paused:     map[string]bool{},
		authFails:  map[string]uint64{},
	}
}

// notifyKey is what notifyEvery limits: one event type, per upstream for the
// upstream events ("" for the others).
type notifyKey struct {
	event, upstream string
}

// send queues e unless the operator did not ask for its type, or one of
// its type went out less than notifyEvery ago.
func (n *notifier) send(e Event) {
	if n == nil {
		return
	}
	c := n.conf()
	if !c.Enabled() || !c.Wants(e.Event) {
		return
	}
	e.Time = n.now().UTC()
	e.Hostname = n.hostname()
	key := notifyKey{event: e.Event, upstream: e.Upstream}
	n.mu.Lock()
	if last, ok := n.last[key]; ok && e.Time.Sub(last) < notifyEvery {
		n.suppressed[key]++
		n.mu.Unlock()
		return
	}
	n.last[key] = e.Time
	if k := n.suppressed[key]; k > 0 {
		e.Reason += fmt.Sprintf(" (and %d more %s events since the last notification)", k, e.Event)
		delete(n.suppressed, key)
	}
	n.mu.Unlock()
	select {
	case n.queue <- e:
	default:
		n.log.Warn("notify queue full; event dropped", "event", e.Event, "id", e.ID, "upstream", e.Upstream)
	}
}

// run delivers queued events until ctx ends.
func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-n.queue:
			n.deliver(ctx, e)
		}
	}
}

// deliver hands e to the webhook and to the command, each tried up to
// notifyTries times.
func (n *notifier) deliver(ctx context.Context, e Event) {
	body, err := json.Marshal(e)
	if err != nil {
		return
	}
	c := n.conf()
	hooks := map[string]func(context.Context) error{}
	if c.Webhook != "" {
		hooks["webhook"] = func(ctx context.Context) error { return n.post(ctx, c.Webhook, body) }
	}
	if c.Command != "" {
		hooks["command"] = func(ctx context.Context) error { return n.exec(ctx, c.Command, body) }
	}
	for kind, hook := range hooks {
		wait := notifyBackoff
		for try := 1; ; try++ {
			hctx, cancel := context.WithTimeout(ctx, notifyTimeout)
			err := hook(hctx)
			cancel()
			if err == nil {
				n.log.Info("notified", "event", e.Event, "via", kind, "id", e.ID, "upstream", e.Upstream)
				break
			}
			if try >= notifyTries || ctx.Err() != nil {
				n.log.Error("notify failed; event not delivered", "event", e.Event, "via", kind, "tries", try, "err", err)
				break
			}
			n.log.Warn("notify failed; retrying", "event", e.Event, "via", kind, "try", try, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait *= 2
		}
	}
}

func (n *notifier) post(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "outbox")
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (n *notifier) exec(ctx context.Context, command string, body []byte) error {
	cmd := exec.CommandContext(ctx, command)
	cmd.Stdin = bytes.NewReader(body)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[:512]
		}
		if msg != "" {
			return fmt.Errorf("%s: %w: %s", command, err, msg)
		}
		return fmt.Errorf("%s: %w", command, err)
	}
	return nil
}

// watch checks, every notifyPoll, for a message queued longer than
// stuck_after, for upstreams that became paused and for new AUTH
// failures. It reads the spool's counts, never the whole queue.
func (n *notifier) watch(ctx context.Context, counts func() (oldestID string, oldest time.Time, err error), targets func() map[string]upstream.Target) {
	t := time.NewTicker(notifyPoll)
	defer t.Stop()
	for {
		n.check(counts, targets)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *notifier) check(counts func() (string, time.Time, error), targets func() map[string]upstream.Target) {
	if !n.conf().Enabled() {
		return
	}
	now := n.now()
	if id, oldest, err := counts(); err == nil {
		after := n.conf().StuckAfter
		if id != "" && now.Sub(oldest) >= after {
			if id != n.stuckID {
				n.stuckID = id
				n.send(Event{Event: "stuck", ID: id,
					Reason: fmt.Sprintf("message queued since %s, longer than stuck_after (%s)", oldest.UTC().Format(time.RFC3339), after)})
			}
		} else {
			n.stuckID = ""
		}
	}
	for name, t := range targets() {
		if p, ok := t.(pauser); ok {
			until, reason, paused := p.Paused()
			if paused && !n.paused[name] {
				n.send(Event{Event: "upstream_down", Upstream: name,
					Reason: fmt.Sprintf("paused until %s after: %s", until.UTC().Format(time.RFC3339), reason)})
			}
			n.paused[name] = paused
		}
		if f, ok := t.(failureCounter); ok {
			auth := f.Failures().Auth
			seen := n.authFails[name]
			if auth < seen {
				seen = 0 // a reload rebuilt the upstream and its counts
			}
			if auth > seen {
				n.send(Event{Event: "auth_failed", Upstream: name,
					Reason: fmt.Sprintf("%d failed authentications since the last check; mail for this upstream stays queued", auth-seen)})
			}
			n.authFails[name] = auth
		}
	}
}

// runNotify starts the notifier's sender and watcher; the channel closes
// when both have stopped after ctx ends.
func (r *Relay) runNotify(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.notify.run(ctx) }()
	go func() {
		defer wg.Done()
		r.notify.watch(ctx, r.spool.Oldest, func() map[string]upstream.Target { return r.current().router.targets })
	}()
	go func() { wg.Wait(); close(done) }()
	return done
}
