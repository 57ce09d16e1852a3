// Package dsn names the values of delivery status notifications (RFC 3461
// and RFC 3464) that several packages pass on: what a recipient asked to be
// told (NOTIFY) and what became of it (the Action of a report). It is a
// leaf, so the spool, the upstream client, the relay and the shim can share
// one spelling of each.
package dsn

import (
	"fmt"
	"strings"
)

// Notify is one value of a recipient's NOTIFY parameter, RFC 3461 section
// 4.1: "NOTIFY=NEVER" or a list of SUCCESS, FAILURE and DELAY. Values are
// kept in upper case, as SMTP spells them; the spool stores them as these
// strings.
type Notify string

// The NOTIFY values of RFC 3461 section 4.1.
const (
	NotifyNever   Notify = "NEVER"
	NotifySuccess Notify = "SUCCESS"
	NotifyFailure Notify = "FAILURE"
	NotifyDelay   Notify = "DELAY"
)

// ParseNotify reads a NOTIFY list as the shim's -N flag and the maildrop
// file give it: "never", or a comma-separated list of success, failure and
// delay, in any case. It returns the values in upper case, in the order
// SUCCESS, FAILURE, DELAY, each once; "" gives nil (no NOTIFY). NEVER
// excludes the others (RFC 3461 section 4.1).
func ParseNotify(list string) ([]Notify, error) {
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, nil
	}
	if strings.EqualFold(list, string(NotifyNever)) {
		return []Notify{NotifyNever}, nil
	}
	seen := map[Notify]bool{}
	for _, p := range strings.Split(list, ",") {
		n := Notify(strings.ToUpper(strings.TrimSpace(p)))
		switch n {
		case NotifySuccess, NotifyFailure, NotifyDelay:
			seen[n] = true
		default:
			return nil, fmt.Errorf("NOTIFY needs NEVER, or a list of SUCCESS, FAILURE and DELAY, not %q", list)
		}
	}
	var out []Notify
	for _, n := range []Notify{NotifySuccess, NotifyFailure, NotifyDelay} {
		if seen[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// Wants reports whether a recipient whose NOTIFY was notify asks for a
// notice of kind (NotifySuccess, NotifyFailure or NotifyDelay). Without
// NOTIFY, failures and delays are reported and successes are not, the
// default RFC 3461 section 4.1 allows. The comparison
// ignores case: spools written before the values were typed may hold any.
func Wants(notify []Notify, kind Notify) bool {
	if len(notify) == 0 {
		return kind != NotifySuccess
	}
	for _, n := range notify {
		if strings.EqualFold(string(n), string(NotifyNever)) {
			return false
		}
		if strings.EqualFold(string(n), string(kind)) {
			return true
		}
	}
	return false
}

// Action is what became of one recipient, the Action field of a report's
// per-recipient part, RFC 3464 section 2.3.3.
type Action string

// The actions of RFC 3464 section 2.3.3.
const (
	// Failed: the message could not be delivered to the recipient.
	Failed Action = "failed"
	// Delayed: delivery has not succeeded yet and will be tried again.
	Delayed Action = "delayed"
	// Delivered: the message reached the recipient's mailbox.
	Delivered Action = "delivered"
	// Relayed: the message was handed on to a system that sends no
	// reports of its own.
	Relayed Action = "relayed"
	// Expanded: delivered, and forwarded on to other addresses.
	Expanded Action = "expanded"
)

// Actions lists every action in the order a report groups its
// recipients: failures first, then delays, then successes.
var Actions = []Action{Failed, Delayed, Delivered, Relayed, Expanded}
