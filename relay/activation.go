package relay

import (
	"fmt"
	"log/slog"
	"net"
	"os"

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
// passed none for its address. A unix socket gets the block's
// socket_mode, as one the daemon opens itself does: systemd created it
// with outbox.socket's SocketMode=, and the operator who restricts
// socket_mode in relay.hcl expects that restriction whoever made the
// socket. When the mode cannot be set (systemd made the socket as root
// and the daemon runs as outbox), start-up stops rather than serve a
// socket more open than configured.
func (s sockets) take(lc config.Listen) (net.Listener, error) {
	key := "unix " + lc.Addr
	if lc.Network != "unix" {
		ta, err := net.ResolveTCPAddr("tcp", lc.Addr)
		if err != nil {
			return nil, nil
		}
		key = "tcp " + ta.String()
	}
	l := s[key]
	delete(s, key)
	if l == nil || lc.Network != "unix" {
		return l, nil
	}
	fi, err := os.Stat(lc.Addr)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %s (passed by systemd): %w", lc.Address, err)
	}
	if fi.Mode().Perm() == lc.SocketMode.Perm() {
		return l, nil
	}
	if err := os.Chmod(lc.Addr, lc.SocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %s (passed by systemd): setting socket_mode %04o: %w; set SocketMode=%04o in outbox.socket to match",
			lc.Address, lc.SocketMode.Perm(), err, lc.SocketMode.Perm())
	}
	return l, nil
}

// closeRest closes the sockets no listen block asked for.
func (s sockets) closeRest(log *slog.Logger) {
	for key, l := range s {
		log.Warn("systemd passed a socket that no listen block names; not serving it (add a listen block or remove it from outbox.socket)", "socket", key)
		l.Close()
	}
}
