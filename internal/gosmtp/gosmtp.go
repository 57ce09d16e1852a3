// Package gosmtp is what Outbox does around github.com/emersion/go-smtp
// where the library falls short, kept as one set. Each workaround names
// the limitation it answers, as found in go-smtp's source at the version
// in go.mod (v0.25.1); after an upgrade, read them again against the new
// source and drop the ones the library no longer needs.
//
// Server side, for the daemon's listeners and `sendmail -bs`:
//   - NewServer: the one setup of a go-smtp server.
//   - Qualifier: bare names in MAIL FROM and RCPT TO (qualifier.go).
//   - Queued: a 250 reply with the queue ID, returned as an error.
//   - Reply: a reply wrapped in another error loses its code.
//   - Drain: shutting down without cutting off a stored message's 250.
//   - WholeBody: a BDAT LAST chunk cut short reads as a whole message.
//   - Unwrap: after STARTTLS the session's net.Conn is go-smtp's TLS layer.
//   - ServeConn: serving one connection that is not from a listener.
//
// Client side, for deliveries to an upstream:
//   - NewClientAfterStartTLS: STARTTLS with our EHLO name.
//   - ReplyError: a reply read without go-smtp's client.
//
// Three smaller ones stay beside the code they guard, each with its own
// comment, in package upstream: the deadline on the DATA body (go-smtp
// sets none while the body is written), the EHLO after RSET (the client
// forgets its EHLO after Reset and would send it again lazily, inside
// whatever command comes next, where a failure reads as that command's),
// and the list of extensions a probe asks about (the client does not
// expose the EHLO reply, only Extension for a name we give).
package gosmtp

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// ServerConfig is what differs between Outbox's go-smtp servers.
type ServerConfig struct {
	Domain       string
	ReadTimeout  time.Duration
	WriteTimeout time.Duration // 0: none
	// MaxMessageBytes and MaxRecipients, when not 0, are enforced by
	// go-smtp and advertised in EHLO. go-smtp reads them from the Server
	// on every command without a lock, so a server whose limits a reload
	// changes must leave them 0 and enforce its limits in the Session.
	MaxMessageBytes int64
	MaxRecipients   int
	TLS             *tls.Config // nil: no STARTTLS
	ErrorLog        smtp.Logger
}

// NewServer returns a go-smtp server for be: SMTPUTF8 and DSN on (every
// Outbox session handles both), the rest from c.
func NewServer(be smtp.Backend, c ServerConfig) *smtp.Server {
	srv := smtp.NewServer(be)
	srv.Domain = c.Domain
	srv.ReadTimeout = c.ReadTimeout
	srv.WriteTimeout = c.WriteTimeout
	srv.MaxMessageBytes = c.MaxMessageBytes
	srv.MaxRecipients = c.MaxRecipients
	srv.TLSConfig = c.TLS
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	if c.ErrorLog != nil {
		srv.ErrorLog = c.ErrorLog
	}
	return srv
}

// Queued is what Session.Data returns for a stored message: a reply with
// the queue ID, which the client logs and an operator can then find.
// go-smtp answers a nil error from Data with a fixed "250 2.0.0 OK:
// queued" (dataErrorToStatus) and takes any other reply only as an
// error; a 250 returned as an *smtp.SMTPError is written as it is.
func Queued(id string) error {
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + id}
}

// Reply returns the *smtp.SMTPError in err's chain, or nil. A Session
// method must return that error itself: go-smtp finds a reply by a type
// assertion (writeError, dataErrorToStatus), not errors.As, so a wrapped
// reply is written as 451 or 554 with the wrapper's text.
func Reply(err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	return nil
}

// Drain is the shutdown state of one server connection. go-smtp's
// Server.Shutdown closes the listeners and waits for every session to end
// on its own, idle ones included (a client may keep one open for
// minutes), and Server.Close cuts every connection at once, also one
// whose message was just stored and whose 250 is not yet written: that
// client takes the mail as failed and sends it again. The library says
// neither when a session is inside DATA nor when a reply has gone out, so
// the connection tracks both: the Session marks DATA (BeginData,
// EndData), the connection's Write calls Wrote, and a drain closes at
// once only a connection outside DATA, the others after their reply.
type Drain struct {
	// inData is set from the start of Session.Data until the reply to it
	// is written; dataDone says Data returned, so the next write is that
	// reply; closeAfterReply is set by a drain.
	inData          atomic.Bool
	dataDone        atomic.Bool
	closeAfterReply atomic.Bool
}

// BeginData marks the start of Session.Data.
func (d *Drain) BeginData() { d.inData.Store(true) }

