package sendmailshim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/maildrop"
)

// queuedMessage is one message as mailq shows it.
type queuedMessage struct {
	ID         string
	From       string
	Size       int64
	Arrived    time.Time
	Held       bool
	Recipients []queuedRecipient

	maildrop bool // a file of the maildrop folder, not yet imported
	dropUID  int  // its owner
}

type queuedRecipient struct {
	Address   string
	Status    string // pending | sent | failed
	LastError string
}

// errDaemonDown is wrapped by queueAdmin errors when nothing answers on
// the admin socket.
var errDaemonDown = errors.New("daemon not running")

// queueAdmin is what mailq and -q need from the daemon. List calls fn
// for each queued message, oldest first, as the listing streams in.
type queueAdmin interface {
	List(ctx context.Context, cfg *config.Config, fn func(queuedMessage) error) error
	Flush(ctx context.Context, cfg *config.Config) error
}

func (s *shim) admin() queueAdmin {
	if s.queue != nil {
		return s.queue
	}
	return adminAPI{}
}

// mailq is -bp: the queue in the format of Postfix's mailq.
//
// The listing is printed as it streams in, so memory stays one message
// whatever the queue's length; without a deadline, the client gives up
// only when the daemon stays silent (adminapi's idle timeout).
func (s *shim) mailq() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := bufio.NewWriterSize(s.stdout, 64<<10)
	q := &queueWriter{w: w, loc: time.Local}
	err := s.admin().List(ctx, s.cfg, func(m queuedMessage) error {
		q.add(m)
		return nil
	})
	if errors.Is(err, adminapi.ErrForbidden) {
		// admin.queue_list = "privileged", or the spool file is closed to
		// this user while the daemon is down: as outbox queue ls, 77.
		return fail(ExitNoPerm, "cannot read the queue: %v", err)
	}
	if err != nil {
		w.Flush()
		return fail(ExitUnavailable, "cannot read the queue: %v", err)
	}
	for _, m := range maildropEntries(s.cfg.Spool.Maildrop) {
		q.add(m)
	}
	q.end()
	if err := w.Flush(); err != nil {
		return fail(ExitTempFail, "writing the listing: %v", err)
	}
	return nil
}

// maildropEntries lists the files waiting in the maildrop folder, as
// Postfix lists its maildrop queue: by file, without reading them. Only
// root may list the folder; others see nothing of it.
func maildropEntries(dir string) []queuedMessage {
	names, err := maildrop.List(dir)
	if err != nil {
		return nil
	}
	var out []queuedMessage
	for _, n := range names {
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			continue
		}
		uid := 0
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			uid = int(sys.Uid)
		}
		out = append(out, queuedMessage{ID: n, Size: st.Size(), Arrived: st.ModTime(), maildrop: true, dropUID: uid})
	}
	return out
}

// writeQueue prints msgs as Postfix's mailq does (postqueue's
// showq_compat, short queue IDs): a heading, then per message its ID with
// "!" appended when held, size, arrival and sender; its recipients in
// order, each change of deferral reason printed before them right-aligned
// in parentheses; a blank line between messages and a total. Delivered and
// failed recipients are not listed: Postfix's queue no longer holds them
// either.
func writeQueue(w io.Writer, msgs []queuedMessage, loc *time.Location) {
	q := &queueWriter{w: w, loc: loc}
	for _, m := range msgs {
		q.add(m)
	}
	q.end()
}

// queueWriter prints a listing one message at a time (see writeQueue).
type queueWriter struct {
	w     io.Writer
	loc   *time.Location
	n     int
	total int64
}

const (
	queueStringFormat = "%-11s %7s %-20s %s\n"
	queueSenderFormat = "%-11s %7d %-20.20s %s\n"
)

func (q *queueWriter) add(m queuedMessage) {
	w := q.w
	if q.n == 0 {
		fmt.Fprintf(w, queueStringFormat, "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
	} else {
		fmt.Fprintln(w)
	}
	q.n++
	q.total += m.Size
	id := m.ID
	if m.Held {
		id += "!"
	}
	from := m.From
	switch {
	case m.maildrop:
		from = fmt.Sprintf("(maildrop queue, sender UID %d)", m.dropUID)
	case from == "":
		from = "MAILER-DAEMON"
	}
	// asctime's first 20 characters: the date and a space.
	arrival := m.Arrived.In(q.loc).Format("Mon Jan _2 15:04:05")
	fmt.Fprintf(w, queueSenderFormat, id, m.Size, arrival, printable(from))
	saved := ""
	for _, r := range m.Recipients {
		if r.Status == "sent" || r.Status == "failed" {
			continue
		}
		if why := printable(r.LastError); why != saved {
			saved = why
			if why == "" {
				why = "reason unavailable"
			}
			pad := 76 - len(why)
			if pad < 0 {
				pad = 0
			}
			fmt.Fprintf(w, "%*s(%s)\n", pad, "", why)
		}
		fmt.Fprintf(w, queueStringFormat, "", "", "", printable(r.Address))
	}
}

// end prints the total, or that the queue is empty.
func (q *queueWriter) end() {
	if q.n == 0 {
		fmt.Fprintln(q.w, "Mail queue is empty")
		return
	}
	requests := "Requests"
	if q.n == 1 {
		requests = "Request"
	}
	fmt.Fprintf(q.w, "\n-- %d Kbytes in %d %s.\n", q.total/1024, q.n, requests)
}

// printable replaces control characters and line breaks, which would
// break the listing's layout, with "?", as Postfix does.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 32 || r == 127 {
			return '?'
		}
		return r
	}, s)
}

