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
	"strings"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// adminServer answers queue commands on a unix socket. Anyone may list
// the queue and ask for a flush, as with Postfix's mailq and sendmail -q;
// hold, release and delete need root or the daemon's own user, checked
// from the socket's peer credentials.
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
	a := &adminServer{r: r, l: l}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", a.queue)
	mux.HandleFunc("GET /show", a.show)
	mux.HandleFunc("GET /stats", a.stats)
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
		a.metricsL = ml
		a.metricsSrv = &http.Server{Handler: mm, ReadHeaderTimeout: 10 * time.Second}
	}
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, identify(c))
		},
	}
	return a, nil
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

func (a *adminServer) queue(w http.ResponseWriter, _ *http.Request) {
	list, err := a.r.spool.List()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, adminapi.Convert(list))
}

func (a *adminServer) stats(w http.ResponseWriter, _ *http.Request) {
	n, _ := a.r.spool.Count()
	st := a.r.spool.Stats()
	out := adminapi.Stats{Queued: n, Commits: st.Commits, Writes: st.Writes}
	if st.Commits > 0 {
		out.BatchingRatio = float64(st.Writes) / float64(st.Commits)
	}
	writeJSON(w, out)
}

func (a *adminServer) show(w http.ResponseWriter, r *http.Request) {
	text, err := Dump(a.r.spool, r.URL.Query().Get("id"))
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

func (a *adminServer) flush(w http.ResponseWriter, _ *http.Request) {
	list, err := a.r.spool.List()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]int{"scheduled": a.r.sched.Flush(list)})
}

type peerKey struct{}

func (a *adminServer) act(w http.ResponseWriter, r *http.Request) {
	if p, ok := r.Context().Value(peerKey{}).(peer); !ok || (p.uid != 0 && p.uid != os.Getuid()) {
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