// EndData marks Data's return: its reply is the connection's next write.
func (d *Drain) EndData() { d.dataDone.Store(true) }

// Wrote is called after each write to the connection; it reports whether
// the connection is to close now.
func (d *Drain) Wrote() bool {
	if d.dataDone.Swap(false) {
		d.inData.Store(false)
	}
	return d.closeAfterReply.Load() && !d.inData.Load()
}

// Drain asks the connection to close; it reports whether it may close now
// (outside DATA). Otherwise Wrote reports it after the reply to DATA.
func (d *Drain) Drain() bool {
	d.closeAfterReply.Store(true)
	return !d.inData.Load()
}

// WholeBody passes a DATA or BDAT body through, but turns its end into
// io.ErrUnexpectedEOF once readFailed reports that a read of the
// connection failed. go-smtp ends the body normally after a BDAT LAST
// chunk even when the connection closed before the chunk's announced size
// had arrived: it copies the chunk through an io.LimitReader, which takes
// the early end for the end (handleBdat). A complete chunk is read to its
// exact size without another read of the connection, so a failed read
// means a short one. readFailed may be nil (no connection to watch).
func WholeBody(r io.Reader, readFailed func() bool) io.Reader {
	if readFailed == nil {
		return r
	}
	return &wholeBody{r: r, failed: readFailed}
}

type wholeBody struct {
	r      io.Reader
	failed func() bool
}

func (w *wholeBody) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if err == io.EOF && w.failed() {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Unwrap returns the connection under any TLS layers of c. go-smtp
// replaces the connection it hands the backend (Conn.Conn) with a
// *tls.Conn over it after STARTTLS, so the listener's own connection type
// is found under it.
func Unwrap(c net.Conn) net.Conn {
	for {
		tc, ok := c.(*tls.Conn)
		if !ok {
			return c
		}
		c = tc.NetConn()
	}
}

// ServeConn runs srv on the one connection c until the session ends
// (`sendmail -bs` on standard input and output). go-smtp serves only a
// net.Listener: this one hands out c, then reports itself closed once c
// is closed, which ends Serve.
func ServeConn(srv *smtp.Server, c net.Conn) error {
	nc := &notifyConn{Conn: c, closed: make(chan struct{})}
	err := srv.Serve(&oneListener{conn: nc})
	if errors.Is(err, net.ErrClosed) || errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// notifyConn closes its channel when closed.
type notifyConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *notifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

type oneListener struct {
	conn   *notifyConn
	handed bool
}

func (l *oneListener) Accept() (net.Conn, error) {
	if !l.handed {
		l.handed = true
		return l.conn, nil
	}
	<-l.conn.closed
	return nil, net.ErrClosed
}

func (l *oneListener) Close() error   { return l.conn.Close() }
func (l *oneListener) Addr() net.Addr { return l.conn.LocalAddr() }

// NewClientAfterStartTLS returns a go-smtp client for tc, a connection on
// which the caller has read the greeting, said EHLO with its own name,
// run STARTTLS and the handshake (host is the server's name). go-smtp's
// only STARTTLS path (NewClientStartTLS) says EHLO as "localhost", as
// Hello cannot come before it, and reports an upstream that does not
// offer STARTTLS with an error no caller can tell from others. Its client
// always starts by reading a 220 greeting, so a made-up one is replayed
// before the TLS stream; the client then sends its own EHLO over TLS.
// The client's TLSConnectionState does not see through the replay: keep
// tc's own.
func NewClientAfterStartTLS(tc net.Conn, host string) *smtp.Client {
	return smtp.NewClient(&greetedConn{Conn: tc, pending: []byte("220 " + host + " ready\r\n")})
}

// greetedConn replays a greeting before the real stream.
type greetedConn struct {
	net.Conn
	pending []byte
}

func (g *greetedConn) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}

// ReplyError is the *smtp.SMTPError for a reply text go-smtp's client
// hands over unparsed (the upstream's STARTTLS greeting and EHLO, the
// final 250 of CloseWithResponse in the upstream and in sendmail -bs),
// with a leading enhanced status code split off as the client does:
// go-smtp's own conversion (toSMTPErr) is not exported. Callers then
// classify every reply as one type.
func ReplyError(code int, msg string) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: code, Message: msg}
	first, rest, ok := strings.Cut(msg, " ")
	if !ok {
		return se
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return se
	}
	var enh smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return se
		}
		enh[i] = n
	}
	se.EnhancedCode = enh
	// RFC 2034: the code starts every line of a multi-line reply.
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}
