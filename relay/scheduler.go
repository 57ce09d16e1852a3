package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// Queue is what the scheduler needs of the spool.
type Queue interface {
	Store
	DueExcept(now time.Time, limit int, skip func(id string) bool) ([]*spool.Message, error)
	// SetState and State keep the notices owed (see record).
	SetState(key string, val []byte) error
	State(key string) ([]byte, error)
	NextDueExcept(skip func(id string) bool) (time.Time, bool, error)
	Update(id string, fn func(m *spool.Message) error) (*spool.Message, error)
	Body(id string) (io.ReadCloser, error)
}

// Scheduler hands due messages to delivery workers. It sleeps until the
// earliest next attempt or until Kick, and never scans the whole queue.
type Scheduler struct {
	q   Queue
	log *slog.Logger
	now func() time.Time
	// ShutdownGrace is how long in-flight deliveries may run after Run's
	// context ends before they are cancelled (and stay queued).
	ShutdownGrace time.Duration

	metrics *metrics  // nil: none
	notify  *notifier // nil: none
	health  health
	// live is the configuration in force, which a reload replaces.
	live *live

	wake    chan struct{}
	workers chan struct{} // bounds concurrent deliveries

	// busy holds the messages the due index shows as due that must not
	// be started: the zero time for one being delivered (until its
	// results are recorded), else the time until which one whose results
	// could not be recorded (a spool that cannot write) waits instead of
	// being re-sent in a tight loop.
	//
	// The spool alone could say this, as mox's queue does: the commit that
	// claims a message would also move its next attempt to after the
	// backoff, and dispatch would read only the due index. That costs a
	// commit before every delivery, which group commit does not absorb:
	// the dispatcher claims messages one batch at a time, and an idle relay
	// pays one more fsync between a message's 250 and its delivery.
	// Measured with outbox-bench (4 KiB messages, 10 injecting sessions,
	// four runs of each interleaved, 2 cores): the idle relay's median
	// latency rose from 0.20-0.28 ms to 1.42-2.22 ms, and the end-to-end
	// relay with max_connections 2 fell from 204-418 to 130-193 msgs/s.
	// A claim would also have to be told apart from a delivery that is
	// still running past its claimed time (deliveries have no upper
	// bound), which needs this memory again. A crash loses nothing kept
	// here: a message being delivered keeps its past next-attempt time in
	// the spool, so a restarted daemon tries it again at once.
	mu   sync.Mutex
	busy map[string]time.Time
	wg   sync.WaitGroup

	// owed holds the notices built but not yet queued (see record);
	// owedRetry is when to try queuing them again.
	noticeMu  sync.Mutex
	owed      []*owedNotice
	owedRetry time.Time
}

// NewScheduler builds a scheduler that works with the configuration in
// force in l. now is the clock (time.Now in production; tests inject their
// own to test backoff and expiry).
func NewScheduler(q Queue, l *live, log *slog.Logger, now func() time.Time) *Scheduler {
	workers := 0
	for _, u := range l.load().cfg.Upstreams {
		workers += 2 * u.MaxConnections
	}
	if workers < 4 {
		workers = 4
	}
	return &Scheduler{
		q: q, live: l, log: log, now: now,
		ShutdownGrace: 30 * time.Second,
		wake:          make(chan struct{}, 1),
		workers:       make(chan struct{}, workers),
		busy:          map[string]time.Time{},
	}
}

// conf returns the configuration in force.
func (s *Scheduler) conf() *config.Config { return s.live.load().cfg }

// acquire returns the snapshot a delivery works with; release it when the
// delivery's results are recorded.
func (s *Scheduler) acquire() *snapshot { return s.live.acquire() }

// Kick wakes the scheduler: new mail arrived or the clock moved.
func (s *Scheduler) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Flush makes every queued message due now.
func (s *Scheduler) Flush(list []*spool.Message) int {
	n := 0
	now := s.now()
	for _, m := range list {
		if m.Held || !m.NextAttempt.After(now) {
			continue
		}
		if _, err := s.q.Update(m.ID, func(m *spool.Message) error { m.NextAttempt = now; return nil }); err == nil {
			n++
		}
	}
	s.Kick()
	return n
}

