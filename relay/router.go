package relay

import (
	"bytes"
	"context"
	"io"
	"strings"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/upstream"
)

// Router maps a message's sender and a recipient's domain to the ordered
// list of upstreams to try, and holds their targets.
type Router struct {
	routes []config.Route
	deflt  string
	// targets are the targets as built, by upstream name: what status,
	// metrics, rate history and reloads look at.
	targets map[string]upstream.Target
	// send is what deliveries go through, by upstream name: the target,
	// or its sender rewriting around it. Only configured upstreams are
	// here.
	send map[string]upstream.Target
}

// NewRouter builds a router over ready targets, keyed by upstream name.
func NewRouter(cfg *config.Config, targets map[string]upstream.Target) *Router {
	r := &Router{routes: cfg.Routes, targets: targets, send: map[string]upstream.Target{}}
	if len(cfg.Upstreams) > 0 {
		r.deflt = cfg.Upstreams[0].Name
	}
	for _, u := range cfg.Upstreams {
		if t := targets[u.Name]; t != nil {
			r.send[u.Name] = withSender(t, u)
		}
	}
	return r
}

// Target returns what mail for the upstream name is delivered through,
// nil when no upstream has that name.
func (r *Router) Target(name string) upstream.Target { return r.send[name] }

// Route returns the upstream names for mail from sender to rcpt: the first
// route that matches, else the first upstream.
func (r *Router) Route(sender, rcpt string) []string {
	sender = strings.ToLower(sender)
	sdomain := domainOf(sender)
	rdomain := domainOf(strings.ToLower(rcpt))
	for _, rt := range r.routes {
		if len(rt.Senders) > 0 && !matchAny(rt.Senders, sender, sdomain) {
			continue
		}
		if len(rt.RecipientDomains) > 0 && !matchDomain(rt.RecipientDomains, rdomain) {
			continue
		}
		return rt.Upstreams
	}
	return []string{r.deflt}
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// matchAny matches an address against entries that are full addresses or
// domains.
func matchAny(entries []string, addr, domain string) bool {
	for _, e := range entries {
		if strings.Contains(e, "@") {
			if e == addr {
				return true
			}
		} else if e == domain {
			return true
		}
	}
	return false
}

func matchDomain(entries []string, domain string) bool {
	for _, e := range entries {
		if e == domain || strings.HasSuffix(domain, "."+e) {
			return true
		}
	}
	return false
}

// senderTarget delivers through its target with the envelope sender, and
// the From: header if asked, replaced by the account's address
// (envelope_from, from_header = "rewrite"): providers such as QQ Mail and
// 163 refuse mail from any other sender.
type senderTarget struct {
	upstream.Target
	envelopeFrom string // the envelope sender to use; "" keeps the message's
	from         string // the address From: gets; "" keeps the header
}

// withSender returns t wrapped in the sender rewriting u asks for, or t
// itself when it asks for none.
func withSender(t upstream.Target, u *config.Upstream) upstream.Target {
	st := &senderTarget{Target: t, envelopeFrom: u.EnvelopeFrom}
	if u.FromHeader == "rewrite" {
		st.from = u.EnvelopeFrom
		if st.from == "" {
			st.from = u.Username
		}
	}
	if st.envelopeFrom == "" && st.from == "" {
		return t
	}
	return st
}

// Deliver rewrites a copy of env: the caller's stays as it was.
func (s *senderTarget) Deliver(ctx context.Context, env *upstream.Envelope) upstream.Outcome {
	e := *env
	if s.envelopeFrom != "" {
		// Bounces too: the providers that need envelope_from refuse
		// MAIL FROM:<> from an authenticated client as well, and a bounce
		// of our bounce then lands in the account's own mailbox, not in
		// a loop.
		e.From = s.envelopeFrom
	}
	if s.from != "" {
		open := env.Body
		e.Body = func() (io.ReadCloser, error) { return rewriteFrom(open, s.from) }
	}
	return s.Target.Deliver(ctx, &e)
}

// rewriteFrom opens the body with the From: header replaced (the original
// kept in Reply-To when there was none).
func rewriteFrom(open func() (io.ReadCloser, error), newFrom string) (io.ReadCloser, error) {
	body, err := open()
	if err != nil {
		return nil, err
	}
	br := bufioReader(body)
	hdr, err := mailhdr.ReadHeader(br, maxHeaderSection)
	if err != nil {
		body.Close()
		return nil, err
	}
	hdr = mailhdr.RewriteFrom(hdr, newFrom)
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(hdr), br), body}, nil
}
