package sendmailshim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
)

// Timeouts of the conversation with the daemon. The daemon answers DATA
// only after its durable commit, which a loaded disk may take a while to
// give.
const (
	dialTimeout    = 10 * time.Second
	commandTimeout = 2 * time.Minute
	dataTimeout    = 10 * time.Minute
)

// parseAddressList reads recipients as Sendmail does on its command line:
// each argument is an address list, so "a@x, b@y" and "Name <a@x>" work.
func parseAddressList(v string) ([]string, error) {
	if strings.ContainsAny(v, "\r\n") {
		return nil, errors.New("line break in address")
	}
	return mailhdr.Addresses([]byte("To: "+v+"\r\n"), "To")
}

// envelope is the sender and recipients of one message, with its DSN
// parameters.
type envelope struct {
	from   string
	rcpts  []string
	notify string // "never" or a list of success, failure, delay
	ret    string // full | hdrs
	envID  string
	body   string // 7BIT | 8BITMIME
	utf8   bool   // SMTPUTF8 declared (by the -bs client)
}

// needsUTF8 reports whether the transaction needs SMTPUTF8: its client
// declared it, or an address is not ASCII.
func (e *envelope) needsUTF8() bool {
	return e.utf8 || !mailhdr.IsASCII(e.from) || !allASCII(e.rcpts)
}

