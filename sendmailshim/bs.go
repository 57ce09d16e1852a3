package sendmailshim

import (
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/gosmtp"
)

// serveSMTP is -bs: an SMTP session on stdin and stdout. Each transaction
// is relayed command by command to the daemon, whose replies go back to
// the client unchanged; while the daemon is down, transactions go to the
// maildrop folder instead. Either way 250 follows DATA only once the
// message is stored.
func (s *shim) serveSMTP() error {
	// "RCPT TO:<root>" works here as on the daemon's local listeners.
	conn := &stdioConn{r: s.stdin, w: s.stdout, q: gosmtp.NewQualifier(s.cfg.Hostname)}
	srv := gosmtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &bsSession{s: s}, nil
	}), gosmtp.ServerConfig{
		Domain:          s.cfg.Hostname,
		ReadTimeout:     s.cfg.Limits.ReadTimeout,
		MaxMessageBytes: s.cfg.Limits.MaxMessageSize,
		MaxRecipients:   s.cfg.Limits.MaxRecipients,
		ErrorLog:        log.New(s.stderr, s.prog+": ", 0),
	})
	if err := gosmtp.ServeConn(srv, conn); err != nil {
		return fail(ExitTempFail, "SMTP session: %v", err)
	}
	return nil
}

// bsSession is one -bs SMTP session.
type bsSession struct {
	s      *shim
	client *smtp.Client // the daemon; nil before the first MAIL or in maildrop mode
	drop   bool         // the daemon is down: use the maildrop folder
	why    error        // why it is down

	env envelope // current transaction
}

var (
	errTempLocal = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errNoUser    = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "Unknown local name: not in the aliases"}
	errBadRcpt   = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Not a valid address"}
)

func (b *bsSession) Mail(from string, opts *smtp.MailOptions) error {
	b.env = envelope{from: from}
	if opts != nil {
		b.env.ret = strings.ToLower(string(opts.Return))
		b.env.envID = opts.EnvelopeID
		b.env.body = string(opts.Body)
		b.env.utf8 = opts.UTF8
	}
	if b.client == nil && !b.drop {
		c, err := b.s.dialDaemon()
		if err != nil {
			if !fallback(err) {
				return asReply(err)
			}
			b.drop, b.why = true, err
		} else {
			b.client = c
		}
	}
	if b.drop {
		return nil
	}
	var mo *smtp.MailOptions
	if opts != nil {
		mo = &smtp.MailOptions{Size: opts.Size, UTF8: opts.UTF8, Return: opts.Return, EnvelopeID: opts.EnvelopeID}
	}
	err := b.client.Mail(from, mo)
	if err != nil && gosmtp.Reply(err) == nil {
		// The daemon went away between transactions: this one can
		// still go to the maildrop folder.
		b.client.Close()
		b.client, b.drop, b.why = nil, true, err
		return nil
	}
	return asReply(err)
}

func (b *bsSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if opts != nil && len(opts.Notify) > 0 {
		var n []string
		for _, v := range opts.Notify {
			n = append(n, strings.ToLower(string(v)))
		}
		b.env.notify = strings.Join(n, ",")
	}
	if b.drop {
		if !config.ValidAddress(to) {
			return errBadRcpt
		}
		if _, err := b.s.cfg.ResolveRecipient(to); errors.Is(err, config.ErrUnknownLocal) {
			return errNoUser
		}
		b.env.rcpts = append(b.env.rcpts, to)
		return nil
	}
	var ro *smtp.RcptOptions
	if opts != nil {
		ro = &smtp.RcptOptions{Notify: opts.Notify}
	}
	if err := b.client.Rcpt(to, ro); err != nil {
		return asReply(err)
	}
	b.env.rcpts = append(b.env.rcpts, to)
	return nil
}

func (b *bsSession) Data(r io.Reader) error {
	// r must be consumed whatever happens.
	defer io.Copy(io.Discard, r)
	msg, err := readContent(r)
	if errors.Is(err, errHeaderTooLarge) {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Header section too large"}
	}
	if err != nil {
		return errTempLocal
	}
	msg.header = fixup{
		sender:   b.env.from,
		hostname: b.s.cfg.Hostname,
		now:      b.s.now(),
	}.fix(msg.header)
	if b.drop {
		if err := b.s.drop(&b.env, msg, b.why); err != nil {
			b.s.verbosef("%v", err)
			var ee *exitError
			if errors.As(err, &ee) && ee.code != ExitTempFail {
				// Over a limit of the daemon's: trying again cannot help.
				return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: oneLine(ee.msg)}
			}
			return errTempLocal
		}
		return nil
	}
	w, err := b.client.Data()
	if err != nil {
		return asReply(err)
	}
	if _, err := io.Copy(w, msg.reader(0)); err != nil {
		// Our input ended (or failed) before the final dot: only io.EOF
		// ends a DATA body, so err is io.ErrUnexpectedEOF or worse.
		// Hanging up without the dot makes the daemon store nothing, and
		// our client hears no 250.
		b.client.Close()
		b.client = nil
		return asReply(err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return asReply(err)
	}
	// The daemon's 250 names the queue ID: pass it on (see gosmtp.Queued).
	return gosmtp.ReplyError(250, resp.StatusText)
}

func (b *bsSession) Reset() {
	b.env = envelope{}
	if b.client != nil {
		if err := b.client.Reset(); err != nil {
			b.client.Close()
			b.client = nil
		}
	}
}

func (b *bsSession) Logout() error {
	if b.client != nil {
		b.client.Quit()
		b.client = nil
	}
	return nil
}

// asReply passes the daemon's replies through and turns anything else
// into a temporary failure, so that the client keeps its message.
func asReply(err error) error {
	if err == nil {
		return nil
	}
	if se := gosmtp.Reply(err); se != nil {
		return se
	}
	return errTempLocal
}

// stdioConn is a net.Conn over standard input and output.
type stdioConn struct {
	r io.Reader
	w io.Writer
	q *gosmtp.Qualifier // qualifies bare envelope names; may be nil
}

func (c *stdioConn) Read(p []byte) (int, error) {
	if c.q != nil {
		return c.q.Read(c.r, p)
	}
	return c.r.Read(p)
}

func (c *stdioConn) Write(p []byte) (int, error) {
	if c.q != nil {
		c.q.Wrote(p)
	}
	return c.w.Write(p)
}
func (c *stdioConn) Close() error                       { return nil }
func (c *stdioConn) LocalAddr() net.Addr                { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr               { return stdioAddr{} }
func (c *stdioConn) SetDeadline(t time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(t time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdio" }
