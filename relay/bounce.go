package relay

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// errInFlight refuses an administrative bounce of a message that a worker
// is delivering right now.
var errInFlight = errors.New("the message is being delivered right now; try again in a moment")

// Bounce fails every pending recipient of message id now, as a 5.0.0
// permanent failure: the sender gets the notices their NOTIFY asks for
// and the message leaves the queue. It goes through the same recording
// as a delivery round, so the log line, the metrics and the notify event
// are those of any bounce.
func (s *Scheduler) Bounce(id string) error {
	s.mu.Lock()
	if until, ok := s.busy[id]; ok && until.IsZero() {
		s.mu.Unlock()
		return errInFlight
	}
	// In flight for the scheduler meanwhile, so no worker picks it up.
	s.busy[id] = time.Time{}
	s.mu.Unlock()
	var coolUntil time.Time
	defer func() {
		s.finish(id, coolUntil)
		s.Kick()
	}()
	g, ok := s.q.(interface {
		Get(id string) (*spool.Message, error)
	})
	if !ok {
		return errors.New("this queue cannot read one message")
	}
	m, err := g.Get(id)
	if err != nil {
		return err
	}
	results := map[int]attempt{}
	for i, r := range m.Recipients {
		if r.Status == spool.Pending {
			results[i] = attempt{res: upstream.Result{Class: upstream.Failed, Enhanced: "5.0.0",
				Message: "bounced by the administrator (outbox queue bounce)"}, relay: "admin", tried: true}
		}
	}
	coolUntil = s.record(m, results)
	return nil
}

// bounce answers outbox queue bounce: root and the daemon's user only.
func (a *adminServer) bounce(w http.ResponseWriter, r *http.Request) {
	if !privileged(caller(r)) {
		http.Error(w, "permission denied: bounce needs root or the outbox user", http.StatusForbidden)
		return
	}
	id := r.URL.Query().Get("id")
	err := a.r.sched.Bounce(id)
	switch {
	case errors.Is(err, spool.ErrNotFound):
		http.Error(w, "no message \""+id+"\" in the queue", http.StatusNotFound)
		return
	case errors.Is(err, errInFlight):
		http.Error(w, err.Error(), http.StatusConflict)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.r.log.Info("admin bounce", "id", id)
	writeJSON(w, map[string]string{"ok": id})
}

// body answers outbox queue body: the whole stored message, for root,
// the daemon's user and the user who submitted it.
func (a *adminServer) body(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	m, err := a.r.spool.Get(id)
	if errors.Is(err, spool.ErrNotFound) {
		http.Error(w, "no message \""+id+"\" in the queue", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if !mayRead(caller(r), m) {
		http.Error(w, "permission denied: only root, the outbox user and the submitting user may read a message", http.StatusForbidden)
		return
	}
	text, err := readBody(a.r.spool, id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// []byte travels as base64 in JSON: a body's 8-bit bytes stay exact.
	writeJSON(w, map[string][]byte{"body": text})
}

// readBody returns the stored message, headers and body; its size is
// bounded by limits.max_message_size.
func readBody(s *spool.Spool, id string) ([]byte, error) {
	rc, err := s.Body(id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
