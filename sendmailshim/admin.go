package sendmailshim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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

// queueAdmin is what mailq and -q need from the daemon.
type queueAdmin interface {
	List(ctx context.Context, cfg *config.Config) ([]queuedMessage, error)
	Flush(ctx context.Context, cfg *config.Config) error
}

func (s *shim) admin() queueAdmin {
	if s.queue != nil {
		return s.queue
	}
	return adminAPI{}
}

// mailq is -bp: the queue in the format of Postfix's mailq.
func (s *shim) mailq() error {
	ctx, cancel := s.context()
	defer cancel()
	msgs, err := s.admin().List(ctx, s.cfg)
	if err != nil {
		return fail(ExitUnavailable, "cannot read the queue: %v", err)
	}
	msgs = append(msgs, maildropEntries(s.cfg.Spool.Maildrop)...)
	w := bufio.NewWriter(s.stdout)
	writeQueue(w, msgs, time.Local)
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
	if len(msgs) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	const (
		stringFormat = "%-11s %7s %-20s %s\n"
		senderFormat = "%-11s %7d %-20.20s %s\n"
	)
	var total int64
	for i, m := range msgs {
		if i == 0 {
			fmt.Fprintf(w, stringFormat, "-Queue ID-", "--Size--", "----Arrival Time----", "-Sender/Recipient-------")
		} else {
			fmt.Fprintln(w)
		}
		total += m.Size
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
		arrival := m.Arrived.In(loc).Format("Mon Jan _2 15:04:05")
		fmt.Fprintf(w, senderFormat, id, m.Size, arrival, printable(from))
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
			fmt.Fprintf(w, stringFormat, "", "", "", printable(r.Address))
		}
	}
	requests := "Requests"
	if len(msgs) == 1 {
		requests = "Request"
	}
	fmt.Fprintf(w, "\n-- %d Kbytes in %d %s.\n", total/1024, len(msgs), requests)
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

// newaliases is -bi: the aliases are checked when the configuration
// loads; say how many there are and where they come from, with the
// warnings for aliases_file lines that were skipped.
func (s *shim) newaliases() error {
	where := "aliases block"
	if s.cfg.AliasesFile != "" {
		where += " and aliases_file " + s.cfg.AliasesFile
	}
	for _, w := range s.cfg.Warnings {
		fmt.Fprintf(s.stderr, "%s: warning: %s\n", s.prog, w)
	}
	fmt.Fprintf(s.stdout, "%s: %d aliases in %s (%s)\n", s.prog, len(s.cfg.Aliases), s.cfg.Path, where)
	return nil
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
// taken, without sending anything.
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
			switch {
			case strings.Contains(a, "@") && config.ValidAddress(a):
				fmt.Fprintf(s.stdout, "%s... deliverable: relayed upstream\n", a)
			case !strings.Contains(a, "@") && s.cfg.Aliases[strings.ToLower(a)] != nil:
				fmt.Fprintf(s.stdout, "%s... deliverable: alias for %s\n", a, strings.Join(s.cfg.Aliases[strings.ToLower(a)], ", "))
			case !strings.Contains(a, "@"):
				fmt.Fprintf(s.stdout, "%s... User unknown: not in the aliases of %s\n", a, s.cfg.Path)
				bad = true
			default:
				fmt.Fprintf(s.stdout, "%s... not a valid address\n", a)
				bad = true
			}
		}
	}
	if bad {
		return &exitError{code: ExitNoUser}
	}
	return nil
}
