package sendmailshim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
)

// The daemon's side of the sendmail protocol (version 1): a small C
// sendmail sends the daemon its arguments, three environment variables and
// its standard input over a unix socket, and the daemon runs this shim's
// own delivery code for it, in process, storing through the same SMTP
// session as the submission socket. A Go process costs about 5 ms to start
// and 1 ms to exit on the machine measured, a static C program about 1 ms,
// which is most of a sendmail call. The wire format:
//
//	client: OUTBOX-SENDMAIL 1\n, then A<len>:<argv element>\n (argv[0]
//	        first), E<len>:<NAME=...|LOGNAME=...|USER=...>\n, then .\n
//	daemon: GO\n, GO DOT\n (a lone "." line ends the message), HANDOVER\n
//	        (run outbox-sendmail yourself, nothing was read), or
//	        EXIT <code> <len>:<stderr text>\n
//	client, after GO: chunks <len>\n<len bytes>, then 0\n
//	daemon: EXIT <code> <len>:<stderr text>\n, then it closes.

// Limits of the request header.
const (
	protoLine   = "OUTBOX-SENDMAIL 1"
	maxItems    = 4096
	maxItemSize = 64 << 10
	maxRequest  = 1 << 20
	maxChunk    = 1 << 20
)

// ServeConfig is what Serve needs of the daemon for one connection.
type ServeConfig struct {
	// Config is the configuration in force; ConfigPath names its file in
	// messages.
	Config     *config.Config
	ConfigPath string
	// UID is the client's user ID, from the socket's peer credentials; a
	// negative one (unknown) hands the call over.
	UID int
	// NewSession returns the daemon's submission session for this peer;
	// the message is stored through its Mail, Rcpt and Data.
	NewSession func() (smtp.Session, error)
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// ReadTimeout bounds each read from the client, WriteTimeout each
	// answer; 0: no bound.
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// Start is called once the request is read and the daemon would take
	// the call; false (the daemon is stopping) hands it over instead. Nil:
	// always true.
	Start func() bool
	// Log receives what goes wrong on the connection; nil: nothing.
	Log *slog.Logger
}

// errNoRequest is a connection that never said "OUTBOX-SENDMAIL 1": it is
// closed without an answer.
var errNoRequest = errors.New("not a sendmail protocol request")

// errMalformed is a request that began well but is not one this daemon
// reads: it gets HANDOVER.
var errMalformed = errors.New("malformed sendmail protocol request")

// request is a call's header: its arguments and the environment variables
// the shim reads.
type request struct {
	argv []string
	env  map[string]string
}

// Serve answers one call of the sendmail protocol on conn, then closes it.
// The call is taken only when it is a plain delivery (the program named
// sendmail, no -b other than -bm, no -q interval, no -v, no -C): anything
// else, or anything the daemon cannot read, is handed back to the client
// to run outbox-sendmail. The exit code and stderr text of the EXIT answer
// are those the whole shim gives for the same call.
func Serve(conn net.Conn, sc ServeConfig) {
	defer conn.Close()
	if sc.Now == nil {
		sc.Now = time.Now
	}
	log := sc.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	answer := func(format string, args ...any) error {
		if sc.WriteTimeout > 0 {
			conn.SetWriteDeadline(time.Now().Add(sc.WriteTimeout))
		}
		_, err := fmt.Fprintf(conn, format, args...)
		return err
	}
	tr := &timedReader{conn: conn, d: sc.ReadTimeout}
	if sc.ReadTimeout > 0 {
		// The header has one time limit as a whole: a client that
		// trickles it byte by byte must not hold a connection slot.
		tr.until = time.Now().Add(sc.ReadTimeout)
	}
	br := bufio.NewReaderSize(tr, 64<<10)
	req, err := readRequest(br)
	tr.until = time.Time{}
	if err != nil {
		if err != errNoRequest {
			answer("HANDOVER\n")
		}
		log.Debug("sendmail protocol: not taken", "uid", sc.UID, "err", err)
		return
	}
	opts, ok := plainDelivery(req.argv)
	if !ok || sc.UID < 0 || (sc.Start != nil && !sc.Start()) {
		answer("HANDOVER\n")
		return
	}
	goLine := "GO\n"
	if !opts.IgnoreDots {
		goLine = "GO DOT\n"
	}
	if err := answer("%s", goLine); err != nil {
		return
	}
	in := &chunkReader{br: br}
	var stderr bytes.Buffer
	s := &shim{
		prog:    "sendmail",
		opts:    opts,
		stdin:   in,
		stdout:  io.Discard,
		stderr:  &stderr,
		getenv:  func(k string) string { return req.env[k] },
		uid:     sc.UID,
		now:     sc.Now,
		cfgPath: sc.ConfigPath,
		cfg:     sc.Config,
	}
	s.store = s.sessionStore(sc.NewSession, in.finish)
	code := func() (code int) {
		defer func() {
			if p := recover(); p != nil {
				// The shim's code runs inside the daemon: a bug in it
				// must fail this call, not stop the daemon.
				log.Error("sendmail protocol: internal error", "uid", sc.UID, "panic", p)
				stderr.Reset()
				fmt.Fprintf(&stderr, "sendmail: internal error in the daemon: %v\n", p)
				code = ExitSoftware
			}
		}()
		err := s.identify()
		if err == nil {
			err = s.deliver()
		}
		return s.exit(err)
	}()
	answer("EXIT %d %d:%s\n", code, stderr.Len(), stderr.Bytes())
}

