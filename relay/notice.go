package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/spool"
)

// noticesKey is the spool state that holds the notices owed: built and
// promised, but not yet queued as messages of their own.
const noticesKey = "notices"

// owedNotice is a delivery status notification waiting to be queued.
type owedNotice struct {
	Message spool.Message `json:"message"` // its envelope, ID assigned
	About   string        `json:"about"`   // the original's ID
	Action  dsn.Action    `json:"action"`  // failed, delayed or delivered
	Report  []byte        `json:"report"`  // the whole notice, CRLF
}

// owe adds notices to the owed list and saves it. It runs before the
// round's results are saved, so a crash in between cannot lose a notice.
func (s *Scheduler) owe(notices []*owedNotice) {
	if len(notices) == 0 {
		return
	}
	s.noticeMu.Lock()
	defer s.noticeMu.Unlock()
	s.owed = append(s.owed, notices...)
	s.saveOwed()
}

// forgive drops notices from the owed list: their round was not recorded
// and will be decided again.
func (s *Scheduler) forgive(notices []*owedNotice) {
	if len(notices) == 0 {
		return
	}
	s.noticeMu.Lock()
	defer s.noticeMu.Unlock()
	s.owed = slices.DeleteFunc(s.owed, func(o *owedNotice) bool { return slices.Contains(notices, o) })
	s.saveOwed()
}

// queueOwed queues every owed notice. Those the spool refuses stay owed
// and are tried again after retry_initial.
func (s *Scheduler) queueOwed(now time.Time) {
	s.noticeMu.Lock()
	defer s.noticeMu.Unlock()
	if len(s.owed) == 0 {
		return
	}
	keep := s.owed[:0]
	queued := 0
	for _, o := range s.owed {
		m := o.Message // Enqueue fills in fields; keep the owed copy as it was.
		m.Recipients = slices.Clone(o.Message.Recipients)
		// Enqueue under the ID chosen when the notice was built: queuing it
		// again after a crash overwrites the same message.
		if err := s.q.Enqueue(context.Background(), &m, bytes.NewReader(o.Report)); err != nil {
			s.log.Error("cannot queue delivery status notification; will retry", "id", o.About, "action", o.Action, "err", err)
			keep = append(keep, o)
			continue
		}
		queued++
		s.metrics.notice(o.Action)
		s.log.Info("queued delivery status notification", "id", m.ID, "about", o.About, "action", o.Action, "to", noticeTo(&m))
	}
	clear(s.owed[len(keep):])
	s.owed = keep
	if len(keep) > 0 {
		s.owedRetry = now.Add(s.conf().Queue.RetryInitial)
	}
	if queued > 0 {
		s.saveOwed()
		s.Kick()
	}
}

// retryOwed queues the owed notices once their retry time has come and
// returns how long until the next try, false if none is owed.
func (s *Scheduler) retryOwed() (time.Duration, bool) {
	now := s.now()
	s.noticeMu.Lock()
	due := len(s.owed) > 0 && !now.Before(s.owedRetry)
	s.noticeMu.Unlock()
	if due {
		s.queueOwed(now)
	}
	s.noticeMu.Lock()
	defer s.noticeMu.Unlock()
	if len(s.owed) == 0 {
		return 0, false
	}
	return max(s.owedRetry.Sub(now), 10*time.Millisecond), true
}

// saveOwed writes the owed list to the spool; s.noticeMu is held.
func (s *Scheduler) saveOwed() {
	b, err := json.Marshal(s.owed)
	if err == nil {
		err = s.q.SetState(noticesKey, b)
	}
	if err != nil {
		s.log.Error("cannot save the list of delivery status notifications to queue; a restart now would forget them", "err", err)
	}
}

// loadOwed reads the owed list a previous run left.
func (s *Scheduler) loadOwed() {
	b, err := s.q.State(noticesKey)
	if err != nil || len(b) == 0 {
		return
	}
	var owed []*owedNotice
	if err := json.Unmarshal(b, &owed); err != nil {
		s.log.Error("ignoring an unreadable list of delivery status notifications to queue", "err", err)
		return
	}
	s.noticeMu.Lock()
	s.owed = append(s.owed, owed...)
	s.noticeMu.Unlock()
}

// noticeTo lists a notice's recipients, for the log.
func noticeTo(m *spool.Message) string {
	var to []string
	for _, r := range m.Recipients {
		to = append(to, r.Address)
	}
	return strings.Join(to, ", ")
}
