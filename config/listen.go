package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/outbox-mta/outbox/internal/loopback"
)

// Listen is one inbound SMTP listener.
type Listen struct {
	Address       string // as written
	Network       string // "tcp" or "unix"
	Addr          string // host:port or socket path (absolute)
	AllowNetworks []netip.Prefix
	TLSCert       string
	TLSKey        string
	Users         map[string]string // user → bcrypt hash, for inbound AUTH
	Loopback      bool              // the address is loopback or a unix socket
	SocketMode    os.FileMode       // unix sockets only
}

type rawListen struct {
	Address       string            `hcl:"address"`
	AllowNetworks []string          `hcl:"allow_networks,optional"`
	TLSCert       string            `hcl:"tls_cert,optional"`
	TLSKey        string            `hcl:"tls_key,optional"`
	Auth          map[string]string `hcl:"auth,optional"`
	SocketMode    string            `hcl:"socket_mode,optional"`
	Body          hcl.Body          `hcl:",body"`
	DefRange      hcl.Range         `hcl:",def_range"`
}

func (v *validator) listen(r *rawListen) (Listen, bool) {
	l := Listen{Address: r.Address, TLSCert: v.path(r.TLSCert), TLSKey: v.path(r.TLSKey), Users: r.Auth}
	rng := attrRange(r.Body, "address")
	if strings.HasPrefix(r.Address, "unix:") {
		p := strings.TrimPrefix(r.Address, "unix:")
		if p == "" {
			v.errf(rng, "Invalid listen address", "unix: needs a socket path, like \"unix:var/submit.sock\".")
			return l, false
		}
		l.Network, l.Addr, l.Loopback = "unix", v.path(p), true
		l.SocketMode = 0o666
		if r.SocketMode != "" {
			var m uint32
			if _, err := fmt.Sscanf(r.SocketMode, "%o", &m); err != nil || m > 0o777 {
				v.errf(attrRange(r.Body, "socket_mode"), "Invalid socket_mode", "socket_mode = %q; write an octal mode like \"0660\".", r.SocketMode)
			}
			l.SocketMode = os.FileMode(m)
		}
	} else {
		host, port, err := net.SplitHostPort(r.Address)
		if err != nil || port == "" {
			v.errf(rng, "Invalid listen address", "address = %q must be \"host:port\" (like \"127.0.0.1:25\" or \"[::1]:25\") or \"unix:PATH\".", r.Address)
			return l, false
		}
		l.Network, l.Addr = "tcp", r.Address
		l.Loopback = loopback.Host(host)
	}
	for _, n := range r.AllowNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			if a, err2 := netip.ParseAddr(n); err2 == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			} else {
				v.errf(attrRange(r.Body, "allow_networks"), "Invalid network", "allow_networks entry %q is not a CIDR; write one like \"10.0.0.0/8\" or \"192.0.2.7/32\".", n)
				continue
			}
		}
		if p.Bits() == 0 {
			// "0.0.0.0/0" lets the whole Internet relay: an open relay by another name.
			v.errf(attrRange(r.Body, "allow_networks"), "Open relay refused", "allow_networks entry %q admits every address, which makes an open relay; list your clients' networks instead, like \"10.0.0.0/8\".", n)
			continue
		}
		l.AllowNetworks = append(l.AllowNetworks, p.Masked())
	}
	if (l.TLSCert == "") != (l.TLSKey == "") {
		v.errf(r.DefRange, "Incomplete TLS", "set both tls_cert and tls_key for listener %s, or neither.", r.Address)
	}
	if len(l.Users) > 0 {
		if l.TLSCert == "" {
			v.errf(attrRange(r.Body, "auth"), "AUTH needs TLS", "listener %s offers AUTH but has no tls_cert/tls_key: passwords would cross the network in clear; add a certificate.", r.Address)
		}
		for u, h := range l.Users {
			if !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
				v.errf(attrRange(r.Body, "auth"), "Invalid password hash", "auth entry for %q is not a bcrypt hash; create one with `outbox hash-password`.", u)
			}
		}
	}
	if !l.Loopback && len(l.AllowNetworks) == 0 && len(l.Users) == 0 {
		v.errf(rng, "Open relay refused", "listener %s accepts connections beyond loopback but has neither allow_networks nor auth; anyone could relay through it. Add allow_networks = [\"10.0.0.0/8\"] (your clients' networks) and/or auth with users, or listen on 127.0.0.1.", r.Address)
	}
	return l, true
}
