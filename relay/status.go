package relay

import (
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/upstream"
)

// health remembers, per upstream name, when a delivery attempt last
// succeeded and the last error, for `outbox status`. It lives as long as
// the daemon, across reloads.
type health struct {
	mu sync.Mutex
	m  map[string]*upstreamHealth
}

type upstreamHealth struct {
	lastSuccess, lastErrorAt time.Time
	lastError                string
}

// record notes the outcome of one attempt through upstream name.
func (h *health) record(name string, at time.Time, out upstream.Outcome) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]*upstreamHealth{}
	}
	u := h.m[name]
	if u == nil {
		u = &upstreamHealth{}
		h.m[name] = u
	}
	for _, r := range out.Results {
		if r.Class == upstream.Sent {
			u.lastSuccess = at
		} else {
			u.lastError, u.lastErrorAt = describe(r), at
		}
	}
}

func (h *health) get(name string) upstreamHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.m[name]; u != nil {
		return *u
	}
	return upstreamHealth{}
}

// pauser is a target that can be paused (after a 421, connection
// failures or an OAuth2 configuration problem).
type pauser interface {
	Paused() (until time.Time, reason string, paused bool)
}

// failureCounter is a target that counts its AUTH and TLS failures.
type failureCounter interface {
	Failures() upstream.Failures
}

// tokenExpirer is what a target that holds an OAuth2 token reports.
type tokenExpirer interface {
	TokenExpiry() time.Time
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// status answers `outbox status`: listing-level information, for everyone
// who may list the queue.
func (a *adminServer) status(w http.ResponseWriter, req *http.Request) {
	r := a.r
	// An upstream's last error can quote a recipient's address.
	if r.cfg.Admin.QueueList == "privileged" && !privileged(caller(req)) {
		http.Error(w, "permission denied: only root and the outbox user may read the status here (admin.queue_list = \"privileged\")", http.StatusForbidden)
		return
	}
	now := r.now()
	snap := r.current()
	out := adminapi.Status{
		Version: r.opts.Version, Started: r.started.UTC(), Uptime: now.Sub(r.started).Seconds(),
		Listeners: []string{}, Upstreams: []adminapi.UpstreamStatus{},
	}
	for _, l := range r.cfg.Listen {
		out.Listeners = append(out.Listeners, l.Address)
	}
	if r.sendmail != nil {
		out.Listeners = append(out.Listeners, r.sendmail.addr)
	}
	for _, u := range snap.cfg.Upstreams {
		us := adminapi.UpstreamStatus{Name: u.Name, Address: net.JoinHostPort(u.Host, strconv.Itoa(u.Port)), State: "unknown"}
		if u.Type == "maildir" {
			us.Address = "maildir:" + u.Path
		}
		h := r.sched.health.get(u.Name)
		us.LastSuccess, us.LastErrorAt, us.LastError = timePtr(h.lastSuccess), timePtr(h.lastErrorAt), h.lastError
		switch {
		case !h.lastSuccess.IsZero() && !h.lastSuccess.Before(h.lastErrorAt):
			us.State = "ok"
		case !h.lastErrorAt.IsZero():
			us.State = "failing"
		}
		t := snap.router.targets[u.Name]
		if p, ok := t.(pauser); ok {
			if until, reason, paused := p.Paused(); paused {
				us.State, us.Paused, us.PausedUntil, us.PauseReason = "paused", true, timePtr(until), reason
			}
		}
		if te, ok := t.(tokenExpirer); ok {
			us.TokenExpiry = timePtr(te.TokenExpiry())
		}
		out.Upstreams = append(out.Upstreams, us)
	}
	if c, err := r.spool.Counts(); err == nil {
		out.Queue = adminapi.QueueStatus{Messages: c.Total, Pending: c.Pending, Deferred: c.Deferred, Held: c.Held}
	}
	if _, oldest, err := r.spool.Oldest(); err == nil && !oldest.IsZero() {
		out.Queue.OldestAge = max(now.Sub(oldest).Seconds(), 0)
	}
	if fi, err := os.Stat(r.spool.Path()); err == nil {
		out.SpoolSize = fi.Size()
	}
	writeJSON(w, out)
}
