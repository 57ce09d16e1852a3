package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/durable"
	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

func cmdQueue(a *app, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		a.flags("queue").Usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "ls", "list":
		return queueLs(a, args)
	case "show", "hold", "release", "delete":
		return queueAct(a, sub, args)
	case "retry":
		// Release and flush one message: what release does.
		return queueAct(a, "release", args)
	case "bounce":
		return queueBounce(a, args)
	case "body":
		return queueBody(a, args)
	case "flush":
		return queueFlush(a, args)
	case "stats":
		return queueStats(a, args)
	case "backup":
		return queueBackup(a, args)
	case "compact":
		return queueCompact(a, args)
	}
	fmt.Fprintf(a.stderr, "outbox queue: unknown subcommand %q (ls, show, body, hold, release, retry, bounce, delete, flush, stats, backup, compact)\n", sub)
	return exitUsage
}

func queueLs(a *app, args []string) int {
	fs := a.flags("queue")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per message")
	limit := fs.Int("limit", 0, "list only the first `N` messages (oldest first; after the filters); 0 lists all")
	filter := &lsFilter{now: time.Now()}
	filter.flags(fs)
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	if err := filter.check(); err != nil {
		fmt.Fprintln(a.stderr, "outbox queue ls:", err)
		return exitUsage
	}
	if *limit < 0 {
		fmt.Fprintln(a.stderr, "outbox queue ls: --limit wants a count of messages")
		return exitUsage
	}
	// The listing streams from the daemon and is printed as it comes, so
	// memory stays one message whatever the queue's length; the client
	// gives up only when the daemon stays silent (adminapi's idle timeout).
	// With filters the daemon sends everything and the limit counts what
	// is printed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	serverLimit := *limit
	if filter.active() {
		serverLimit = 0
	}
	out := bufio.NewWriterSize(a.stdout, 64<<10)
	defer out.Flush()
	var (
		n     int
		total int64
	)
	// Fixed-width columns for the message lines, sized for the IDs the
	// spool makes (a longer one widens its own line only); the recipient
	// lines under each are free-form, so a long address or error does not
	// widen the table.
	row := fmt.Sprintf("%%-%ds  %%8s  %%-19s  %%8s  %%-19s  %%s\n", len(spool.NewID(time.Now())))
	err := adminapi.EachQueued(ctx, cfg, serverLimit, func(m adminapi.Message) error {
		if !filter.match(m) {
			return nil
		}
		if *limit > 0 && n == *limit {
			return errEnough
		}
		if *asJSON {
			b, err := json.MarshalIndent(withHints(m), "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if n == 0 {
				sep = "[\n  "
			}
			n++
			out.WriteString(sep)
			_, err = out.Write(b)
			return err
		}
		if n == 0 {
			fmt.Fprintf(out, row, "ID", "SIZE", "ARRIVED", "ATTEMPTS", "NEXT ATTEMPT", "FROM")
		}
		n++
		next := m.NextAttempt.Local().Format("2006-01-02 15:04:05")
		if m.Held {
			next = "held"
		}
		from := m.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(out, row, m.ID, strconv.FormatInt(m.Size, 10), m.Arrived.Local().Format("2006-01-02 15:04:05"),
			strconv.Itoa(m.Attempts), next, from)
		for _, r := range m.Recipients {
			line := "  → " + r.Address + "  " + r.Status
			if r.LastError != "" {
				line += "  (" + r.LastError + ")"
			}
			if h := upstream.Hint(r.LastError); h != "" {
				line += "\n      hint: " + h
			}
			out.WriteString(line + "\n")
		}
		total += m.Size
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	if err != nil {
		out.Flush()
		fmt.Fprintln(a.stderr, "outbox queue ls:", err)
		return spoolExit(err)
	}
	switch {
	case *asJSON && n == 0:
		out.WriteString("[]\n")
	case *asJSON:
		out.WriteString("\n]\n")
	case n == 0:
		fmt.Fprintln(out, "The queue is empty.")
	case *limit > 0 && n == *limit:
		fmt.Fprintf(out, "%d message(s), %d bytes (the first %d: --limit; outbox queue stats counts them all)\n", n, total, *limit)
	default:
		fmt.Fprintf(out, "%d message(s), %d bytes\n", n, total)
	}
	return exitOK
}

// errEnough stops a listing once --limit messages are printed.
var errEnough = errors.New("enough")

// lsJSON is a listed message with, beside each recipient's last_error,
// the explanation of a known provider reply (hint, omitted when none).
type lsJSON struct {
	adminapi.Message
	Recipients []lsRecipient `json:"recipients"`
}

type lsRecipient struct {
	adminapi.Recipient
	Hint string `json:"hint,omitempty"`
}

func withHints(m adminapi.Message) lsJSON {
	out := lsJSON{Message: m, Recipients: make([]lsRecipient, 0, len(m.Recipients))}
	for _, r := range m.Recipients {
		out.Recipients = append(out.Recipients, lsRecipient{Recipient: r, Hint: upstream.Hint(r.LastError)})
	}
	return out
}

// withSpool runs fn on the spool file directly; for use while the daemon
// is not running. A spool the caller may not read (its folder is for the
// outbox user) is an adminapi.ErrForbidden that says so.
func withSpool(cfg *config.Config, readOnly bool, fn func(s *spool.Spool) error) error {
	s, err := adminapi.OpenSpool(cfg, readOnly)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s)
}

func queueAct(a *app, action string, args []string) int {
	return forEachID(a, action, args, 30*time.Second, func(ctx context.Context, cfg *config.Config, c *adminapi.Client, id string) error {
		if action == "show" {
			text, err := c.Show(ctx, id)
			if errors.Is(err, adminapi.ErrNotRunning) {
				err = withSpool(cfg, true, func(s *spool.Spool) error {
					text, err = relay.Dump(s, id)
					return err
				})
			}
			if err == nil {
				fmt.Fprintln(a.stdout, text)
			}
			return err
		}
		err := c.Act(ctx, action, id)
		if errors.Is(err, adminapi.ErrNotRunning) {
			err = withSpool(cfg, false, func(s *spool.Spool) error {
				switch action {
				case "hold":
					_, err := s.Update(id, func(m *spool.Message) error { m.Held = true; return nil })
					return err
				case "release":
					now := time.Now()
					_, err := s.Update(id, func(m *spool.Message) error { m.Held = false; m.NextAttempt = now; return nil })
					return err
				}
				return s.Delete(id)
			})
		}
		if err == nil {
			fmt.Fprintf(a.stdout, "%s: %s\n", id, map[string]string{"hold": "held", "release": "released", "delete": "deleted"}[action])
		}
		return err
	})
}

// forEachID runs fn for each message ID given to `outbox queue NAME`,
// reporting each failure on stderr, and returns one exit code for them
// all: 77 if any was refused for the caller, else 1 if any failed; 69 at
// once when fn needs the daemon and it does not run.
func forEachID(a *app, name string, args []string, timeout time.Duration,
	fn func(ctx context.Context, cfg *config.Config, c *adminapi.Client, id string) error) int {
	fs := a.flags("queue")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(a.stderr, "outbox queue %s: give one or more message IDs (see `outbox queue ls`)\n", name)
		return exitUsage
	}
	cfg, code := a.loadConfig()
	if cfg == nil {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := adminapi.NewClient(cfg.Admin.Socket)
	rc := exitOK
	for _, id := range fs.Args() {
		err := fn(ctx, cfg, c, id)
		if err == nil {
			continue
		}
		fmt.Fprintf(a.stderr, "outbox queue %s %s: %v\n", name, id, err)
		switch {
		case errors.Is(err, adminapi.ErrNotRunning):
			return exitUnavailable
		case errors.Is(err, adminapi.ErrForbidden):
			rc = exitNoPerm
		case rc == exitOK:
			rc = exitError
		}
	}
	return rc
}

func queueFlush(a *app, args []string) int {
	fs := a.flags("queue")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	// The daemon answers when every waiting message is due; delivery
	// starts meanwhile. A bound, so a wedged daemon does not hang scripts.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := adminapi.NewClient(cfg.Admin.Socket).Flush(ctx)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox queue flush:", err)
		return exitUnavailable
	}
	fmt.Fprintf(a.stdout, "%d message(s) scheduled for delivery now\n", n)
	return exitOK
}

