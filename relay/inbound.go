package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/internal/gosmtp"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// Store is what the inbound side needs of the spool.
type Store interface {
	Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error
}

// maxHeaderSection bounds the header section we read into memory to
// rewrite; the body streams behind it.
const maxHeaderSection = mailhdr.MaxHeaderSection

// Inbound accepts mail over SMTP and hands it to the spool.
type Inbound struct {
	store   Store
	log     *slog.Logger
	kick    func() // tells the scheduler new mail arrived
	now     func() time.Time
	metrics *metrics
	// live is the configuration in force, which a reload replaces.
	live *live
}

// current returns the configuration in force and its policy.
func (in *Inbound) current() *snapshot { return in.live.load() }

// backend is the go-smtp backend of one listener.
type backend struct {
	in *Inbound
	l  *listener
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s := &session{in: b.in, l: b.l, conn: c}
	if tc, ok := gosmtp.Unwrap(c.Conn()).(*trackedConn); ok {
		s.tc = tc
		s.peer = tc.peer
	} else {
		s.peer = identify(c.Conn())
	}
	s.trusted = s.peer.unix || b.l.allowedIP(s.peer.ip)
	return s, nil
}

type session struct {
	in   *Inbound
	l    *listener
	conn *smtp.Conn
	tc   *trackedConn
	peer peer

	trusted bool   // allowed without AUTH (loopback, unix socket, allow_networks)
	authed  string // AUTH identity
	// via is how the client came, for the metrics: "" for SMTP,
	// "sendmail" for the sendmail protocol (sendmailshim.Serve).
	via string

	// conf is the configuration in force at MAIL FROM: the transaction
	// keeps it to the end, whatever a reload does meanwhile.
	conf     *snapshot
	from     *string
	mailOpts smtp.MailOptions
	rcpts    []spool.Recipient
}

var (
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required: this client is outside allow_networks"}
	errNoSender     = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "MAIL FROM first"}
	errSpool        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Local error storing the message; try again later"}
	errNoSpace      = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage: the spool's disk is full; try again later"}
	errIncomplete   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "The message did not arrive whole; nothing was stored"}
	errHeaderTooBig = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Header section too large"}
)

func (s *session) AuthMechanisms() []string {
	if len(s.l.cfg.Users) == 0 {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || len(s.l.cfg.Users) == 0 {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		hash, ok := s.l.cfg.Users[username]
		if !ok {
			// Spend the same time as a wrong password.
			bcrypt.CompareHashAndPassword([]byte("$2a$10$7EqJtq98hPqEX7fNZaFWoOhi5BWX4Z3rNRZ1GqAVz3CZs1G4cEnYm"), []byte(password))
			return smtp.ErrAuthFailed
		}
		if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
			s.in.log.Warn("authentication failed", "client", s.peer.String(), "user", username)
			return smtp.ErrAuthFailed
		}
		s.authed = username
		return nil
	}), nil
}

// snap returns the configuration of the transaction (see session.conf).
func (s *session) snap() *snapshot {
	if s.conf == nil {
		s.conf = s.in.current()
	}
	return s.conf
}

func (s *session) Reset() {
	s.from = nil
	s.rcpts = nil
	s.mailOpts = smtp.MailOptions{}
}

func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if !s.trusted && s.authed == "" {
		return errAuthRequired
	}
	conf := s.in.current()
	if max := conf.cfg.Limits.MaxMessageSize; opts != nil && max > 0 && opts.Size > max { // 0: no limit, as at DATA
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message too large (max_message_size is %d bytes)", conf.cfg.Limits.MaxMessageSize)}
	}
	if !mailhdr.IsASCII(from) && (opts == nil || !opts.UTF8) {
		return errNeedsUTF8
	}
	addr, err := conf.policy.Sender(from, s.local())
	if err != nil {
		return err
	}
	s.conf = conf
	s.from = &addr
	if opts != nil {
		s.mailOpts = *opts
	}
	return nil
}

