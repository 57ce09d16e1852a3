package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// envelope is a new message's envelope as a door of the daemon took it:
// the SMTP listeners (DATA and BDAT, which the shim's socket submission
// and `sendmail -bs` reach) or the maildrop import. Inbound.accept turns
// it and the message's content into a queued message, the same way
// whichever door it came through.
type envelope struct {
	from string
	// rcpts are resolved by the policy already (aliases expanded, NOTIFY
	// and ORCPT set); the import's refused ones are there as failed.
	rcpts []spool.Recipient
	envID string
	ret   string // FULL | HDRS | ""
	body  string // 7BIT | 8BITMIME | ""
	utf8  bool   // SMTPUTF8
	who   submitter
	// local: a local submitter, whose header section gets bare names
	// qualified and a missing Date and Message-ID (Policy.Header).
	local bool
}

// submitter is who handed a message over, and how: the Received field and
// the queue's Submitter are made from it.
type submitter struct {
	maildrop bool   // a maildrop file, owned by uid
	unix     bool   // the unix socket, with uid from SO_PEERCRED
	uid      int    // -1 when unknown
	user     string // uid's login name, "" when unknown
	addr     string // a TCP client's address
	ip       net.IP // a TCP client's IP address
	helo     string // the name the client gave in EHLO/HELO
	proto    string // ESMTP, ESMTPS, ESMTPA or ESMTPSA
	auth     string // AUTH identity, "" without AUTH
}

// String is the submitter as the queue shows it.
func (s submitter) String() string {
	var who string
	switch {
	case s.maildrop && s.user != "":
		return fmt.Sprintf("uid %d (%s, maildrop)", s.uid, s.user)
	case s.maildrop:
		return fmt.Sprintf("uid %d (maildrop)", s.uid)
	case s.unix && s.user != "":
		who = fmt.Sprintf("uid %d (%s)", s.uid, s.user)
	case s.unix:
		who = fmt.Sprintf("uid %d", s.uid)
	default:
		who = s.addr
	}
	if s.auth != "" {
		who += " auth=" + s.auth
	}
	return who
}

// uidOf returns the uid whose mail this is, when the kernel vouches for
// it (socket credentials, the owner of a maildrop file): it gives that
// user the right to read the message's content.
func (s submitter) uidOf() (uint32, bool) {
	if (s.unix || s.maildrop) && s.uid >= 0 {
		return uint32(s.uid), true
	}
	return 0, false
}

// received builds our trace header field: who handed us the message, how,
// and when. Local submissions name the uid, as Postfix does; the formats
// are the ones the daemon has always written, which filters may match.
func (s submitter) received(host string, m *spool.Message, now time.Time) string {
	if s.maildrop {
		return mailhdr.LocalReceived(host, strconv.Itoa(s.uid), m.ID, now)
	}
	if s.unix {
		who := strconv.Itoa(s.uid)
		if s.user != "" {
			who += " (" + s.user + ")"
		}
		return mailhdr.LocalReceived(host, who, m.ID, now)
	}
	date := now.Format(time.RFC1123Z)
	forClause := ""
	if len(m.Recipients) == 1 {
		forClause = "\r\n\tfor <" + m.Recipients[0].Address + ">"
	}
	return fmt.Sprintf("Received: from %s (%s)\r\n\tby %s (Outbox) with %s id %s%s;\r\n\t%s\r\n", sanitize(s.helo), bracketIP(s.ip), host, s.proto, m.ID, forClause, date)
}

// limitError refuses a whole message for a limit of the configuration
// (its size, its header section, its recipients). The SMTP side answers
// with reply; the maildrop import, which has no client to answer, stores
// msg with head (what of the message can be kept, perhaps nothing) and
// bounces it.
type limitError struct {
	reply *smtp.SMTPError
	msg   *spool.Message
	head  []byte
}

func (e *limitError) Error() string { return e.reply.Error() }
func (e *limitError) Unwrap() error { return e.reply }

// bodyError is a failed read of the submitted content. Only io.EOF ends a
// whole message: go-smtp's DATA reader returns io.ErrUnexpectedEOF when
// the connection closes before the final dot, its BDAT reader
// smtp.ErrDataReset when the connection ends (or RSET comes) before the
// LAST chunk, gosmtp.WholeBody io.ErrUnexpectedEOF for a short LAST chunk; a
// timeout or a maildrop file that cannot be read end it too. Nothing was
// stored, and the fault is not the spool's.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// accept is the one way into the queue. It builds the message from env,
// reads the header section (at most maxHeaderSection), applies the header
// policy of conf, puts our Received field first, enforces conf's limits,
// and stores the message. Only a clean end of body (io.EOF) stores it:
// any other end stores nothing and returns an error wrapping *bodyError.
// A limit refuses the message whole with a *limitError, whose Unwrap is
// the SMTP reply. Other errors are the spool's.
func (in *Inbound) accept(ctx context.Context, conf *snapshot, env *envelope, body io.Reader) (*spool.Message, error) {
	now := time.Now()
	if in.now != nil {
		now = in.now()
	}
	m := &spool.Message{
		ID:         spool.NewID(now),
		From:       env.from,
		Recipients: env.rcpts,
		EnvID:      env.envID,
		Ret:        env.ret,
		BodyType:   env.body,
		UTF8:       env.utf8,
		Submitter:  env.who.String(),
		Arrived:    now,
	}
	if uid, ok := env.who.uidOf(); ok {
		m.UID = uid
	}
	cfg := conf.cfg
	refuse := func(reply *smtp.SMTPError, head []byte) (*spool.Message, error) {
		return nil, &limitError{reply: reply, msg: m, head: head}
	}
	pending := 0
	for _, r := range m.Recipients {
		if r.Status == spool.Pending {
			pending++
		}
	}
	if pending > cfg.Limits.MaxRecipients {
		// Both doors count recipients as they come; this is the last word.
		return refuse(errTooManyRecipients, nil)
	}
	watch := &mailhdr.ReadWatch{R: body}
	br := getReader(mailhdr.NewCRLFReader(&mailhdr.LimitReader{R: watch, Max: cfg.Limits.MaxMessageSize, Err: smtp.ErrDataTooLarge}))
	defer putReader(br)
	hdr, err := mailhdr.ReadHeader(br, maxHeaderSection)
	switch {
	case watch.Err != nil:
		return nil, &bodyError{watch.Err}
	case errors.Is(err, mailhdr.ErrHeaderTooLarge):
		return refuse(errHeaderTooBig, nil)
	case errors.Is(err, smtp.ErrDataTooLarge):
		return refuse(smtp.ErrDataTooLarge, nil)
	case err != nil:
		return nil, err
	}
	hdr = conf.policy.Header(hdr, m.ID, now, env.local)
	m.Tags = readTags(hdr, cfg.Tags)
	received := env.who.received(cfg.Hostname, m, now)
	if len(received)+len(hdr) > maxHeaderSection {
		// What we add must not push the section past what delivery (From:
		// rewriting) reads back, or the message could never leave.
		return refuse(errHeaderTooBig, nil)
	}
	err = in.store.Enqueue(ctx, m, io.MultiReader(strings.NewReader(received), bytes.NewReader(hdr), br))
	switch {
	case err == nil:
		return m, nil
	case watch.Err != nil:
		return nil, &bodyError{watch.Err}
	case errors.Is(err, smtp.ErrDataTooLarge):
		return refuse(smtp.ErrDataTooLarge, append([]byte(received), hdr...))
	}
	return nil, err
}
