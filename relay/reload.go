package relay

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/upstream"
)

// A reload (SIGHUP) puts a new configuration in force without stopping the
// daemon. What is built from the file — the policy with its aliases, the
// router with its upstream targets — is bundled with the file in one
// snapshot, published through an atomic pointer. Sessions take the
// snapshot in force at MAIL FROM and keep it for the transaction;
// deliveries take it as they start and keep it, targets included, until
// their results are recorded. Nothing in a published snapshot is changed
// afterwards, so readers need no lock.

// snapshot is one configuration in force and what is built from it.
type snapshot struct {
	cfg    *config.Config
	policy *Policy
	router *Router

	// users counts deliveries working with the snapshot's targets; once
	// the snapshot is retired and users is 0, onIdle closes the targets
	// its successor no longer has.
	mu      sync.Mutex
	users   int
	retired bool
	onIdle  func()
}

// release ends one use of the snapshot's targets (see live.acquire).
func (s *snapshot) release() {
	s.mu.Lock()
	s.users--
	var idle func()
	if s.retired && s.users == 0 {
		idle, s.onIdle = s.onIdle, nil
	}
	s.mu.Unlock()
	if idle != nil {
		idle()
	}
}

// live holds the snapshot in force.
type live struct{ p atomic.Pointer[snapshot] }

func newLive(s *snapshot) *live {
	l := &live{}
	l.p.Store(s)
	return l
}

// load returns the snapshot in force, for work that uses no target.
func (l *live) load() *snapshot { return l.p.Load() }

// acquire returns the snapshot in force with its targets held open until
// release.
func (l *live) acquire() *snapshot {
	for {
		s := l.p.Load()
		s.mu.Lock()
		if !s.retired {
			s.users++
			s.mu.Unlock()
			return s
		}
		// Retired between the load and the lock: the next load sees its
		// successor.
		s.mu.Unlock()
	}
}

// publish puts next in force and retires the snapshot it replaces;
// onIdle runs once no delivery uses the old one any more.
func (l *live) publish(next *snapshot, onIdle func()) {
	old := l.p.Swap(next)
	old.mu.Lock()
	old.retired = true
	old.onIdle = onIdle
	idle := old.users == 0
	if idle {
		old.onIdle = nil
	}
	old.mu.Unlock()
	if idle && onIdle != nil {
		onIdle()
	}
}

// current returns the snapshot in force.
func (r *Relay) current() *snapshot { return r.live.load() }

// errStopping refuses a reload that arrives while the daemon shuts down.
var errStopping = errors.New("the daemon is stopping")

// ReloadFile loads the configuration file the daemon started with again,
// validating it as `outbox check` does, and puts it in force with Reload.
// When the file is invalid, its diagnostics (file:line:col) are logged at
// ERROR and the running configuration stays in force.
func (r *Relay) ReloadFile() error {
	cfg, err := config.Load(r.cfg.Path)
	if err == nil {
		err = r.Reload(cfg)
	}
	if err != nil {
		r.log.Error("configuration not reloaded; the running one stays in force", "file", r.cfg.Path, "err", err)
	}
	return err
}

// Reload puts cfg in force for new work: aliases, routes, upstreams,
// limits, queue timings and the log level. Sessions in progress finish
// their transaction under the old configuration and deliveries in
// progress on the old targets, which are closed once idle; an upstream
// whose block did not change keeps its target, pool and rate state, and
// one that changed keeps its rate-limit history. Settings that only a
// restart can apply (listen blocks, spool, admin, hostname, connection
// limits and timeouts, log format) are logged at WARN and stay as they
// are. On error nothing changes.
func (r *Relay) Reload(cfg *config.Config) error {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if r.stopping {
		return errStopping
	}
	cur := r.current()
	old := cur.cfg
	next := *cfg
	for _, f := range restartOnly {
		if f.changed(old, &next) {
			r.log.Warn(f.name + ": changed; restart needed (systemctl restart outbox)")
			f.keep(old, &next)
		}
	}
	for _, w := range next.Warnings {
		r.log.Warn("configuration: " + w)
	}

	targets, fresh, err := r.reloadTargets(cur, &next)
	if err != nil {
		return err
	}
	var retired []upstream.Target
	for name, t := range cur.router.targets {
		if targets[name] != t {
			retired = append(retired, t)
		}
	}
	snap := &snapshot{cfg: &next, policy: NewPolicy(&next), router: NewRouter(&next, targets)}
	if r.opts.Level != nil {
		var lvl slog.Level
		if lvl.UnmarshalText([]byte(next.Log.Level)) == nil {
			r.opts.Level.Set(lvl)
		}
	}
	r.live.publish(snap, func() {
		for _, t := range retired {
			t.Close()
		}
	})
	r.sched.Kick() // routes and upstreams may have changed for due mail
	changed := describeChanges(old, &next, fresh)
	if len(changed) == 0 {
		changed = []string{"nothing"}
	}
	r.log.Info("configuration reloaded", "changed", strings.Join(changed, "; "))
	return nil
}

