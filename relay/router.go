package relay

import (
	"strings"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/upstream"
)

// Router maps a message's sender and a recipient's domain to the ordered
// list of upstreams to try.
type Router struct {
	routes   []config.Route
	deflt    string
	targets  map[string]upstream.Target
	settings map[string]*config.Upstream
}

// NewRouter builds a router over ready targets, keyed by upstream name.
func NewRouter(cfg *config.Config, targets map[string]upstream.Target) *Router {
	r := &Router{routes: cfg.Routes, targets: targets, settings: map[string]*config.Upstream{}}
	if len(cfg.Upstreams) > 0 {
		r.deflt = cfg.Upstreams[0].Name
	}
	for _, u := range cfg.Upstreams {
		r.settings[u.Name] = u
	}
	return r
}

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