// local reports whether the client counts as a local submitter, whose
// unqualified addresses get our hostname (as Postfix does for local mail).
func (s *session) local() bool {
	return s.peer.unix || s.peer.ip.IsLoopback()
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.from == nil {
		return errNoSender
	}
	if !mailhdr.IsASCII(to) && !s.mailOpts.UTF8 {
		return errNeedsUTF8
	}
	addrs, err := s.snap().policy.Recipient(to)
	if err != nil {
		return err
	}
	if limit := s.snap().cfg.Limits.MaxRecipients; len(s.rcpts)+len(addrs) > limit {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: fmt.Sprintf("Too many recipients (max_recipients is %d)", limit)}
	}
	var notify []dsn.Notify
	orcpt := ""
	if opts != nil {
		for _, n := range opts.Notify {
			notify = append(notify, dsn.Notify(n))
		}
		if opts.OriginalRecipient != "" {
			orcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
		}
	}
	for _, a := range addrs {
		o := orcpt
		if o == "" && !strings.EqualFold(a, to) {
			o = "rfc822;" + to // the alias the client asked for
		}
		s.rcpts = append(s.rcpts, spool.Recipient{Address: a, Status: spool.Pending, Notify: notify, ORCPT: o})
	}
	return nil
}

func (s *session) Data(r io.Reader) error {
	if s.from == nil || len(s.rcpts) == 0 {
		return errNoSender
	}
	var readFailed func() bool
	if s.tc != nil {
		// DATA lasts until its reply is written (trackedConn.Write): a
		// drain in between must not cut off the 250 of a stored message.
		s.tc.drain.BeginData()
		defer s.tc.drain.EndData()
		readFailed = s.tc.readFailed.Load
	}
	conf := s.snap()
	env := &envelope{
		from:  *s.from,
		rcpts: s.rcpts,
		envID: s.mailOpts.EnvelopeID,
		ret:   string(s.mailOpts.Return),
		body:  string(s.mailOpts.Body),
		utf8:  s.mailOpts.UTF8,
		who:   s.submitter(),
		local: s.local(),
	}
	m, err := s.in.accept(context.Background(), conf, env, gosmtp.WholeBody(r, readFailed))
	if err != nil {
		var be *bodyError
		switch se := gosmtp.Reply(err); {
		case errors.As(err, &be):
			// The client went away (or reset, or timed out) inside the
			// message: nothing is stored. A client still there hears a
			// temporary failure, never a 5yz that would make it bounce
			// a message it can send again.
			s.in.log.Info(logNothingStored, "client", s.peer.String(), "err", be.err)
			return errIncomplete
		case se != nil:
			return se
		}
		s.in.log.Error("cannot store message", "client", s.peer.String(), "err", err)
		if errors.Is(err, spool.ErrNoSpace) {
			return errNoSpace
		}
		return errSpool
	}
	via := "smtp"
	if s.via != "" {
		via = s.via
	}
	s.in.log.Info("accepted", append([]any{"id", m.ID, "from", m.From, "rcpts", len(m.Recipients), "size", m.Size, "client", m.Submitter, "via", via}, tagAttrs(m.Tags)...)...)
	s.in.metrics.accept(via)
	if s.in.kick != nil {
		s.in.kick()
	}
	return gosmtp.Queued(m.ID)
}

const logNothingStored = "the message did not arrive whole (connection closed or transaction reset); nothing stored"

// submitter is the client of the session, for the Received field and the
// queue.
func (s *session) submitter() submitter {
	who := submitter{unix: s.peer.unix, uid: s.peer.uid, user: s.peer.user, addr: s.peer.addr, ip: s.peer.ip, auth: s.authed}
	if !s.peer.unix {
		who.proto = "ESMTP"
		if _, ok := s.conn.TLSConnectionState(); ok {
			who.proto += "S"
		}
		if s.authed != "" {
			who.proto += "A"
		}
		who.helo = s.conn.Hostname()
	}
	return who
}

func bracketIP(ip net.IP) string {
	if ip == nil {
		return "unknown"
	}
	return "[" + ip.String() + "]"
}

// sanitize keeps a client-chosen name from breaking the header.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 33 || r > 126 || r == '(' || r == ')' {
			return '_'
		}
		return r
	}, s)
}

func netipAddr(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	return a.Unmap(), ok
}