// reloadTargets returns the targets for next: the running one for each
// upstream whose block is unchanged, a new one for the others; fresh
// names the upstreams given a new target.
func (r *Relay) reloadTargets(cur *snapshot, next *config.Config) (map[string]upstream.Target, []string, error) {
	if r.opts.Targets != nil {
		// Tests inject their targets; they stay whatever the file says.
		return cur.router.targets, nil, nil
	}
	targets := map[string]upstream.Target{}
	var fresh []string
	for _, u := range next.Upstreams {
		was := cur.cfg.Upstream(u.Name)
		t := cur.router.targets[u.Name]
		if was != nil && t != nil && sameTarget(was, u) {
			targets[u.Name] = t
			continue
		}
		// A changed upstream keeps its rate-limit history: a reload must
		// not grant a second day's quota any more than a restart does.
		// Sends that deliveries still running on the old target make
		// after this point are not carried over.
		hist := r.loadRateHistory(u.Name)
		if h, ok := t.(rateHistorian); ok {
			if hh := h.RateHistory(); hh != nil {
				hist = hh
			}
		}
		nt, err := buildTarget(next, u, r.log, hist)
		if err != nil {
			for _, name := range fresh {
				targets[name].Close()
			}
			return nil, nil, fmt.Errorf("upstream %q: %w", u.Name, err)
		}
		targets[u.Name] = nt
		fresh = append(fresh, u.Name)
	}
	return targets, fresh, nil
}

// restartOnly lists the settings a running daemon cannot change: the
// sockets it holds, the spool it has open, and what go-smtp reads from its
// Server on every connection without a lock.
var restartOnly = []struct {
	name    string
	changed func(old, next *config.Config) bool
	keep    func(old, next *config.Config)
}{
	{"listen", func(o, n *config.Config) bool { return !reflect.DeepEqual(o.Listen, n.Listen) },
		func(o, n *config.Config) { n.Listen = o.Listen }},
	{"spool", func(o, n *config.Config) bool { return o.Spool != n.Spool },
		func(o, n *config.Config) { n.Spool = o.Spool }},
	{"admin", func(o, n *config.Config) bool { return o.Admin != n.Admin },
		func(o, n *config.Config) { n.Admin = o.Admin }},
	{"hostname", func(o, n *config.Config) bool { return o.Hostname != n.Hostname },
		func(o, n *config.Config) { n.Hostname = o.Hostname }},
	{"limits.max_connections", func(o, n *config.Config) bool { return o.Limits.MaxConnections != n.Limits.MaxConnections },
		func(o, n *config.Config) { n.Limits.MaxConnections = o.Limits.MaxConnections }},
	{"limits.read_timeout", func(o, n *config.Config) bool { return o.Limits.ReadTimeout != n.Limits.ReadTimeout },
		func(o, n *config.Config) { n.Limits.ReadTimeout = o.Limits.ReadTimeout }},
	{"limits.write_timeout", func(o, n *config.Config) bool { return o.Limits.WriteTimeout != n.Limits.WriteTimeout },
		func(o, n *config.Config) { n.Limits.WriteTimeout = o.Limits.WriteTimeout }},
	{"log.format", func(o, n *config.Config) bool { return o.Log.Format != n.Log.Format },
		func(o, n *config.Config) { n.Log.Format = o.Log.Format }},
}

// describeChanges lists what a reload changed, for its log line.
func describeChanges(old, next *config.Config, fresh []string) []string {
	var out []string
	if !reflect.DeepEqual(old.Aliases, next.Aliases) {
		added, removed, changed := 0, 0, 0
		for k, v := range next.Aliases {
			if ov, ok := old.Aliases[k]; !ok {
				added++
			} else if !slices.Equal(ov, v) {
				changed++
			}
		}
		for k := range old.Aliases {
			if _, ok := next.Aliases[k]; !ok {
				removed++
			}
		}
		out = append(out, fmt.Sprintf("aliases: %d added, %d removed, %d changed", added, removed, changed))
	}
	var added, removed []string
	for _, u := range next.Upstreams {
		if old.Upstream(u.Name) == nil {
			added = append(added, u.Name)
		}
	}
	for _, u := range old.Upstreams {
		if next.Upstream(u.Name) == nil {
			removed = append(removed, u.Name)
		}
	}
	var rebuilt []string
	for _, name := range fresh {
		if old.Upstream(name) != nil {
			rebuilt = append(rebuilt, name)
		}
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"upstreams added", added}, {"upstreams removed", removed}, {"upstreams changed", rebuilt}} {
		if len(l.names) > 0 {
			sort.Strings(l.names)
			out = append(out, l.what+": "+strings.Join(l.names, ", "))
		}
	}
	if len(old.Upstreams) > 0 && len(next.Upstreams) > 0 && old.Upstreams[0].Name != next.Upstreams[0].Name {
		out = append(out, "default upstream: "+next.Upstreams[0].Name)
	}
	if !reflect.DeepEqual(old.Routes, next.Routes) {
		out = append(out, fmt.Sprintf("routes: %d", len(next.Routes)))
	}
	if old.Limits != next.Limits {
		out = append(out, fmt.Sprintf("limits: max_message_size %d, max_recipients %d", next.Limits.MaxMessageSize, next.Limits.MaxRecipients))
	}
	if old.Queue != next.Queue {
		q := next.Queue
		out = append(out, fmt.Sprintf("queue: retry_initial %s, retry_max %s, lifetime %s, delay_warning %s", q.RetryInitial, q.RetryMax, q.Lifetime, q.DelayWarning))
	}
	if old.Log.Level != next.Log.Level {
		out = append(out, "log level: "+next.Log.Level)
	}
	return out
}

// sameTarget reports whether two upstream blocks build the same target:
// what goes around it (sender rewriting, which NewRouter wraps anew at
// each reload) does not count, so changing it keeps the pooled
// connections and the rate state.
func sameTarget(a, b *config.Upstream) bool {
	return a.Type == b.Type && a.Path == b.Path && reflect.DeepEqual(a.SMTP, b.SMTP) && reflect.DeepEqual(a.OAuth2, b.OAuth2)
}
