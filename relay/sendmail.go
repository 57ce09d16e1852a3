package relay

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/sendmailshim"
)

// sendmailServer serves the sendmail protocol on Config.SendmailSocket:
// the small C sendmail hands the daemon a whole call, which
// sendmailshim.Serve runs with the shim's own code and stores through a
// session of the submission socket's kind, for the uid the kernel gives
// (SO_PEERCRED). The socket has the first unix listener's socket_mode and
// connection cap. It lives as long as the process: listeners do (a reload
// changes no listen block), and the socket's path follows theirs.
type sendmailServer struct {
	r    *Relay
	ln   net.Listener
	addr string // "unix:PATH", for logs
	// unix is the first unix listener, whose sessions these calls get.
	unix *listener
	max  int

	mu    sync.Mutex
	conns map[net.Conn]bool // true once its call is taken (GO)
	shut  bool
	wg    sync.WaitGroup
}

// openSendmail opens the sendmail protocol's socket beside the first unix
// listener's (nil without one). The daemon makes it itself, removing a
// stale one as for a listener, also when systemd passed the listeners;
// one systemd passed at that path is taken as it is.
func (r *Relay) openSendmail(inherited sockets) (*sendmailServer, error) {
	path := r.cfg.SendmailSocket()
	if path == "" {
		return nil, nil
	}
	var unix *listener
	for _, l := range r.listeners {
		if l.cfg.Network == "unix" && l.cfg.Addr == path {
			r.log.Warn("a listen block uses the sendmail protocol's socket path; not serving the sendmail protocol", "address", l.cfg.Address)
			return nil, nil
		}
		if unix == nil && l.cfg.Network == "unix" {
			unix = l
		}
	}
	if unix == nil {
		return nil, nil
	}
	lc := config.Listen{Address: "unix:" + path, Network: "unix", Addr: path, Loopback: true, SocketMode: unix.cfg.SocketMode}
	nl, err := inherited.take(lc)
	if err != nil {
		return nil, err
	}
	if nl == nil {
		if nl, err = listen(lc); err != nil {
			return nil, err
		}
	}
	return &sendmailServer{r: r, ln: nl, addr: lc.Address, unix: unix, max: unix.max, conns: map[net.Conn]bool{}}, nil
}

// serve accepts calls until the socket is closed.
func (s *sendmailServer) serve() error {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait and try again,
			// as net/http's server does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.r.log.Warn("sendmail protocol: accept failed", "address", s.addr, "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.mu.Lock()
		full := s.shut || len(s.conns) >= s.max
		if !full {
			s.conns[c] = false
			s.wg.Add(1)
		}
		s.mu.Unlock()
		if full {
			// Closing before any answer makes the client run
			// outbox-sendmail, which goes through the submission socket
			// or the maildrop folder.
			c.Close()
			continue
		}
		go s.handle(c)
	}
}

func (s *sendmailServer) handle(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	p := identify(c)
	if !p.unix {
		c.Close()
		return
	}
	cfg := s.r.current().cfg
	sendmailshim.Serve(c, sendmailshim.ServeConfig{
		Config:     cfg,
		ConfigPath: s.r.cfg.Path,
		UID:        p.uid,
		NewSession: func() (smtp.Session, error) {
			// As the unix listener's sessions (backend.NewSession): a
			// local submitter, trusted, known by its uid.
			return &session{in: s.r.in, l: s.unix, peer: p, trusted: true, via: "sendmail"}, nil
		},
		Now:          s.r.now,
		ReadTimeout:  cfg.Limits.ReadTimeout,
		WriteTimeout: cfg.Limits.WriteTimeout,
		Start:        func() bool { return s.start(c) },
		Log:          s.r.log,
	})
}

// start marks c's call as taken, unless the daemon is stopping.
func (s *sendmailServer) start(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return false
	}
	s.conns[c] = true
	return true
}

// shutdown closes the socket and the connections whose call is not taken
// yet, lets the calls in progress finish until ctx ends, then closes
// them too.
func (s *sendmailServer) shutdown(ctx context.Context) {
	s.ln.Close()
	s.mu.Lock()
	s.shut = true
	for c, taken := range s.conns {
		if !taken {
			c.Close()
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	<-done
}