// deliver is -bm: read the message from stdin, complete it, submit it.
func (s *shim) deliver() error {
	from, err := s.sender()
	if err != nil {
		return err
	}
	env := &envelope{from: from, notify: s.opts.Notify, ret: s.opts.Ret, envID: s.opts.EnvID, body: s.opts.BodyType}
	for _, arg := range s.opts.Recipients {
		list, err := parseAddressList(arg)
		if err != nil {
			return fail(ExitUsage, "bad recipient address %q: %v", arg, err)
		}
		env.rcpts = append(env.rcpts, list...)
	}
	if len(env.rcpts) == 0 && !s.opts.ExtractRcpt {
		return fail(ExitUsage, "no recipients given; name them as arguments or use -t to read them from the message")
	}

	var in io.Reader = s.stdin
	if !s.opts.IgnoreDots {
		in = newDotReader(in)
	}
	msg, err := readContent(in)
	if err != nil {
		if errors.Is(err, errHeaderTooLarge) {
			return fail(ExitDataErr, "%v", err)
		}
		return fail(ExitTempFail, "cannot read the message: %v; nothing was sent", err)
	}
	if s.opts.ExtractRcpt {
		list, err := headerRecipients(msg.header)
		if err != nil {
			return fail(ExitDataErr, "-t: %v", err)
		}
		env.rcpts = append(env.rcpts, list...)
		if len(env.rcpts) == 0 {
			return fail(ExitDataErr, "-t: no recipients in the To, Cc and Bcc header fields; nothing was sent")
		}
	}
	for i, r := range env.rcpts {
		if !strings.Contains(r, "@") {
			if !config.ValidLocalName(r) {
				return fail(ExitDataErr, "%q is not a valid recipient address; nothing was sent", r)
			}
			// The daemon takes local names qualified with its hostname
			// and resolves them through the aliases, as it does for
			// SMTP clients.
			env.rcpts[i] = r + "@" + s.hostname()
		} else if !config.ValidAddress(r) {
			return fail(ExitDataErr, "%q is not a valid recipient address; nothing was sent", r)
		}
	}
	env.rcpts = dedupe(env.rcpts)
	msg.header = fixup{
		sender:    from,
		fullName:  s.displayName(),
		hostname:  s.hostname(),
		now:       s.now(),
		removeBcc: true,
	}.fix(msg.header)
	return s.submit(env, msg)
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	out := list[:0]
	for _, a := range list {
		k := strings.ToLower(a)
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// submit hands the message to the daemon, or to the maildrop folder when
// the daemon cannot be reached. It returns nil only once one of them has
// the message durably.
func (s *shim) submit(env *envelope, msg *content) error {
	if s.store != nil {
		return s.store(env, msg)
	}
	if len(env.rcpts) == 1 {
		whole, err := msg.whole(bdatMax)
		if err != nil {
			return fail(ExitTempFail, "cannot read the message: %v; nothing was sent", err)
		}
		if whole != nil {
			err := s.submitWhole(env, whole)
			if !errors.Is(err, errNotAsAssumed) {
				if err != nil && fallback(err) {
					// The daemon is not there, or went away before it
					// could store the message.
					s.verbosef("daemon unavailable (%v); writing to the maildrop folder", err)
					return s.drop(env, msg, err)
				}
				return err
			}
			s.verbosef("%v; sending again, EHLO first", err)
		}
	}
	c, err := s.dialSubmit()
	if err != nil {
		if fallback(err) {
			s.verbosef("daemon unavailable (%v); writing to the maildrop folder", err)
			return s.drop(env, msg, err)
		}
		return daemonFailure(err)
	}
	defer c.Close()
	r := msg.reader(s.maxMessageSize())
	err = s.transactPipelined(c, env, r)
	if err != nil && r.N == 0 && fallback(err) {
		// The daemon went away before taking any of the message.
		s.verbosef("daemon unavailable (%v); writing to the maildrop folder", err)
		return s.drop(env, msg, err)
	}
	return err
}

// fallback reports whether err means the daemon cannot take mail now
// (not running, refusing connections, shutting down, 4yz at the greeting)
// so that the maildrop folder should.
func fallback(err error) bool {
	if re, ok := daemonReply(err); ok {
		return re.Code/100 == 4
	}
	var ee *exitError
	return !errors.As(err, &ee)
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// stageError turns a failure of one SMTP command into an exit status and
// one line. Errors that are not replies keep their type, for fallback.
func stageError(stage, addr string, err error) error {
	se, ok := daemonReply(err)
	if !ok {
		if stage == "DATA" {
			return fail(ExitTempFail, "lost the connection to the daemon during %s: %v; nothing was sent", stage, err)
		}
		return err
	}
	code := ExitUnavailable
	enh := se.EnhancedCode
	switch {
	case se.Code/100 == 4:
		code = ExitTempFail
	case stage == "RCPT" && enh[0] == 5 && enh[1] == 1 && enh[2] == 3:
		code = ExitDataErr
	case stage == "RCPT" && (enh[0] == 5 && enh[1] == 1 || se.Code == 550 || se.Code == 551 || se.Code == 553):
		code = ExitNoUser
	case stage == "MAIL" && (enh[1] == 1 || se.Code == 501 || se.Code == 553):
		code = ExitDataErr
	case se.Code == 552 || enh[1] == 3 && enh[2] == 4:
		code = ExitUnavailable
	case enh[1] == 6 || se.Code == 501:
		code = ExitDataErr
	}
	what := stage
	if addr != "" {
		what = fmt.Sprintf("%s <%s>", stage, addr)
	}
	tail := "nothing was sent"
	if code == ExitTempFail {
		tail = "nothing was sent; try again later"
	}
	return fail(code, "%s refused by the daemon: %s; %s", what, replyText(se), tail)
}

func replyText(se *smtp.SMTPError) string {
	if se.EnhancedCode[0] > 0 {
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	return fmt.Sprintf("%d %s", se.Code, se.Message)
}

func daemonFailure(err error) error {
	if se, ok := daemonReply(err); ok {
		return fail(ExitUnavailable, "the daemon refused the connection: %s; nothing was sent", replyText(se))
	}
	return fail(ExitTempFail, "cannot reach the daemon: %v; nothing was sent", err)
}

func allASCII(list []string) bool {
	for _, s := range list {
		if !mailhdr.IsASCII(s) {
			return false
		}
	}
	return true
}
