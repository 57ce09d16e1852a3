package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/maildrop"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// runMaildrop imports what the sendmail shim left in the maildrop folder
// while the daemon was down: once at start-up, then every few seconds.
func (r *Relay) runMaildrop(ctx context.Context) {
	dir := r.cfg.Spool.Maildrop
	if err := maildrop.Setup(dir); err != nil {
		r.log.Error("maildrop folder unusable; the shim cannot queue mail while the daemon is down", "dir", dir, "err", err)
	}
	rej := r.rejectedDir()
	if moved, err := maildrop.PrivateDir(rej); err != nil {
		r.log.Error("folder for rejected maildrop files unusable", "dir", rej, "err", err)
	} else if moved != "" {
		r.log.Warn("the folder for rejected maildrop files was not a private folder of the daemon's user; set aside and made anew", "dir", rej, "moved_to", moved)
	}
	interval := r.opts.MaildropInterval
	if interval == 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.importMaildrop(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rejectedDir is where maildrop files that cannot be read as messages are
// kept: beside the spool file, not inside the maildrop folder, which every
// user may write to (a user could create "rejected" there first, as a
// folder of their own or a link, and read or redirect what lands in it).
func (r *Relay) rejectedDir() string {
	return filepath.Join(filepath.Dir(r.cfg.Spool.Path), "maildrop-rejected")
}

// importMaildrop imports every complete file. A file is removed only after
// its message is in the spool, so a crash in between can duplicate it,
// never lose it. Recipients the policy refuses fail with a bounce to the
// sender, as if delivery had failed: the shim told its caller the message
// was stored. Only a file that cannot be read as a message at all goes to
// the rejected folder; what is not a plain file is removed.
func (r *Relay) importMaildrop(ctx context.Context) int {
	dir := r.cfg.Spool.Maildrop
	names, err := maildrop.List(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			r.log.Error("reading maildrop", "dir", dir, "err", err)
		}
		return 0
	}
	n := 0
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		path := filepath.Join(dir, name)
		id, err := r.importFile(path)
		switch {
		case err == nil:
		case errors.Is(err, maildrop.ErrUnsafe):
			r.log.Warn("maildrop entry is not a plain file of its own; removed", "file", name, "err", err)
			if err := maildrop.Discard(path); err != nil {
				r.log.Error("cannot remove maildrop entry", "file", name, "err", err)
			}
			continue
		case rejectable(err):
			rej := r.rejectedDir()
			r.log.Error("maildrop file unreadable as a message; moved aside", "file", name, "dir", rej, "err", err)
			if err := maildrop.Reject(path, rej); err != nil {
				r.log.Error("cannot move rejected maildrop file", "file", name, "err", err)
			}
			continue
		default:
			// A local, temporary problem (the spool cannot write, the
			// file cannot be opened now): the file stays for the next
			// round. The shim already told its caller the mail is stored.
			r.log.Warn("maildrop import deferred", "file", name, "err", err)
			continue
		}
		if err := maildrop.Remove(path); err != nil {
			r.log.Error("imported maildrop file not removed; it may be imported twice", "file", name, "err", err)
		}
		r.log.Info("imported from maildrop", "file", name, "id", id)
		r.metrics.accept("maildrop")
		n++
	}
	if n > 0 {
		r.sched.Kick()
	}
	return n
}

// rejectable reports whether an import error is about the file itself and
// will not go away on a retry: a malformed file, a sender address the
// policy refuses (there is nobody to tell).
func rejectable(err error) bool {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se.Code/100 == 5
	case errors.Is(err, maildrop.ErrMalformed):
		return true
	}
	return false
}

// errTooManyRecipients fails the recipients past limits.max_recipients.
// The SMTP side says 452 (the client may send the rest in another
// transaction); the import has no client to do that, so it is final here.
var errTooManyRecipients = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 5, 3}, Message: "Too many recipients (limits.max_recipients)"}

