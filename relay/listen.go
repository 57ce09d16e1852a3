package relay

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/gosmtp"
)

// peer is who is on the other end of an inbound connection.
type peer struct {
	unix bool
	addr string // "127.0.0.1:5555" for TCP
	ip   net.IP // TCP only
	uid  int    // unix only; -1 if unknown
	user string // unix only
}

func (p peer) String() string {
	if p.unix {
		if p.user != "" {
			return fmt.Sprintf("uid %d (%s)", p.uid, p.user)
		}
		return fmt.Sprintf("uid %d", p.uid)
	}
	return p.addr
}

// trackedConn is an inbound connection the listener counts and the server
// can close once it is idle (see gosmtp.Drain).
type trackedConn struct {
	net.Conn
	l    *listener
	peer peer

	closeOnce sync.Once
	drain     gosmtp.Drain
	// q qualifies bare envelope names of local clients; nil for others.
	q *gosmtp.Qualifier
	// readFailed is set once a read returned an error (the client closed,
	// a timeout): a BDAT chunk being read then is short (gosmtp.WholeBody).
	readFailed atomic.Bool
}

func (c *trackedConn) Read(p []byte) (n int, err error) {
	if c.q != nil {
		n, err = c.q.Read(c.Conn, p)
	} else {
		n, err = c.Conn.Read(p)
	}
	if err != nil {
		c.readFailed.Store(true)
	}
	return n, err
}

func (c *trackedConn) Write(p []byte) (int, error) {
	if c.q != nil {
		c.q.Wrote(p)
	}
	n, err := c.Conn.Write(p)
	if c.drain.Wrote() {
		c.Close()
	}
	return n, err
}

func (c *trackedConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		c.l.forget(c)
	})
	return err
}

// listener wraps a net.Listener: it caps concurrent connections (421
// beyond the cap), refuses clients outside the allowlist when the listener
// has no AUTH to offer them (554 5.7.1), and reads unix peer credentials.
type listener struct {
	net.Listener
	cfg      config.Listen
	max      int
	hostname string

	mu    sync.Mutex
	conns map[*trackedConn]struct{}
	shut  bool
}

func newListener(l net.Listener, cfg config.Listen, max int, hostname string) *listener {
	return &listener{Listener: l, cfg: cfg, max: max, hostname: hostname, conns: map[*trackedConn]struct{}{}}
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		p := identify(c)
		if !p.unix && !l.allowedIP(p.ip) && len(l.cfg.Users) == 0 {
			fmt.Fprintf(c, "554 5.7.1 %s: client %s is not in allow_networks of this listener\r\n", l.hostname, p.ip)
			c.Close()
			continue
		}
		l.mu.Lock()
		if len(l.conns) >= l.max || l.shut {
			l.mu.Unlock()
			fmt.Fprintf(c, "421 4.7.0 %s: too many connections, try again later\r\n", l.hostname)
			c.Close()
			continue
		}
		tc := &trackedConn{Conn: c, l: l, peer: p}
		if p.unix || p.ip.IsLoopback() {
			tc.q = gosmtp.NewQualifier(l.hostname)
		}
		l.conns[tc] = struct{}{}
		l.mu.Unlock()
		return tc, nil
	}
}

func (l *listener) forget(c *trackedConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// allowedIP reports whether a TCP client may use the listener without AUTH.
func (l *listener) allowedIP(ip net.IP) bool {
	if len(l.cfg.AllowNetworks) == 0 {
		return ip.IsLoopback()
	}
	a, ok := netipAddr(ip)
	if !ok {
		return false
	}
	for _, p := range l.cfg.AllowNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// drain closes idle connections and asks busy ones to close after their
// current DATA reply.
func (l *listener) drain() {
	l.mu.Lock()
	l.shut = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		if c.drain.Drain() {
			c.Close()
		}
	}
}

func identify(c net.Conn) peer {
	if uc, ok := c.(*net.UnixConn); ok {
		p := peer{unix: true, uid: -1}
		raw, err := uc.SyscallConn()
		if err == nil {
			var cred *unix.Ucred
			raw.Control(func(fd uintptr) {
				cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
			})
			if err == nil && cred != nil {
				p.uid = int(cred.Uid)
				p.user = userName(p.uid)
			}
		}
		return p
	}
	p := peer{addr: c.RemoteAddr().String()}
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		p.ip = ta.IP
	}
	return p
}

// listen opens the socket for one listen block. A unix socket left over
// from an unclean stop is removed, but only if nothing answers on it.
func listen(cfg config.Listen) (net.Listener, error) {
	if cfg.Network != "unix" {
		l, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			if errors.Is(err, syscall.EACCES) {
				return nil, fmt.Errorf("listen on %s: %w (ports below 1024 need root or CAP_NET_BIND_SERVICE)", cfg.Address, err)
			}
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("listen on %s: %w (another mail server or outbox already listens there; stop it or change the listen address)", cfg.Address, err)
			}
			return nil, fmt.Errorf("listen on %s: %w", cfg.Address, err)
		}
		return l, nil
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Addr), 0o755); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Address, err)
	}
	if _, err := os.Stat(cfg.Addr); err == nil {
		if c, err := net.Dial("unix", cfg.Addr); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen on %s: another process serves this socket (is outbox already running?)", cfg.Address)
		}
		os.Remove(cfg.Addr)
	}
	l, err := net.Listen("unix", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Address, err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(cfg.Addr, cfg.SocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Address, err)
	}
	return l, nil
}

// userNames caches uid → login name: the lookup reads the password
// database, and local submitters are few and change rarely.
var userNames struct {
	sync.Mutex
	m map[int]userEntry
}

type userEntry struct {
	name string
	at   time.Time
}

func userName(uid int) string {
	userNames.Lock()
	defer userNames.Unlock()
	if e, ok := userNames.m[uid]; ok && time.Since(e.at) < time.Minute {
		return e.name
	}
	name := ""
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		name = u.Username
	}
	if userNames.m == nil || len(userNames.m) > 1024 {
		userNames.m = map[int]userEntry{}
	}
	userNames.m[uid] = userEntry{name, time.Now()}
	return name
}

// noIPv6 reports whether err says a loopback IPv6 listener cannot exist
// because the host has IPv6 turned off, which is no reason to refuse to
// start: the IPv4 loopback listener serves "localhost".
func noIPv6(lc config.Listen, err error) bool {
	if lc.Network != "tcp" || !(errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
		return false
	}
	host, _, splitErr := net.SplitHostPort(lc.Addr)
	ip := net.ParseIP(host)
	return splitErr == nil && ip != nil && ip.To4() == nil && ip.IsLoopback()
}
