package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// adminServer answers queue commands on a unix socket. Anyone may list
// the queue (unless admin.queue_list = "privileged") and ask for a flush,
// as with Postfix's mailq and sendmail -q; a message's content is for
// root, the daemon's own user and the user who submitted it; hold,
// release and delete need root or the daemon's own user. The caller is
// known from the socket's peer credentials.
type adminServer struct {
	r   *Relay
	l   net.Listener
	srv *http.Server
	// metrics serves /metrics alone on admin.metrics_address; nil if unset.
	metricsL   net.Listener
	metricsSrv *http.Server
}

func newAdminServer(r *Relay) (*adminServer, error) {
	path := r.cfg.Admin.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another outbox answers there; stop it first", path)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	a := &adminServer{r: r, l: &adminListener{Listener: l, max: adminLimits.maxConns}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", a.queue)
	mux.HandleFunc("GET /show", a.show)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /status", a.status)
	mux.HandleFunc("GET /body", a.body)
	mux.HandleFunc("POST /bounce", a.bounce)
	mux.HandleFunc("POST /flush", a.flush)
	mux.HandleFunc("POST /hold", a.act)
	mux.HandleFunc("POST /release", a.act)
	mux.HandleFunc("POST /delete", a.act)
	mux.Handle("GET /metrics", r.metrics.handler())
	if addr := r.cfg.Admin.MetricsAddress; addr != "" {
		ml, err := net.Listen("tcp", addr)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("admin metrics_address: %w", err)
		}
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", r.metrics.handler())
		// Any local user can reach this port too: the same cap applies.
		a.metricsL = &adminListener{Listener: ml, max: adminLimits.maxConns}
		a.metricsSrv = newAdminHTTP(mm)
	}
	a.srv = newAdminHTTP(mux)
	a.srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if ac, ok := c.(*adminConn); ok {
			return context.WithValue(ctx, peerKey{}, ac.peer)
		}
		return ctx
	}
	return a, nil
}

// adminLimits bound what local users can hold on the admin socket. Every
// user may connect to it (listing is open, as Postfix's mailq), so
// without them one user could open connections, send nothing, and leave
// the daemon short of file descriptors and goroutines.
var adminLimits = struct {
	// maxConns caps concurrent connections from users other than root
	// and the daemon's own; theirs are never refused, so the operator's
	// commands work during a flood.
	maxConns int
	// readHeader, read, write and idle are the http.Server timeouts. A
	// request has no body; a reply is at most a listing of the queue.
	readHeader, read, write, idle time.Duration
}{64, 5 * time.Second, 10 * time.Second, time.Minute, 30 * time.Second}

func newAdminHTTP(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: adminLimits.readHeader,
		ReadTimeout:       adminLimits.read,
		WriteTimeout:      adminLimits.write,
		IdleTimeout:       adminLimits.idle,
		MaxHeaderBytes:    16 << 10,
	}
}

// adminListener identifies each caller and caps the connections of
// ordinary users: beyond adminLimits.maxConns they get a 503 at once and
// are closed, instead of waiting unseen in the backlog.
type adminListener struct {
	net.Listener
	max int

	mu sync.Mutex
	n  int // open connections of ordinary users
}

func (l *adminListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ac := &adminConn{Conn: c, peer: identify(c)}
		if !privileged(ac.peer) {
			l.mu.Lock()
			full := l.n >= l.max
			if !full {
				l.n++
				ac.l = l
			}
			l.mu.Unlock()
			if full {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				io.WriteString(c, "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
					"too many connections to the admin socket; try again in a few seconds\n")
				c.Close()
				continue
			}
		}
		return ac, nil
	}
}

// adminConn is one admin connection and who opened it.
type adminConn struct {
	net.Conn
	peer peer
	l    *adminListener // set when the connection counts against the cap
	once sync.Once
}

func (c *adminConn) Close() error {
	c.once.Do(func() {
		if c.l != nil {
			c.l.mu.Lock()
			c.l.n--
			c.l.mu.Unlock()
		}
	})
	return c.Conn.Close()
}

// privileged reports whether the caller is root or the daemon's own user:
// they may read every message and hold, release and delete.
func privileged(p peer) bool {
	return p.unix && (p.uid == 0 || (p.uid > 0 && p.uid == os.Getuid()))
}

// mayRead reports whether the caller may read message m: a privileged
// user, or the local user who submitted it. UID 0 on a message means root
// or not a local user (SMTP over TCP), so only privileged users read it.
func mayRead(p peer, m *spool.Message) bool {
	return privileged(p) || (p.unix && p.uid > 0 && m.UID != 0 && uint32(p.uid) == m.UID)
}

// caller returns the peer the request came from; the zero peer, which is
// not privileged, if unknown.
func caller(r *http.Request) peer {
	p, _ := r.Context().Value(peerKey{}).(peer)
	return p
}

func (a *adminServer) serve() error {
	if a.metricsSrv != nil {
		go a.metricsSrv.Serve(a.metricsL)
	}
	if err := a.srv.Serve(a.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin socket: %w", err)
	}
	return nil
}

