package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
)

// lsFilter is what queue ls --from, --to, --older-than and --state ask
// for; its zero value lets every message through.
type lsFilter struct {
	from, to  string
	olderThan time.Duration
	state     string
	now       time.Time
}

func (f *lsFilter) flags(fs *flag.FlagSet) {
	fs.StringVar(&f.from, "from", "", "only messages whose sender is `ADDR`, or in the domain when it starts with @ (\"<>\" for the null sender)")
	fs.StringVar(&f.to, "to", "", "only messages with a recipient `ADDR`, or one in the domain when it starts with @")
	fs.DurationVar(&f.olderThan, "older-than", 0, "only messages that arrived more than `DURATION` ago (e.g. 1h)")
	fs.StringVar(&f.state, "state", "", "only messages in `STATE`: pending (not tried yet), deferred (tried, due again) or held")
}

// check validates the flags.
func (f *lsFilter) check() error {
	switch f.state {
	case "", "pending", "deferred", "held":
	default:
		return fmt.Errorf("--state %q: use pending, deferred or held", f.state)
	}
	if f.olderThan < 0 {
		return fmt.Errorf("--older-than wants a positive duration")
	}
	return nil
}

// addrMatch matches an address against ADDR or @DOMAIN, ignoring case.
func addrMatch(want, addr string) bool {
	want, addr = strings.ToLower(want), strings.ToLower(addr)
	if strings.HasPrefix(want, "@") {
		return strings.HasSuffix(addr, want)
	}
	return addr == want
}

// match reports whether m passes every filter given.
func (f *lsFilter) match(m adminapi.Message) bool {
	if f.from != "" {
		from := m.From
		if from == "" {
			from = "<>"
		}
		if !addrMatch(f.from, from) {
			return false
		}
	}
	if f.to != "" {
		found := false
		for _, r := range m.Recipients {
			found = found || addrMatch(f.to, r.Address)
		}
		if !found {
			return false
		}
	}
	if f.olderThan > 0 && f.now.Sub(m.Arrived) <= f.olderThan {
		return false
	}
	if f.state != "" {
		state := "pending"
		switch {
		case m.Held:
			state = "held"
		case m.Attempts > 0:
			state = "deferred"
		}
		if state != f.state {
			return false
		}
	}
	return true
}

// active reports whether any filter is given.
func (f *lsFilter) active() bool {
	return f.from != "" || f.to != "" || f.olderThan > 0 || f.state != ""
}