func queueStats(a *app, args []string) int {
	fs := a.flags("queue")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	st, err := adminapi.NewClient(cfg.Admin.Socket).Stats(context.Background())
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox queue stats:", err)
		return exitUnavailable
	}
	fmt.Fprintf(a.stdout, "queued: %d (pending %d, deferred %d, held %d)\ncommits: %d\nwrites: %d\nwrites per commit: %.2f\n",
		st.Queued, st.Pending, st.Deferred, st.Held, st.Commits, st.Writes, st.BatchingRatio)
	return exitOK
}

func queueBackup(a *app, args []string) int {
	fs := a.flags("queue")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(a.stderr, "outbox queue backup: give the file to write, e.g. outbox queue backup /var/backups/outbox-spool.db")
		return exitUsage
	}
	cfg, code := a.loadConfig()
	if cfg == nil {
		return code
	}
	// The spool is opened read-only, which needs the daemon stopped: it
	// holds the file lock, and the admin socket offers no backup.
	err := withSpool(cfg, true, func(s *spool.Spool) error {
		f, err := os.OpenFile(fs.Arg(0), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		// A backup put back in place must open for the daemon's user.
		if err := matchOwner(f, cfg.Spool.Path); err != nil {
			f.Close()
			os.Remove(fs.Arg(0))
			return err
		}
		if _, err := s.Backup(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox queue backup:", err)
		return exitTempFail
	}
	fmt.Fprintln(a.stdout, "backup written to", fs.Arg(0))
	return exitOK
}

func queueCompact(a *app, args []string) int {
	fs := a.flags("queue")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	tmp := cfg.Spool.Path + ".compact"
	os.Remove(tmp)
	err := withSpool(cfg, false, func(s *spool.Spool) error {
		if err := s.CompactTo(tmp); err != nil {
			return err
		}
		// The new file replaces the spool: as root, it would otherwise
		// be root's, and the daemon (user outbox) could not open it.
		f, err := os.OpenFile(tmp, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		if err := matchOwner(f, cfg.Spool.Path); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		// Renamed while the lock is held, so no daemon opens the old file
		// in between.
		if err := os.Rename(tmp, cfg.Spool.Path); err != nil {
			return err
		}
		return durable.SyncDir(filepath.Dir(cfg.Spool.Path))
	})
	if err != nil {
		os.Remove(tmp)
		fmt.Fprintln(a.stderr, "outbox queue compact:", err, "(stop the daemon first)")
		return exitTempFail
	}
	fmt.Fprintln(a.stdout, "spool compacted")
	return exitOK
}

// matchOwner gives f the owner, group and permission bits of the file at
// ref (the spool), so that what root writes for the spool stays usable
// by the daemon's user.
func matchOwner(f *os.File, ref string) error {
	fi, err := os.Stat(ref)
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	return f.Chmod(fi.Mode().Perm())
}

// spoolExit is the exit code for a failure to read the spool file: a file
// that is no spool is a configuration error (spool.path), a damaged one
// makes the queue unavailable; anything else (the lock, a socket timeout)
// is temporary.
func spoolExit(err error) int {
	switch {
	case errors.Is(err, adminapi.ErrForbidden):
		return exitNoPerm
	case errors.Is(err, spool.ErrNotSpool):
		return exitConfig
	case errors.Is(err, spool.ErrCorrupt):
		return exitUnavailable
	}
	return exitTempFail
}
