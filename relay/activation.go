package relay

import (
	"log/slog"
	"net"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/outbox-mta/outbox/config"
)

// sockets are listening sockets handed over by systemd (socket
// activation: systemd/outbox.socket), keyed by network and address. With
// them, connections made while the daemon restarts wait in the kernel's
// backlog instead of being refused, and port 25 needs no privilege.
type sockets map[string]net.Listener

// inheritedSockets takes the sockets systemd passed, if any.
func inheritedSockets() sockets {
	set := sockets{}
	ls, _ := activation.Listeners()
	for _, l := range ls {
		if l != nil {
			set[l.Addr().Network()+" "+l.Addr().String()] = l
		}
	}
	return set
}

// take returns the inherited socket for a listen block, nil if systemd
// passed none for its address.
func (s sockets) take(lc config.Listen) net.Listener {
	key := "unix " + lc.Addr
	if lc.Network != "unix" {
		ta, err := net.ResolveTCPAddr("tcp", lc.Addr)
		if err != nil {
			return nil
		}
		key = "tcp " + ta.String()
	}
	l := s[key]
	delete(s, key)
	return l
}

// closeRest closes the sockets no listen block asked for.
func (s sockets) closeRest(log *slog.Logger) {
	for key, l := range s {
		log.Warn("systemd passed a socket that no listen block names; not serving it (add a listen block or remove it from outbox.socket)", "socket", key)
		l.Close()
	}
}
