package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
)

// Rate limits such as "500/day" must survive a restart, or a daemon
// restarted in the afternoon could send a second day's quota and get the
// account blocked. Each rate-limited upstream's recent sends are kept in
// the spool's state, saved every 30 seconds and at shutdown.

type rateHistorian interface {
	RateHistory() []time.Time
}

func rateKey(name string) string { return "rate/" + name }

// loadRateHistory returns an upstream's saved sends, nil if none.
func (r *Relay) loadRateHistory(name string) []time.Time {
	b, err := r.spool.State(rateKey(name))
	if err != nil || b == nil {
		return nil
	}
	var ts []time.Time
	if err := json.Unmarshal(b, &ts); err != nil {
		r.log.Warn("ignoring unreadable rate-limit history", "upstream", name, "err", err)
		return nil
	}
	return ts
}

// saveRateHistory stores every rate-limited upstream's recent sends that
// changed since the last save.
func (r *Relay) saveRateHistory() {
	for name, t := range r.current().router.targets {
		h, ok := t.(rateHistorian)
		if !ok {
			continue
		}
		ts := h.RateHistory()
		if ts == nil {
			continue
		}
		b, err := json.Marshal(ts)
		if err != nil {
			continue
		}
		if bytes.Equal(b, r.savedRates[name]) {
			continue
		}
		if err := r.spool.SetState(rateKey(name), b); err != nil {
			r.log.Warn("cannot save rate-limit history; a restart may forget recent sends", "upstream", name, "err", err)
			continue
		}
		r.savedRates[name] = b
	}
}

func (r *Relay) runRateSaver(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.saveRateHistory()
		}
	}
}