// newaliases is -bi: the aliases (aliases_file and the aliases block)
// are read and checked when the configuration loads. It prints how many
// each source holds, as Sendmail's newaliases does ("/etc/aliases: 12
// aliases"), each problem as a warning naming its file and line, then
// asks a running daemon to reload (SIGHUP), which only root and the
// daemon's user may do. There is no aliases.db to rebuild: the daemon
// reads the text files at start and at each reload.
func (s *shim) newaliases() error {
	for _, w := range s.cfg.Warnings {
		fmt.Fprintf(s.stderr, "%s: warning: %s\n", s.prog, w)
	}
	for _, p := range s.cfg.Placeholders {
		fmt.Fprintf(s.stderr, "%s: warning: %s\n", s.prog, p)
	}
	fromFile := 0
	for _, o := range s.cfg.AliasOrigin {
		if s.cfg.AliasesFile != "" && strings.HasPrefix(o, s.cfg.AliasesFile+":") {
			fromFile++
		}
	}
	if s.cfg.AliasesFile != "" {
		fmt.Fprintf(s.stdout, "%s: %d aliases\n", s.cfg.AliasesFile, fromFile)
	}
	fmt.Fprintf(s.stdout, "%s: %d aliases (aliases block)\n", s.cfg.Path, len(s.cfg.Aliases)-fromFile)
	if len(s.cfg.LocalCatchall) > 0 {
		fmt.Fprintf(s.stdout, "%s: other local names go to %s (local_catchall)\n", s.cfg.Path, strings.Join(s.cfg.LocalCatchall, ", "))
	}
	reload := s.reload
	if reload == nil {
		reload = signalDaemon
	}
	pid, err := reload(s.cfg.Admin.Socket)
	switch {
	case err == nil:
		fmt.Fprintf(s.stdout, "%s: asked the daemon (pid %d) to reload\n", s.prog, pid)
	case errors.Is(err, errDaemonDown):
		fmt.Fprintf(s.stdout, "%s: the daemon is not running; it reads the aliases when it starts\n", s.prog)
	default:
		fmt.Fprintf(s.stderr, "%s: cannot ask the daemon to reload (%v); it reads the aliases at its next reload: run newaliases as root, or systemctl reload outbox\n", s.prog, err)
	}
	return nil
}

// signalDaemon sends SIGHUP to the daemon and returns its process ID. The
// daemon is found as the process that listens on the admin socket, whose
// credentials the kernel reports (SO_PEERCRED): no PID file that could go
// stale or name another process. The kernel's own rule decides who may
// signal it: root and the daemon's user.
func signalDaemon(socket string) (int, error) {
	conn, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return 0, errDaemonDown
		}
		return 0, err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		cred *syscall.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	pid := int(cred.Pid)
	// 0: the daemon is in a PID namespace we cannot see. 1: systemd
	// itself holds the socket (socket activation), and SIGHUP would make
	// it reload its own units instead.
	if pid <= 1 || pid == os.Getpid() {
		return 0, fmt.Errorf("the admin socket %s is held by process %d, not by the daemon", socket, pid)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return pid, fmt.Errorf("pid %d: %w", pid, err)
	}
	return pid, nil
}

// flush is -q: ask the daemon to retry the queue now.
func (s *shim) flush() error {
	ctx, cancel := s.context()
	defer cancel()
	if err := s.admin().Flush(ctx, s.cfg); err != nil {
		if errors.Is(err, errDaemonDown) {
			return fail(ExitUnavailable, "cannot flush the queue: the daemon is not running; start it with: outbox serve")
		}
		return fail(ExitUnavailable, "cannot flush the queue: %v", err)
	}
	return nil
}

// verify is -bv: say for each recipient whether mail to it would be
// taken, without sending anything. The answer is the daemon's own:
// config.ResolveRecipient decides for both.
func (s *shim) verify() error {
	if len(s.opts.Recipients) == 0 {
		return fail(ExitUsage, "-bv needs recipients")
	}
	bad := false
	for _, arg := range s.opts.Recipients {
		list, err := parseAddressList(arg)
		if err != nil || len(list) == 0 {
			fmt.Fprintf(s.stdout, "%s... not a valid address\n", arg)
			bad = true
			continue
		}
		for _, a := range list {
			r, err := s.cfg.ResolveRecipient(a)
			switch {
			case errors.Is(err, config.ErrUnknownLocal):
				fmt.Fprintf(s.stdout, "%s... User unknown: no alias in %s, and no local_catchall\n", a, s.cfg.Path)
				bad = true
			case err != nil:
				fmt.Fprintf(s.stdout, "%s... not a valid address\n", a)
				bad = true
			case r.Via == "alias":
				fmt.Fprintf(s.stdout, "%s... deliverable: alias for %s\n", a, strings.Join(r.Addrs, ", "))
			case r.Via == "local_catchall":
				fmt.Fprintf(s.stdout, "%s... deliverable: no alias; local_catchall %s\n", a, strings.Join(r.Addrs, ", "))
			default:
				fmt.Fprintf(s.stdout, "%s... deliverable: relayed upstream\n", a)
			}
		}
	}
	if bad {
		return &exitError{code: ExitNoUser}
	}
	return nil
}