func (r *Relay) importFile(path string) (string, error) {
	env, body, err := maildrop.Read(path)
	if err != nil {
		return "", err
	}
	defer body.Close()
	// The configuration in force now (a reload may have replaced the one
	// of start-up): its aliases, limits and host name.
	snap := r.in.current()
	pol, cfg := snap.policy, snap.cfg
	from, err := pol.Sender(env.From, true)
	if err != nil {
		return "", err
	}
	// The shim checked -N before writing the file; a file that holds
	// anything else was not written by it, and its recipients get the
	// notices of a message without NOTIFY.
	notify, err := dsn.ParseNotify(env.Notify)
	if err != nil {
		r.log.Warn("maildrop file with an invalid NOTIFY; using the default", "file", filepath.Base(path), "err", err)
	}
	now := r.now()
	// The submitter is the owner of the file (Read puts it in env.UID),
	// named from the password database: the user name in the file is
	// the user's own claim.
	md := &envelope{
		from:  from,
		envID: env.EnvID,
		ret:   strings.ToUpper(env.Ret),
		body:  strings.ToUpper(env.BodyType),
		// A file written before the shim recorded SMTPUTF8 still needs it
		// for a non-ASCII address.
		utf8:  env.SMTPUTF8 || !mailhdr.IsASCII(env.From),
		who:   submitter{maildrop: true, uid: env.UID, user: userName(env.UID)},
		local: true,
	}
	// refused holds, by index in md.rcpts, why a recipient failed on
	// import.
	refused := map[int]*smtp.SMTPError{}
	accepted := 0
	for _, rc := range env.Recipients {
		md.utf8 = md.utf8 || !mailhdr.IsASCII(rc)
		addrs, err := pol.Recipient(rc)
		var se *smtp.SMTPError
		if err != nil && !errors.As(err, &se) {
			return "", err
		}
		if se == nil && accepted+len(addrs) > cfg.Limits.MaxRecipients {
			se = errTooManyRecipients
		}
		if se != nil {
			refused[len(md.rcpts)] = se
			md.rcpts = append(md.rcpts, refusedRecipient(rc, se, notify, now))
			continue
		}
		for _, a := range addrs {
			rec := spool.Recipient{Address: a, Status: spool.Pending, Notify: notify}
			if !strings.EqualFold(a, rc) {
				orig := rc
				if !strings.Contains(orig, "@") {
					orig += "@" + cfg.Hostname
				}
				rec.ORCPT = "rfc822;" + orig
			}
			md.rcpts = append(md.rcpts, rec)
			accepted++
		}
	}
	m, err := r.in.accept(context.Background(), snap, md, body)
	var le *limitError
	if errors.As(err, &le) {
		// Over a limit that went down since the shim, which checks them,
		// stored the file; or the file was not written by the shim. There
		// is no client to refuse: the sender gets a bounce.
		return r.bounceWhole(le.msg, le.head, le.reply, refused, now)
	}
	if err != nil {
		return "", err
	}
	r.bounceRefused(m, refused, now)
	return m.ID, nil
}

// refusedRecipient is a recipient that failed on import.
func refusedRecipient(addr string, se *smtp.SMTPError, notify []dsn.Notify, now time.Time) spool.Recipient {
	return spool.Recipient{
		Address: addr, Status: spool.Failed, Notify: notify, Updated: now,
		Code:      refusal(se).Enhanced,
		LastError: describe(refusal(se)),
	}
}

// refusal is a policy refusal as a delivery result, for the bounce.
func refusal(se *smtp.SMTPError) upstream.Result {
	return upstream.Result{
		Class: upstream.Failed, Code: se.Code, Message: se.Message,
		Enhanced: fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2]),
	}
}

// bounceWhole stores m with every recipient failed for reason (those
// already refused keep their own reason) and with hdr as its content, the
// most of it that can be kept, and bounces them all. The message then
// leaves the queue at once.
func (r *Relay) bounceWhole(m *spool.Message, hdr []byte, reason *smtp.SMTPError, refused map[int]*smtp.SMTPError, now time.Time) (string, error) {
	for i := range m.Recipients {
		if _, ok := refused[i]; !ok {
			refused[i] = reason
			m.Recipients[i] = refusedRecipient(m.Recipients[i].Address, reason, m.Recipients[i].Notify, now)
		}
	}
	m.Ret = "HDRS" // the content is gone beyond the header section
	if err := r.spool.Enqueue(context.Background(), m, bytes.NewReader(hdr)); err != nil {
		return "", err
	}
	r.bounceRefused(m, refused, now)
	return m.ID, nil
}

// bounceRefused sends the sender the failure notice for the recipients
// refused on import, as the scheduler does for failures at delivery, and
// removes m from the queue if nothing is left to deliver. m is in the
// spool already, where the notice takes its content from. The notice is
// owed in the spool before it is queued: one the spool refuses now is
// queued later by the scheduler, so the import itself cannot fail here.
func (r *Relay) bounceRefused(m *spool.Message, refused map[int]*smtp.SMTPError, now time.Time) {
	results := map[int]attempt{}
	var all, idx []int
	for i, se := range refused {
		results[i] = attempt{res: refusal(se), tried: true, relay: "maildrop import"}
		all = append(all, i)
		if dsn.Wants(m.Recipients[i].Notify, dsn.NotifyFailure) {
			idx = append(idx, i)
		}
	}
	sort.Ints(all)
	sort.Ints(idx)
	// The same delivery line, bounce metric and notify event as a 5yz
	// at delivery: the operator's alerts see these refusals too.
	r.sched.report(m, m, all, results, now)
	if len(idx) > 0 {
		// The notice goes on the scheduler's list of owed notices (kept in
		// the spool) before it is queued, as for failures at delivery: one
		// the spool refuses now is queued later, not lost.
		if n := r.sched.buildNotice(m, dsn.Failed, idx, results, now); n != nil {
			r.sched.owe([]*owedNotice{n})
			r.sched.queueOwed(now)
		}
	}
	if m.Done() {
		// Update drops a message whose recipients are all done.
		if _, err := r.spool.Update(m.ID, func(*spool.Message) error { return nil }); err != nil && !errors.Is(err, spool.ErrNotFound) {
			r.log.Error("cannot remove a message from the queue", "id", m.ID, "err", err)
		}
	}
}