// Run dispatches until ctx ends, then waits for in-flight deliveries (up
// to ShutdownGrace, after which they are cancelled and stay queued).
func (s *Scheduler) Run(ctx context.Context) {
	deliverCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	s.loadOwed()
	s.queueOwed(s.now())
	for {
		wait := s.dispatch(ctx, deliverCtx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			done := make(chan struct{})
			go func() { s.wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(s.ShutdownGrace):
				s.log.Warn("cancelling in-flight deliveries; they stay queued", "grace", s.ShutdownGrace)
				cancel()
				<-done
			}
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// dispatch starts workers for due messages and returns how long to sleep.
func (s *Scheduler) dispatch(ctx, deliverCtx context.Context) time.Duration {
	const idle = time.Hour
	for ctx.Err() == nil {
		now := s.now()
		// Read the queue under mu: a worker records its results before it
		// leaves busy, so each due message is either still in flight
		// here or read as recorded, never in a stale state that would be
		// delivered a second time.
		s.mu.Lock()
		free := cap(s.workers) - len(s.workers)
		if free == 0 {
			s.mu.Unlock()
			return idle // all workers busy; a finishing one kicks us
		}
		due, err := s.q.DueExcept(now, free, s.isBusy)
		if err != nil {
			s.mu.Unlock()
			s.log.Error("reading the queue", "err", err)
			return 10 * time.Second
		}
		started := 0
		for _, m := range due {
			select {
			case s.workers <- struct{}{}:
			default:
				s.mu.Unlock()
				return idle // all workers busy; a finishing one kicks us
			}
			s.busy[m.ID] = time.Time{}
			started++
			s.wg.Add(1)
			go func(m *spool.Message) {
				defer func() {
					<-s.workers
					s.wg.Done()
					s.Kick()
				}()
				s.finish(m.ID, s.deliver(deliverCtx, m))
			}(m)
		}
		s.mu.Unlock()
		if started == 0 {
			break
		}
	}
	wait := idle
	next, ok, err := s.nextDue()
	if err == nil && ok {
		// Messages that became due since the DueExcept call above: look again soon.
		wait = max(next.Sub(s.now()), 10*time.Millisecond)
	}
	if d, ok := s.retryOwed(); ok {
		wait = min(wait, d)
	}
	s.mu.Lock()
	now := s.now()
	for id, until := range s.busy {
		if until.IsZero() {
			continue // in flight: its worker kicks us
		}
		if !now.Before(until) {
			// Over: isBusy no longer holds the message back, and one that
			// left the due index (held, deleted) must not keep us awake.
			delete(s.busy, id)
			continue
		}
		wait = min(wait, max(until.Sub(now), 10*time.Millisecond))
	}
	s.mu.Unlock()
	return wait
}

// nextDue returns the earliest next attempt among messages not busy.
// In-flight messages keep their old, past due time until their results
// are recorded (their workers kick us then); going by the queue's first
// entry alone would let one slow delivery hold back every retry behind it.
func (s *Scheduler) nextDue() (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.NextDueExcept(s.isBusy)
}

// isBusy reports whether a message is being delivered or cooling down;
// s.mu is held.
func (s *Scheduler) isBusy(id string) bool {
	until, ok := s.busy[id]
	if !ok {
		return false
	}
	if until.IsZero() || s.now().Before(until) {
		return true
	}
	delete(s.busy, id)
	return false
}

// finish ends the delivery of a message: it leaves busy, or, when its
// results could not be recorded, stays there cooling down until the time
// deliver returned. Only the message's own worker calls it, so an
// in-flight entry never ends while its delivery still runs (a cool-down
// time written earlier could already be past and free it for a second,
// concurrent delivery).
func (s *Scheduler) finish(id string, coolUntil time.Time) {
	s.mu.Lock()
	if coolUntil.IsZero() {
		delete(s.busy, id)
	} else {
		s.busy[id] = coolUntil
	}
	s.mu.Unlock()
}

// attempt is the outcome for one recipient of one delivery round.
type attempt struct {
	res    upstream.Result
	remote string
	local  bool   // remote is a folder on this machine (a Maildir), not an MTA
	relay  string // the upstream's name and address, for the log
	tried  bool
}

// deliver makes one attempt at every pending recipient of m, records the
// results durably, and sends the notifications they call for. It returns
// the cool-down time that record returns.
func (s *Scheduler) deliver(ctx context.Context, m *spool.Message) (coolUntil time.Time) {
	// The whole attempt routes over one snapshot's targets, which stay
	// open until it ends even if a reload replaces them meanwhile.
	snap := s.acquire()
	defer snap.release()
	router := snap.router
	results := make(map[int]attempt)
	// Group pending recipients by their route, in the order first seen; a
	// message has few distinct routes, so a linear search finds a group.
	type group struct {
		route []string // upstream names, tried in turn
		idx   []int
	}
	var groups []group
	for i, r := range m.Recipients {
		if r.Status != spool.Pending {
			continue
		}
		route := router.Route(m.From, r.Address)
		k := slices.IndexFunc(groups, func(g group) bool { return slices.Equal(g.route, route) })
		if k < 0 {
			groups = append(groups, group{route: route})
			k = len(groups) - 1
		}
		groups[k].idx = append(groups[k].idx, i)
	}
	for _, g := range groups {
		idx := g.idx
		for _, name := range g.route {
			if len(idx) == 0 || ctx.Err() != nil {
				break
			}
			idx = s.try(ctx, router, name, m, idx, results)
		}
	}
	return s.record(m, results)
}

// try delivers recipients idx of m through one upstream and returns those
// deferred, for the next upstream of the route to try.
func (s *Scheduler) try(ctx context.Context, router *Router, name string, m *spool.Message, idx []int, results map[int]attempt) []int {
	t := router.Target(name)
	if t == nil {
		for _, i := range idx {
			results[i] = attempt{res: upstream.Result{Class: upstream.Deferred, Message: "no upstream named " + name}, tried: true}
		}
		return nil
	}
	env := &upstream.Envelope{
		From: m.From, Size: m.Size, UTF8: m.UTF8,
		EnvID: m.EnvID, Ret: m.Ret,
	}
	for _, i := range idx {
		r := m.Recipients[i]
		env.Recipients = append(env.Recipients, upstream.Rcpt{Address: r.Address, Notify: r.Notify, ORCPT: r.ORCPT})
	}
	env.Body = func() (io.ReadCloser, error) { return s.q.Body(m.ID) }
	start := time.Now()
	out := t.Deliver(ctx, env)
	s.metrics.attempt(name, time.Since(start), out)
	s.health.record(name, s.now(), out)
	var deferred []int
	for k, i := range idx {
		res := upstream.Result{Class: upstream.Deferred, Message: "no result from upstream " + name}
		if k < len(out.Results) {
			res = out.Results[k]
		}
		results[i] = attempt{res: res, remote: out.Remote, local: out.Local, relay: relayName(name, out), tried: true}
		if res.Class == upstream.Deferred {
			deferred = append(deferred, i)
		}
	}
	return deferred
}

// relayName names an upstream in the delivery log as name[host:port]
// (name[maildir:path] for a Maildir), which says both which block of
// relay.hcl was used and where it led.
func relayName(name string, out upstream.Outcome) string {
	if out.Local || out.Remote == "" || out.Port == 0 {
		return name + "[" + out.Remote + "]"
	}
	return name + "[" + net.JoinHostPort(out.Remote, strconv.Itoa(out.Port)) + "]"
}

// backoff is the delay before attempt n+1: retry_initial doubling up to
// retry_max, with ±10% jitter so a burst of deferrals spreads out.
func (s *Scheduler) backoff(attempts int) time.Duration {
	q := s.conf().Queue
	d := q.RetryInitial
	for i := 1; i < attempts && d < q.RetryMax; i++ {
		d *= 2
	}
	if d > q.RetryMax {
		d = q.RetryMax
	}
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// record applies one round's results to the spool and queues the DSNs the
// round calls for. The results are saved first, so a notice that cannot
// be queued never makes the round run again (which would send the message
// a second time to the recipients that accepted it). The notices are built
// before that (the original's body leaves the spool with its last
// recipient) and written to the spool's list of owed notices, then queued;
// an owed notice that cannot be queued is retried later, after a restart
// too. A crash between these steps can duplicate a notice but never lose
// one. When the results cannot be written it returns the time until which
// the message waits instead of being re-sent in a tight loop (the zero
// time otherwise).
func (s *Scheduler) record(m *spool.Message, results map[int]attempt) (coolUntil time.Time) {
	cfg := s.conf()
	now := s.now()
	// Work out the new state on a copy first, to know which notices to send.
	next := *m
	next.Recipients = append([]spool.Recipient(nil), m.Recipients...)
	apply(&next, results, now, cfg.Queue.Lifetime, s.backoff(m.Attempts+1))

	var failed, delivered []int
	for i, r := range next.Recipients {
		if m.Recipients[i].Status != spool.Pending {
			continue
		}
		switch r.Status {
		case spool.Failed:
			if dsn.Wants(r.Notify, dsn.NotifyFailure) {
				failed = append(failed, i)
			}
		case spool.Sent:
			if dsn.Wants(r.Notify, dsn.NotifySuccess) {
				delivered = append(delivered, i)
			}
		}
	}
	warn := cfg.Queue.DelayWarning > 0 && !m.DelayWarned && !next.Done() && now.Sub(m.Arrived) >= cfg.Queue.DelayWarning
	var delayed []int
	if warn {
		for i, r := range next.Recipients {
			if r.Status == spool.Pending && dsn.Wants(r.Notify, dsn.NotifyDelay) {
				delayed = append(delayed, i)
			}
		}
	}
	var notices []*owedNotice
	for _, n := range []struct {
		action dsn.Action
		idx    []int
	}{{dsn.Failed, failed}, {dsn.Delivered, delivered}, {dsn.Delayed, delayed}} {
		if len(n.idx) > 0 {
			if o := s.buildNotice(&next, n.action, n.idx, results, now); o != nil {
				notices = append(notices, o)
			}
		}
	}
	s.owe(notices)
	stored, err := s.q.Update(m.ID, func(cur *spool.Message) error {
		apply(cur, results, now, cfg.Queue.Lifetime, next.NextAttempt.Sub(now))
		if warn {
			cur.DelayWarned = true
		}
		return nil
	})
	if errors.Is(err, spool.ErrNotFound) {
		// The round happened all the same: its notices still go out.
		s.log.Info("message deleted from the queue during its delivery attempt", "id", m.ID)
		s.queueOwed(now)
		return time.Time{}
	}
	if err != nil {
		// The round will run again and decide again: its notices wait
		// for that, or they would be sent twice.
		s.forgive(notices)
		s.log.Error("cannot record delivery results; the message stays queued and will be retried", "id", m.ID, "err", err)
		return now.Add(s.backoff(m.Attempts + 1))
	}
	s.queueOwed(now)
	var idx []int
	for i := range stored.Recipients {
		if m.Recipients[i].Status == spool.Pending {
			idx = append(idx, i)
		}
	}
	s.report(m, stored, idx, results, now)
	return time.Time{}
}

// report writes the delivery lines of recipients idx after a round (see
// logResult) and sends one notify "bounce" event for those that failed for
// good: the scheduler's rounds and the maildrop import's refusals alike.
func (s *Scheduler) report(m, stored *spool.Message, idx []int, results map[int]attempt, now time.Time) {
	var gone []string
	var reason string
	for _, i := range idx {
		if st := s.logResult(m, stored, i, results, now); st == "bounced" || st == "expired" {
			r := stored.Recipients[i]
			gone = append(gone, r.Address)
			reason = st + ": " + r.LastError
		}
	}
	if len(gone) > 0 {
		s.notify.send(Event{Event: "bounce", ID: m.ID, Recipients: gone, Reason: reason})
	}
}

// logResult writes the delivery line of recipient i after a round, in the
// shape admins grep in Postfix's log: id, to, relay, delay (seconds since
// arrival), attempt, dsn, status (sent, deferred, bounced or expired) and
// reply (the upstream's reply text or the error). Recipients the round
// neither tried nor expired get no line.
func (s *Scheduler) logResult(m, stored *spool.Message, i int, results map[int]attempt, now time.Time) (status string) {
	r := stored.Recipients[i]
	a, tried := results[i]
	tried = tried && a.tried
	if !tried && r.Status == spool.Pending {
		return ""
	}
	status, msg, level := "deferred", "deferred", slog.LevelInfo
	switch {
	case r.Status == spool.Sent:
		status, msg = "sent", "delivered"
	case r.Status == spool.Failed && tried && a.res.Class == upstream.Failed:
		status, msg, level = "bounced", "bounced", slog.LevelWarn
	case r.Status == spool.Failed:
		status, msg, level = "expired", "expired", slog.LevelWarn
	}
	relay, reply := a.relay, describe(a.res)
	if !tried {
		relay, reply = r.Remote, m.Recipients[i].LastError
	}
	attrs := []any{
		"id", m.ID, "to", r.Address, "relay", relay,
		"delay", math.Round(now.Sub(m.Arrived).Seconds()*100) / 100,
		"attempt", r.Attempts, "dsn", dsnCode(a.res, tried, status, r.Code),
		"status", status, "reply", reply,
	}
	attrs = append(attrs, tagAttrs(m.Tags)...)
	s.metrics.tagDelivery(m.Tags, status)
	switch status {
	case "deferred":
		attrs = append(attrs, "next_attempt", stored.NextAttempt.Format(time.RFC3339))
	case "bounced", "expired":
		s.metrics.final(status)
	}
	s.log.Log(context.Background(), level, msg, attrs...)
	return status
}

// dsnCode is the enhanced status code of a delivery line: the upstream's
// own when it sent one, else one derived from its reply code or from the
// outcome (RFC 3463: X.0.0 for "other", 4.4.7 for an expired message).
func dsnCode(res upstream.Result, tried bool, status, stored string) string {
	switch {
	case status == "expired":
		return codeExpired
	case tried && res.Enhanced != "":
		return res.Enhanced
	case tried && res.Code >= 200 && res.Code < 600:
		return fmt.Sprintf("%d.0.0", res.Code/100)
	case status == "sent":
		return "2.0.0"
	case status == "bounced":
		return "5.0.0"
	case stored != "":
		return stored
	}
	return "4.0.0"
}

// codeExpired is the enhanced status of a recipient that was still
// pending when the message's lifetime ran out (RFC 3463, 4.4.7: delivery
// time expired). apply stores it; the delivery log and the failure notice
// tell such a recipient from one an upstream refused by it.
const codeExpired = "4.4.7"

// apply folds one round's results into m: per-recipient state, the attempt
// count, expiry after lifetime, and the next attempt time.
func apply(m *spool.Message, results map[int]attempt, now time.Time, lifetime, delay time.Duration) {
	m.Attempts++
	for i := range m.Recipients {
		r := &m.Recipients[i]
		a, ok := results[i]
		if r.Status != spool.Pending || !ok || !a.tried {
			continue
		}
		r.Attempts++
		r.Updated = now
		r.Remote = a.remote
		r.Code = a.res.Enhanced
		switch a.res.Class {
		case upstream.Sent:
			r.Status, r.LastError = spool.Sent, ""
		case upstream.Failed:
			r.Status, r.LastError = spool.Failed, describe(a.res)
		default:
			r.LastError = describe(a.res)
		}
	}
	if now.Sub(m.Arrived) >= lifetime {
		for i := range m.Recipients {
			r := &m.Recipients[i]
			if r.Status == spool.Pending {
				r.Status = spool.Failed
				last := r.LastError
				if last == "" {
					last = "no attempt succeeded"
				}
				r.LastError = fmt.Sprintf("delivery time expired after %s; last error: %s", lifetime, last)
				r.Code = codeExpired
			}
		}
	}
	m.NextAttempt = now.Add(delay)
	// Never sleep past the deadline: the sender hears at the lifetime,
	// not up to retry_max later.
	if deadline := m.Arrived.Add(lifetime); m.NextAttempt.After(deadline) && !m.Done() {
		m.NextAttempt = deadline
	}
}

// describe renders a result on one line, for last_error and the logs.
func describe(r upstream.Result) string {
	msg := strings.Join(strings.Fields(r.Message), " ")
	switch {
	case r.Code != 0 && r.Enhanced != "":
		return fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, msg)
	case r.Code != 0:
		return fmt.Sprintf("%d %s", r.Code, msg)
	}
	return msg
}

// buildNotice builds a DSN about recipients idx of m, nil if none is to be
// sent. Mail from the null sender is never answered: the notice goes to
// double_bounce if configured, else it is only logged.
func (s *Scheduler) buildNotice(m *spool.Message, action dsn.Action, idx []int, results map[int]attempt, now time.Time) *owedNotice {
	cfg := s.conf()
	to := m.From
	if to == "" {
		if action != dsn.Failed || cfg.Queue.DoubleBounce == "" {
			s.log.Warn("not reporting on a message from the null sender", "id", m.ID, "action", action)
			return nil
		}
		to = cfg.Queue.DoubleBounce
	}
	d := &DSN{
		ReportingMTA: cfg.Hostname,
		To:           to,
		EnvID:        m.EnvID,
		Ret:          m.Ret,
		ArrivalDate:  m.Arrived,
		Now:          now,
	}
	for _, i := range idx {
		r := m.Recipients[i]
		a := results[i]
		status := r.Code
		dr := DSNRecipient{Address: r.Address, ORCPT: r.ORCPT, Action: action, RemoteMTA: a.remote, LastAttempt: r.Updated}
		switch action {
		case dsn.Failed:
			if status == "" {
				status = "5.0.0"
			}
			if a.res.Code != 0 && r.Code != codeExpired {
				dr.Diagnostic = describe(a.res)
			} else {
				dr.Diagnostic, dr.DiagnosticType = r.LastError, "x-outbox"
			}
		case dsn.Delayed:
			status = "4.0.0"
			if a.res.Code/100 == 4 && a.res.Enhanced != "" {
				status = a.res.Enhanced
			}
			dr.Diagnostic, dr.DiagnosticType = r.LastError, "x-outbox"
			if a.res.Code != 0 {
				dr.Diagnostic, dr.DiagnosticType = describe(a.res), "smtp"
			}
			dr.WillRetryUntil = m.Arrived.Add(cfg.Queue.Lifetime)
		case dsn.Delivered:
			status = "2.0.0"
		}
		dr.Status = status
		if a.local {
			dr.RemoteMTA = ""
		}
		d.Recipients = append(d.Recipients, dr)
	}
	report, err := s.buildReport(d, m)
	if err != nil {
		// Without the original (a body that cannot be read) the report
		// still tells the sender what happened.
		s.log.Error("cannot attach the original to a delivery status notification; sending it without", "id", m.ID, "err", err)
		d.Original = nil
		if report, err = d.Build(); err != nil {
			s.log.Error("cannot build a delivery status notification", "id", m.ID, "action", action, "err", err)
			return nil
		}
	}
	// The notice is itself mail from <>: if it fails, the default NOTIFY
	// sends it on to double_bounce. A notice about mail from <> (a double
	// bounce) asks for nothing, so failures end there instead of looping.
	var notice []dsn.Notify
	if m.From == "" {
		notice = []dsn.Notify{dsn.NotifyNever}
	}
	var rcpts []spool.Recipient
	for _, addr := range s.noticeRecipients(to) {
		rcpts = append(rcpts, spool.Recipient{Address: addr, Status: spool.Pending, Notify: notice})
	}
	return &owedNotice{
		Message: spool.Message{
			ID:         spool.NewID(now),
			From:       "",
			Recipients: rcpts,
			Submitter:  "outbox (" + string(action) + " notice for " + m.ID + ")",
			Arrived:    now,
		},
		About:  m.ID,
		Action: action,
		Report: report,
	}
}

// noticeRecipients resolves where a notice to addr goes. A local sender
// (the shim's user@hostname) is a name of this machine, not a mailbox
// upstream: it goes through the aliases like any mail to a local name.
// A local name without an alias falls back to double_bounce, if set.
func (s *Scheduler) noticeRecipients(addr string) []string {
	// The aliases and catch-all in force now (a reload may have changed them).
	snap := s.live.load()
	cfg, pol := snap.cfg, snap.policy
	to, err := pol.Recipient(addr)
	if err == nil && len(to) > 0 {
		return to
	}
	if cfg.Queue.DoubleBounce != "" && addr != cfg.Queue.DoubleBounce {
		s.log.Warn("the sender to notify has no alias; sending the notice to double_bounce", "sender", addr, "err", err)
		return s.noticeRecipients(cfg.Queue.DoubleBounce)
	}
	s.log.Warn("the sender to notify has no alias; sending the notice to it unchanged", "sender", addr, "err", err)
	return []string{addr}
}

// buildReport builds d's report with m's original message (or its header
// section) attached.
func (s *Scheduler) buildReport(d *DSN, m *spool.Message) ([]byte, error) {
	body, err := s.q.Body(m.ID)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	d.Original = body
	if m.Ret != "FULL" {
		hdr, err := mailhdr.ReadHeader(bufioReader(body), maxHeaderSection)
		if err != nil && !errors.Is(err, mailhdr.ErrHeaderTooLarge) {
			return nil, err
		}
		d.Original = bytes.NewReader(hdr)
	}
	return d.Build()
}
