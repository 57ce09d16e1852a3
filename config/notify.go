package config

import (
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/outbox-mta/outbox/internal/loopback"
)

// NotifyEvents are the events a notify block can ask for.
var NotifyEvents = []string{"bounce", "stuck", "upstream_down", "auth_failed"}

// Notify configures alerts that do not travel by mail: a webhook and/or a
// command that receive each event as JSON.
type Notify struct {
	Webhook    string        // POST target: https, or http to a loopback host
	Command    string        // run with the event's JSON on stdin
	On         []string      // events to send (NotifyEvents); every one when the block omits it
	StuckAfter time.Duration // a message queued this long is "stuck"
}

// Enabled reports whether there is somewhere to send events.
func (n Notify) Enabled() bool { return n.Webhook != "" || n.Command != "" }

// Wants reports whether event is one the operator asked for.
func (n Notify) Wants(event string) bool { return slices.Contains(n.On, event) }

type rawNotify struct {
	Webhook    string   `hcl:"webhook,optional"`
	Command    string   `hcl:"command,optional"`
	On         []string `hcl:"on,optional"`
	StuckAfter string   `hcl:"stuck_after,optional"`
	Body       hcl.Body `hcl:",body"`
}

func (v *validator) notify(r *rawNotify) Notify {
	n := Notify{On: NotifyEvents, StuckAfter: time.Hour}
	if r == nil {
		return n
	}
	n.Command = v.path(r.Command)
	if r.Webhook != "" {
		u, err := url.Parse(r.Webhook)
		switch {
		case err != nil || u.Host == "":
			v.errf(attrRange(r.Body, "webhook"), "Invalid webhook", "webhook = %q is not an http(s) URL.", r.Webhook)
		case u.Scheme == "https", u.Scheme == "http" && loopback.Host(u.Hostname()):
			n.Webhook = r.Webhook
		default:
			v.errf(attrRange(r.Body, "webhook"), "Insecure webhook",
				"webhook = %q: use https; plain http is allowed for loopback hosts only.", r.Webhook)
		}
	}
	if r.On != nil {
		n.On = nil
		for _, e := range r.On {
			e = strings.ToLower(e)
			if !slices.Contains(NotifyEvents, e) {
				v.errf(attrRange(r.Body, "on"), "Invalid notify event", "on = %q; use %q.", e, NotifyEvents)
				continue
			}
			n.On = append(n.On, e)
		}
	}
	n.StuckAfter = v.duration(r.Body, "stuck_after", r.StuckAfter, n.StuckAfter)
	if n.StuckAfter <= 0 {
		v.errf(attrRange(r.Body, "stuck_after"), "Invalid stuck_after", "stuck_after must be positive.")
	}
	return n
}