// plainDelivery parses argv and reports whether the daemon takes the call:
// a delivery by the program named sendmail, which reads its input, with
// none of what needs the whole shim as the caller runs it (-v writes the
// dialogue, -C names another configuration, -q with an interval reads
// nothing).
func plainDelivery(argv []string) (*Options, bool) {
	if filepath.Base(argv[0]) != "sendmail" {
		return nil, false
	}
	opts, err := ParseArgs(ModeDeliver, argv[1:])
	if err != nil || opts.Mode != ModeDeliver || opts.QueueIntvl != "" || opts.Verbose || opts.ConfigSet {
		return nil, false
	}
	return opts, true
}

// readRequest reads a request header. Its errors are errNoRequest, before
// a whole "OUTBOX-SENDMAIL 1" line, and errMalformed after it.
func readRequest(br *bufio.Reader) (*request, error) {
	var line []byte
	for {
		c, err := br.ReadByte()
		if err != nil {
			return nil, errNoRequest
		}
		if c == '\n' {
			break
		}
		if len(line) == len(protoLine) {
			return nil, errNoRequest
		}
		line = append(line, c)
	}
	if string(line) != protoLine {
		return nil, errNoRequest
	}
	req := &request{env: map[string]string{}}
	total, items := len(protoLine)+1, 0
	for {
		letter, err := br.ReadByte()
		if err != nil {
			return nil, errMalformed
		}
		total++
		if letter == '.' {
			if c, err := br.ReadByte(); err != nil || c != '\n' {
				return nil, errMalformed
			}
			break
		}
		if letter != 'A' && letter != 'E' || items == maxItems {
			return nil, errMalformed
		}
		n, digits, err := readLen(br, ':', maxItemSize)
		if err != nil {
			return nil, errMalformed
		}
		total += digits + 1 + n + 1
		if total+2 > maxRequest { // and the final ".\n"
			return nil, errMalformed
		}
		item := make([]byte, n+1)
		if _, err := io.ReadFull(br, item); err != nil || item[n] != '\n' {
			return nil, errMalformed
		}
		items++
		v := string(item[:n])
		if letter == 'A' {
			req.argv = append(req.argv, v)
			continue
		}
		// Only the variables the shim reads; the first of a name counts,
		// as for the whole shim's environment.
		k, val, ok := strings.Cut(v, "=")
		if _, dup := req.env[k]; ok && !dup && (k == "NAME" || k == "LOGNAME" || k == "USER") {
			req.env[k] = val
		}
	}
	if len(req.argv) == 0 {
		return nil, errMalformed
	}
	return req, nil
}

// readLen reads a decimal length of at most max, ended by term; digits is
// how many digits it had.
func readLen(br *bufio.Reader, term byte, max int) (n, digits int, err error) {
	for {
		c, err := br.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		if c == term && digits > 0 {
			return n, digits, nil
		}
		if c < '0' || c > '9' || digits == 8 {
			return 0, 0, errMalformed
		}
		n = n*10 + int(c-'0')
		digits++
		if n > max {
			return 0, 0, errMalformed
		}
	}
}

// timedReader bounds each read of conn by d (0: no bound), or every read
// by the one deadline until while it is set.
type timedReader struct {
	conn  net.Conn
	d     time.Duration
	until time.Time
}

func (r *timedReader) Read(p []byte) (int, error) {
	switch {
	case !r.until.IsZero():
		r.conn.SetReadDeadline(r.until)
	case r.d > 0:
		r.conn.SetReadDeadline(time.Now().Add(r.d))
	}
	return r.conn.Read(p)
}

// errCut is an input that ended before its end mark: the client went away
// (killed, or its connection lost) and the message may be truncated.
var errCut = fmt.Errorf("the input ended before the client's end mark: %w", io.ErrUnexpectedEOF)

// chunkReader decodes the input after GO: chunks "<len>\n<len bytes>", up
// to "0\n". Only that end mark ends it with io.EOF; an end of the
// connection or a malformed chunk before it is an error, so that a message
// cut short is never taken for a whole one.
type chunkReader struct {
	br   *bufio.Reader
	left int  // bytes of the current chunk not yet read
	end  bool // the end mark was read
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	switch {
	case c.err != nil:
		return 0, c.err
	case c.end:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	}
	if c.left == 0 {
		n, _, err := readLen(c.br, '\n', maxChunk)
		if err != nil {
			c.err = inputError(err)
			return 0, c.err
		}
		if n == 0 {
			c.end = true
			return 0, io.EOF
		}
		c.left = n
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= n
	if err != nil {
		c.err = inputError(err)
		return n, c.err
	}
	return n, nil
}

func inputError(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return errCut
	case err == errMalformed:
		return errors.New("malformed input chunk")
	}
	return fmt.Errorf("reading the input: %w", err)
}

