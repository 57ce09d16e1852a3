package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/maildrop"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// runMaildrop imports what the sendmail shim left in the maildrop folder
// while the daemon was down: once at start-up, then every few seconds.
func (r *Relay) runMaildrop(ctx context.Context) {
	dir := r.cfg.Spool.Maildrop
	if err := maildrop.Setup(dir); err != nil {
		r.log.Error("maildrop folder unusable; the shim cannot queue mail while the daemon is down", "dir", dir, "err", err)
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

// importMaildrop imports every complete file. A file is removed only after
// its message is in the spool, so a crash in between can duplicate it,
// never lose it. A file that cannot be accepted is moved to "rejected/"
// with the reason logged, not deleted.
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
		if err != nil {
			if !rejectable(err) {
				// A local, temporary problem (the spool cannot write, the
				// file cannot be opened now): the file stays for the next
				// round. The shim already told its caller the mail is stored.
				r.log.Warn("maildrop import deferred", "file", name, "err", err)
				continue
			}
			r.log.Error("maildrop file rejected; moved to rejected/", "file", name, "err", err)
			rej := filepath.Join(dir, "rejected")
			os.MkdirAll(rej, 0o700)
			if err := os.Rename(path, filepath.Join(rej, name)); err != nil {
				r.log.Error("cannot move rejected maildrop file", "file", name, "err", err)
			}
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
// will not go away on a retry: a malformed file, an address or size the
// policy refuses (5yz), a header section too large.
func rejectable(err error) bool {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se.Code/100 == 5
	case errors.Is(err, maildrop.ErrMalformed), errors.Is(err, mailhdr.ErrHeaderTooLarge):
		return true
	}
	return false
}

func (r *Relay) importFile(path string) (string, error) {
	env, body, err := maildrop.Read(path)
	if err != nil {
		return "", err
	}
	defer body.Close()
	pol := r.in.policy
	from, err := pol.Sender(env.From, true)
	if err != nil {
		return "", err
	}
	var notify []string
	if env.Notify != "" {
		for _, n := range strings.Split(env.Notify, ",") {
			notify = append(notify, strings.ToUpper(strings.TrimSpace(n)))
		}
	}
	now := r.now()
	m := &spool.Message{
		ID: spool.NewID(now), From: from, EnvID: env.EnvID, Ret: strings.ToUpper(env.Ret),
		BodyType: strings.ToUpper(env.BodyType), Arrived: now,
		Submitter: fmt.Sprintf("uid %d (maildrop)", env.UID),
	}
	if env.User != "" {
		m.Submitter = fmt.Sprintf("uid %d (%s, maildrop)", env.UID, env.User)
	}
	for _, rc := range env.Recipients {
		addrs, err := pol.Recipient(rc)
		if err != nil {
			return "", err
		}
		for _, a := range addrs {
			rec := spool.Recipient{Address: a, Status: spool.Pending, Notify: notify}
			if !strings.EqualFold(a, rc) {
				orig := rc
				if !strings.Contains(orig, "@") {
					orig += "@" + r.cfg.Hostname
				}
				rec.ORCPT = "rfc822;" + orig
			}
			m.Recipients = append(m.Recipients, rec)
		}
	}
	br := getReader(mailhdr.NewCRLFReader(&sizeLimit{r: body, left: r.cfg.Limits.MaxMessageSize}))
	defer putReader(br)
	hdr, err := mailhdr.ReadHeader(br, maxHeaderSection)
	if err != nil {
		return "", err
	}
	hdr = pol.Header(hdr, m.ID, now, true)
	received := fmt.Sprintf("Received: by %s (Outbox, from userid %d)\r\n\tid %s; %s\r\n", r.cfg.Hostname, env.UID, m.ID, now.Format(time.RFC1123Z))
	if len(received)+len(hdr) > maxHeaderSection {
		return "", mailhdr.ErrHeaderTooLarge // as on the SMTP side
	}
	if err := r.spool.Enqueue(context.Background(), m, io.MultiReader(strings.NewReader(received), bytes.NewReader(hdr), br)); err != nil {
		return "", err
	}
	return m.ID, nil
}

// sizeLimit fails a read that goes beyond the limit, so an oversized
// message is refused before anything is stored.
type sizeLimit struct {
	r    io.Reader
	left int64
}

func (l *sizeLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, smtp.ErrDataTooLarge
	}
	return n, err
}
