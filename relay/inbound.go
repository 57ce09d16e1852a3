package relay

import (
	"bytes"
	"context"
	"crypto/tls"
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

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/spool"
)

// Store is what the inbound side needs of the spool.
type Store interface {
	Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error
}

// maxHeaderSection bounds the header section we read into memory to
// rewrite; the body streams behind it.
const maxHeaderSection = 1 << 20

// Inbound accepts mail over SMTP and hands it to the spool.
type Inbound struct {
	cfg     *config.Config
	store   Store
	log     *slog.Logger
	kick    func() // tells the scheduler new mail arrived
	now     func() time.Time
	policy  *Policy
	metrics *metrics
	// live, when set, is the configuration in force, which a reload
	// replaces; cfg and policy are then only the ones at start.
	live *live
}

// current returns the configuration in force and its policy.
func (in *Inbound) current() *snapshot {
	if in.live != nil {
		return in.live.load()
	}
	return &snapshot{cfg: in.cfg, policy: in.policy}
}

// backend is the go-smtp backend of one listener.
type backend struct {
	in *Inbound
	l  *listener
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	tc := unwrapConn(c.Conn())
	s := &session{in: b.in, l: b.l, conn: c}
	if tc != nil {
		s.tc = tc
		s.peer = tc.peer
	} else {
		s.peer = identify(c.Conn())
	}
	s.trusted = s.peer.unix || b.l.allowedIP(s.peer.ip)
	return s, nil
}

func unwrapConn(c net.Conn) *trackedConn {
	for {
		switch v := c.(type) {
		case *trackedConn:
			return v
		case *tls.Conn:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

type session struct {
	in   *Inbound
	l    *listener
	conn *smtp.Conn
	tc   *trackedConn
	peer peer

	trusted bool   // allowed without AUTH (loopback, unix socket, allow_networks)
	authed  string // AUTH identity

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
	if opts != nil && opts.Size > conf.cfg.Limits.MaxMessageSize {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: fmt.Sprintf("Message too large (max_message_size is %d bytes)", conf.cfg.Limits.MaxMessageSize)}
	}
	if !isASCII(from) && (opts == nil || !opts.UTF8) {
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
	if !isASCII(to) && !s.mailOpts.UTF8 {
		return errNeedsUTF8
	}
	addrs, err := s.snap().policy.Recipient(to)
	if err != nil {
		return err
	}
	if limit := s.snap().cfg.Limits.MaxRecipients; len(s.rcpts)+len(addrs) > limit {
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: fmt.Sprintf("Too many recipients (max_recipients is %d)", limit)}
	}
	var notify []string
	orcpt := ""
	if opts != nil {
		for _, n := range opts.Notify {
			notify = append(notify, string(n))
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
	if s.tc != nil {
		// inData stays set until the reply is written (trackedConn.Write):
		// a drain in between must not cut off the 250 of a stored message.
		s.tc.inData.Store(true)
		defer s.tc.dataDone.Store(true)
	}
	now := s.in.now()
	m := &spool.Message{
		ID:         spool.NewID(now),
		From:       *s.from,
		Recipients: s.rcpts,
		EnvID:      s.mailOpts.EnvelopeID,
		Ret:        string(s.mailOpts.Return),
		BodyType:   string(s.mailOpts.Body),
		UTF8:       s.mailOpts.UTF8,
		Submitter:  s.peer.String(),
		Arrived:    now,
	}
	if s.peer.unix && s.peer.uid >= 0 {
		m.UID = uint32(s.peer.uid) // from SO_PEERCRED: the kernel's word, not the client's
	}
	if s.authed != "" {
		m.Submitter += " auth=" + s.authed
	}
	br := getReader(mailhdr.NewCRLFReader(&sizeLimit{r: &wholeBody{r: r, tc: s.tc}, left: s.snap().cfg.Limits.MaxMessageSize}))
	defer putReader(br)
	hdr, err := mailhdr.ReadHeader(br, maxHeaderSection)
	if err != nil {
		if incomplete(err) {
			s.in.log.Info(logNothingStored, "client", s.peer.String())
		}
		return dataError(err)
	}
	hdr = s.snap().policy.Header(hdr, m.ID, now, s.local())
	received := s.received(m, now)
	if len(received)+len(hdr) > maxHeaderSection {
		// What we add must not push the section past what delivery (From:
		// rewriting) reads back, or the message could never leave.
		return errHeaderTooBig
	}
	body := io.MultiReader(strings.NewReader(received), bytes.NewReader(hdr), br)
	if err := s.in.store.Enqueue(context.Background(), m, body); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		if incomplete(err) {
			// The client went away (or reset) inside the message: the
			// spool stored nothing, and go-smtp's reply goes nowhere.
			s.in.log.Info(logNothingStored, "client", s.peer.String())
			return err
		}
		s.in.log.Error("cannot store message", "client", s.peer.String(), "err", err)
		if errors.Is(err, spool.ErrNoSpace) {
			return errNoSpace
		}
		return errSpool
	}
	s.in.log.Info("accepted", "id", m.ID, "from", m.From, "rcpts", len(m.Recipients), "size", m.Size, "client", m.Submitter)
	s.in.metrics.accept("smtp")
	if s.in.kick != nil {
		s.in.kick()
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + m.ID}
}

const logNothingStored = "the message did not arrive whole (connection closed or transaction reset); nothing stored"

// incomplete reports whether a body read ended before the end of the
// message: go-smtp's DATA reader returns io.ErrUnexpectedEOF when the
// connection closes before the final dot, and its BDAT reader
// smtp.ErrDataReset when the connection ends (or RSET comes) before the
// LAST chunk. Only io.EOF means a whole message.
func incomplete(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, smtp.ErrDataReset)
}

// wholeBody passes a DATA or BDAT body through, but turns its end into
// io.ErrUnexpectedEOF when the connection had already failed: go-smtp ends
// the body normally after a LAST chunk even when the connection closed
// before the chunk's announced size had arrived (the chunk is copied with
// an io.LimitReader, which takes the early end for the end). A complete
// chunk is read to its exact size without another read of the
// connection, so a failed read means a short one.
type wholeBody struct {
	r  io.Reader
	tc *trackedConn
}

func (w *wholeBody) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err == io.EOF && w.tc != nil && w.tc.readFailed.Load() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func dataError(err error) error {
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, mailhdr.ErrHeaderTooLarge):
		return errHeaderTooBig
	}
	return err
}

// received builds our trace header: who handed us the message, how, and
// when. Local submissions name the uid, as Postfix does.
func (s *session) received(m *spool.Message, now time.Time) string {
	host := s.in.cfg.Hostname
	date := now.Format(time.RFC1123Z)
	if s.peer.unix {
		return fmt.Sprintf("Received: by %s (Outbox, from userid %s)\r\n\tid %s; %s\r\n", host, strings.TrimPrefix(s.peer.String(), "uid "), m.ID, date)
	}
	proto := "ESMTP"
	if _, ok := s.conn.TLSConnectionState(); ok {
		proto += "S"
	}
	if s.authed != "" {
		proto += "A"
	}
	helo := s.conn.Hostname()
	forClause := ""
	if len(m.Recipients) == 1 {
		forClause = "\r\n\tfor <" + m.Recipients[0].Address + ">"
	}
	return fmt.Sprintf("Received: from %s (%s)\r\n\tby %s (Outbox) with %s id %s%s;\r\n\t%s\r\n", sanitize(helo), bracketIP(s.peer.ip), host, proto, m.ID, forClause, date)
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