// finish reads the input up to its end mark. Without -i the message ends
// at a lone "." line, after which the client sends at most what it had
// read with it, then the end mark; a client gone before that may have
// been cut inside the "." line itself, which the dot reader cannot tell
// from a whole one.
//
// The client sends no more than what it read with the "." line (a read of
// its input, 64 KiB); more than a chunk's worth is not a client of ours,
// and is refused rather than read for as long as it lasts.
func (c *chunkReader) finish() error {
	if _, err := io.Copy(io.Discard, io.LimitReader(c, maxChunk)); err != nil {
		return err
	}
	if !c.end {
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			return errors.New("more input after the \".\" line than the client sends")
		}
	}
	return nil
}

// sessionStore stores a message through a submission session of the
// daemon, with the same commands, parameters and error messages as the
// submission over the socket (transactPipelined). end is called once the
// message has been read whole, before the session sees its end: its error
// stores nothing.
func (s *shim) sessionStore(newSession func() (smtp.Session, error), end func() error) func(*envelope, *content) error {
	return func(env *envelope, msg *content) error {
		for _, l := range append([]string{env.from}, env.rcpts...) {
			if strings.ContainsAny(l, "\r\n") {
				return fail(ExitDataErr, "line break in an address; nothing was sent")
			}
		}
		sess, err := newSession()
		if err != nil {
			return daemonFailure(sessionReply(err, 421, smtp.EnhancedCode{4, 4, 0}))
		}
		defer sess.Logout()
		body := smtp.Body8BitMIME
		if env.body != "" {
			body = smtp.BodyType(strings.ToUpper(env.body))
		}
		mo := &smtp.MailOptions{Body: body, UTF8: env.needsUTF8(), Return: smtp.DSNReturn(strings.ToUpper(env.ret)), EnvelopeID: env.envID}
		// go-smtp answers an error of Mail and Rcpt that is not a reply
		// with 451 4.0.0 and its text (Conn.writeError).
		if err := sess.Mail(env.from, mo); err != nil {
			return stageError("MAIL", env.from, sessionReply(err, 451, smtp.EnhancedCode{4, 0, 0}))
		}
		ro := &smtp.RcptOptions{}
		if env.notify != "" {
			for _, n := range strings.Split(strings.ToUpper(env.notify), ",") {
				ro.Notify = append(ro.Notify, smtp.DSNNotify(n))
			}
		}
		for _, r := range env.rcpts {
			if err := sess.Rcpt(r, ro); err != nil {
				return stageError("RCPT", r, sessionReply(err, 451, smtp.EnhancedCode{4, 0, 0}))
			}
		}
		r := &inputWatch{r: msg.reader(s.maxMessageSize()), end: end}
		err = sess.Data(r)
		switch {
		case errors.Is(r.err, errTooBig):
			return fail(ExitUnavailable, "message too big: more than %d bytes (limits.max_message_size); nothing was sent", s.maxMessageSize())
		case r.err != nil:
			return fail(ExitTempFail, "cannot read the message: %v; nothing was sent", r.err)
		case err == nil:
			return nil
		}
		// go-smtp answers an error of Data that is not a reply with 554
		// 5.0.0 and this text (dataErrorToStatus); a 250 is the stored
		// message's reply with its queue ID.
		if _, ok := err.(*smtp.SMTPError); !ok {
			err = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 0, 0}, Message: "Error: transaction failed: " + err.Error()}
		}
		re := sessionReply(err, 554, smtp.EnhancedCode{5, 0, 0})
		if re.Code/100 == 2 {
			return nil
		}
		return stageError("DATA", "", re)
	}
}

// inputWatch is the message as the session reads it: it keeps the first
// error of the input, and passes the end of the message on only once end
// has found the client's end mark.
type inputWatch struct {
	r   io.Reader
	end func() error
	err error
}

func (w *inputWatch) Read(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.r.Read(p)
	if err == io.EOF {
		if e := w.end(); e != nil {
			err = e
		}
	}
	if err != nil && err != io.EOF {
		w.err = err
	}
	return n, err
}

// sessionReply is the reply a client of the session's SMTP server would
// read for err: its *smtp.SMTPError (found by type, as go-smtp does), else
// code and enh with err's text; an enhanced code left unset is the one
// go-smtp writes (X.0.0).
func sessionReply(err error, code int, enh smtp.EnhancedCode) *smtp.SMTPError {
	se, ok := err.(*smtp.SMTPError)
	if !ok {
		se = &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: err.Error()}
	}
	e := se.EnhancedCode
	if e == smtp.EnhancedCodeNotSet {
		switch se.Code / 100 {
		case 2, 4, 5:
			e = smtp.EnhancedCode{se.Code / 100, 0, 0}
		default:
			e = smtp.NoEnhancedCode
		}
	}
	return &smtp.SMTPError{Code: se.Code, EnhancedCode: e, Message: se.Message}
}
