package email

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
	"github.com/outbox-mta/outbox/sendmailshim"
	"github.com/outbox-mta/outbox/upstream"
)

// Sender delivers a Message. Send validates it first: an invalid message
// returns a *ValidationError and sends nothing. Other failures are an
// *Error, which says whether trying again later can help.
type Sender interface {
	Send(ctx context.Context, m *Message) error
}

// Error is a failure to hand a message over.
type Error struct {
	// Temporary is true when nothing was refused for good: the same
	// message may be sent again later (to Recipients only, when set).
	Temporary bool
	// Status is the sysexits.h status of the failure (75 temporary, 65
	// bad data, 67 unknown user, 69 refused…), as the sendmail command
	// exits with it.
	Status int
	// Recipients are the recipients an SMTP server did not accept, each
	// with its reply; the others were accepted. Empty when the failure
	// concerns the whole message.
	Recipients []RecipientError
	Err        error
}

func (e *Error) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	if len(e.Recipients) > 0 {
		parts := make([]string, len(e.Recipients))
		for i, r := range e.Recipients {
			parts[i] = r.String()
		}
		return kind + " failure: " + strings.Join(parts, "; ")
	}
	return kind + " failure: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// RecipientError is one recipient a server did not accept.
type RecipientError struct {
	Address   string
	Temporary bool
	Code      int    // SMTP reply code, 0 without a reply
	Enhanced  string // enhanced status code such as "5.1.1"
	Message   string
}

func (r RecipientError) String() string {
	if r.Code == 0 {
		return fmt.Sprintf("<%s>: %s", r.Address, r.Message)
	}
	return fmt.Sprintf("<%s>: %d %s %s", r.Address, r.Code, r.Enhanced, r.Message)
}

// IsTemporary reports whether err is a failure that trying again later can
// help: an *Error that says so, or an interrupted context. A
// *ValidationError never is.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// envelope validates and builds m, and returns its envelope sender,
// recipients and bytes.
func (m *Message) envelope() (from string, rcpts []string, raw []byte, err error) {
	raw, err = m.Bytes()
	if err != nil {
		return "", nil, nil, err
	}
	from, _ = m.envelopeFrom()
	rcpts, _ = m.Recipients()
	return from, rcpts, raw, nil
}

// Outbox submits to the local Outbox daemon through its unix socket, or
// into the maildrop folder while the daemon is down, exactly as the
// sendmail command does: once Send returns nil the message is stored on
// disk and Outbox relays it, retrying as long as queue.lifetime allows.
type Outbox struct {
	Config     *config.Config
	ConfigPath string // the file Config came from, for messages
}

var _ Sender = (*Outbox)(nil)

// NewOutbox reads the daemon's configuration from path; "" means
// $OUTBOX_CONFIG, else /etc/outbox/relay.hcl.
func NewOutbox(path string) (*Outbox, error) {
	path = config.Locate(path)
	// The submitter needs only the socket, the maildrop folder and the
	// limits: placeholders left in a packaged file do not stop it, as
	// they do not stop the sendmail command.
	cfg, err := config.LoadAllowingPlaceholders(path)
	if err != nil {
		return nil, err
	}
	return &Outbox{Config: cfg, ConfigPath: path}, nil
}

// Send stores m with the daemon. The context is checked before the
// submission starts; the submission itself is bounded by the socket's
// timeouts rather than cut off midway, since a message the daemon has
// stored cannot be called back.
func (o *Outbox) Send(ctx context.Context, m *Message) error {
	from, rcpts, raw, err := m.envelope()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err = sendmailshim.Submit(o.Config, o.ConfigPath, from, rcpts, bytes.NewReader(raw))
	if err == nil {
		return nil
	}
	st := sendmailshim.ExitStatus(err)
	return &Error{Temporary: st == sendmailshim.ExitTempFail, Status: st, Err: err}
}

// SMTP submits to an SMTP server with Outbox's upstream client: STARTTLS
// or implicit TLS, AUTH, and its reading of replies (5yz permanent, all
// else temporary). It sends at once and does not queue: a temporary
// failure is the caller's to retry.
type SMTP struct {
	Target upstream.Target
}

var _ Sender = (*SMTP)(nil)

// NewSMTP returns a Sender for the server cfg describes; Close it when done
// to end its pooled connections.
func NewSMTP(cfg upstream.SMTPConfig) (*SMTP, error) {
	t, err := upstream.NewSMTP(cfg)
	if err != nil {
		return nil, err
	}
	return &SMTP{Target: t}, nil
}

// Close ends the connections the sender keeps open.
func (s *SMTP) Close() error { return s.Target.Close() }

// Send delivers m. When some recipients are refused and others accepted,
// the *Error lists the refused ones only.
func (s *SMTP) Send(ctx context.Context, m *Message) error {
	from, rcpts, raw, err := m.envelope()
	if err != nil {
		return err
	}
	env := &upstream.Envelope{
		From: from,
		Size: int64(len(raw)),
		UTF8: !mailhdr.IsASCII(from) || !mailhdr.IsASCII(strings.Join(rcpts, "")),
		Body: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(raw)), nil
		},
	}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, upstream.Rcpt{Address: r})
	}
	out := s.Target.Deliver(ctx, env)
	e := &Error{Temporary: true, Status: sendmailshim.ExitTempFail}
	for i, res := range out.Results {
		if res.Class == upstream.Sent {
			continue
		}
		re := RecipientError{Address: rcpts[i], Temporary: res.Class == upstream.Deferred,
			Code: res.Code, Enhanced: res.Enhanced, Message: res.Message}
		if !re.Temporary {
			e.Temporary = false
			e.Status = sendmailshim.ExitUnavailable
		}
		e.Recipients = append(e.Recipients, re)
	}
	if len(e.Recipients) == 0 {
		return nil
	}
	e.Err = errors.New(e.Recipients[0].String())
	return e
}