func (a *adminServer) close() {
	a.srv.Close()
	if a.metricsSrv != nil {
		a.metricsSrv.Close()
		a.metricsL.Close()
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (a *adminServer) queue(w http.ResponseWriter, r *http.Request) {
	if a.r.cfg.Admin.QueueList == "privileged" && !privileged(caller(r)) {
		http.Error(w, "permission denied: only root and the outbox user may list the queue here (admin.queue_list = \"privileged\")", http.StatusForbidden)
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "limit: want a count of messages", http.StatusBadRequest)
			return
		}
		limit = n
	}
	// The listing streams: one batch of envelopes in memory, each encoded
	// and written as it is read, whatever the queue's length. The write
	// deadline moves on with each batch, so a long listing is not cut by
	// the server's WriteTimeout while a stalled client still is.
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(adminLimits.write))
	w.Header().Set("Content-Type", "application/json")
	n := 0
	err := adminapi.WriteList(w, func(fn func(adminapi.Message) error) error {
		err := a.r.spool.Range("", func(m *spool.Message) error {
			if limit > 0 && n >= limit {
				return errListLimit
			}
			n++
			if n%256 == 0 {
				rc.SetWriteDeadline(time.Now().Add(adminLimits.write))
			}
			return fn(adminapi.FromSpool(m))
		})
		if err == errListLimit {
			return nil
		}
		return err
	})
	if err != nil {
		// The status line is sent: only an unfinished array can tell
		// the client, which reports a listing cut short.
		a.r.log.Warn("admin: queue listing cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
}

// errListLimit stops a listing at the limit the client asked for.
var errListLimit = errors.New("limit reached")

func (a *adminServer) stats(w http.ResponseWriter, _ *http.Request) {
	c, _ := a.r.spool.Counts()
	st := a.r.spool.Stats()
	out := adminapi.Stats{Queued: c.Total, Pending: c.Pending, Deferred: c.Deferred, Held: c.Held, Commits: st.Commits, Writes: st.Writes}
	if st.Commits > 0 {
		out.BatchingRatio = float64(st.Writes) / float64(st.Commits)
	}
	writeJSON(w, out)
}

func (a *adminServer) show(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	m, err := a.r.spool.Get(id)
	if err == nil && !mayRead(caller(r), m) {
		http.Error(w, "permission denied: only root, the outbox user and the submitting user may read a message", http.StatusForbidden)
		return
	}
	var text string
	if err == nil {
		text, err = Dump(a.r.spool, id)
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, spool.ErrNotFound) {
			status = http.StatusNotFound
		}
		http.Error(w, err.Error(), status)
		return
	}
	writeJSON(w, map[string]string{"text": text})
}

// flush makes the waiting messages due now, in batched commits that wake
// the scheduler as they land: delivery starts with the first batch, and
// memory stays one batch whatever the queue's length. It finishes even if
// the client goes away: a flush asked for is a flush done.
func (a *adminServer) flush(w http.ResponseWriter, _ *http.Request) {
	rc := http.NewResponseController(w)
	n, err := a.r.spool.Flush(a.r.now(), func(int) {
		a.r.sched.Kick()
		rc.SetWriteDeadline(time.Now().Add(adminLimits.write))
	})
	a.r.sched.Kick()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rc.SetWriteDeadline(time.Now().Add(adminLimits.write))
	writeJSON(w, map[string]int{"scheduled": n})
}

type peerKey struct{}

func (a *adminServer) act(w http.ResponseWriter, r *http.Request) {
	if !privileged(caller(r)) {
		http.Error(w, "permission denied: hold, release and delete need root or the outbox user", http.StatusForbidden)
		return
	}
	id := r.URL.Query().Get("id")
	var err error
	switch strings.TrimPrefix(r.URL.Path, "/") {
	case "hold":
		_, err = a.r.spool.Update(id, func(m *spool.Message) error { m.Held = true; return nil })
	case "release":
		now := a.r.now()
		_, err = a.r.spool.Update(id, func(m *spool.Message) error { m.Held = false; m.NextAttempt = now; return nil })
	case "delete":
		err = a.r.spool.Delete(id)
	}
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, spool.ErrNotFound) {
			status = http.StatusNotFound
			err = fmt.Errorf("no message %q in the queue", id)
		}
		http.Error(w, err.Error(), status)
		return
	}
	a.r.log.Info("admin "+strings.TrimPrefix(r.URL.Path, "/"), "id", id)
	a.r.sched.Kick()
	writeJSON(w, map[string]string{"ok": id})
}

// Dump renders one message readably: its envelope as stored and its
// header section.
func Dump(s *spool.Spool, id string) (string, error) {
	m, err := s.Get(id)
	if err != nil {
		return "", err
	}
	env, _ := json.MarshalIndent(m, "", "  ")
	body, err := s.Body(id)
	if err != nil {
		return "", err
	}
	defer body.Close()
	hdr, err := mailhdr.ReadHeader(bufioReader(io.LimitReader(body, maxHeaderSection)), maxHeaderSection)
	if err != nil && !errors.Is(err, mailhdr.ErrHeaderTooLarge) {
		return "", err
	}
	return fmt.Sprintf("envelope:\n%s\n\nheaders:\n%s", env, strings.ReplaceAll(string(hdr), "\r\n", "\n")), nil
}
