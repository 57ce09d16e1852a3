// Package upstream delivers spooled mail to the operator's provider: an SMTP
// client with STARTTLS or implicit TLS, SASL authentication, pooled
// connections and per-recipient results, plus a Maildir target for
// development. It decides, once, whether a failure is permanent or
// temporary, so the scheduler only ever sees a typed Result.
//
// The package is a leaf of the daemon: it imports neither relay, spool
// nor config; its settings come as settings.SMTP.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/dsn"
)

// Class says what a delivery attempt did for one recipient.
type Class int

const (
	// Sent means the upstream accepted responsibility for the recipient.
	Sent Class = iota
	// Deferred means a temporary problem: retry later.
	Deferred
	// Failed means a permanent (5yz) rejection for this recipient.
	Failed
)

// String returns "sent", "deferred" or "failed".
func (c Class) String() string {
	switch c {
	case Sent:
		return "sent"
	case Deferred:
		return "deferred"
	case Failed:
		return "failed"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Rcpt is one envelope recipient with its DSN parameters.
type Rcpt struct {
	Address string
	Notify  []dsn.Notify // DSN NOTIFY values as received, may be empty
	ORCPT   string       // original recipient in "rfc822;addr" form, may be empty
}

// Envelope is one message to deliver.
type Envelope struct {
	From       string // envelope sender; "" is the null sender <>
	Recipients []Rcpt
	Size       int64 // body size in bytes (for SIZE=)
	UTF8       bool  // needs SMTPUTF8
	EnvID, Ret string
	// Body opens a fresh reader over the full message (headers and body,
	// CRLF line ends) each call.
	Body func() (io.ReadCloser, error)
}

// Result is the outcome of an attempt for one recipient.
type Result struct {
	Class    Class
	Code     int    // SMTP reply code; 0 when there was no reply
	Enhanced string // enhanced status code such as "5.1.1", "" if none
	Message  string // reply text or error description; never contains a secret
}

// Outcome is the result of one Deliver call.
type Outcome struct {
	// Remote is who took the mail: the SMTP server's host name, or for a
	// Local delivery the target's own name ("maildir:/path").
	Remote string
	// Port is the SMTP server's port; 0 for a Local delivery.
	Port int
	// Local says the mail was written on this machine (into a Maildir):
	// no remote MTA took it, so a DSN names none.
	Local   bool
	Results []Result // exactly one per Envelope.Recipients, same order
}

// Target is somewhere mail can be delivered.
type Target interface {
	Name() string
	Deliver(ctx context.Context, env *Envelope) Outcome
	Close() error // closes pooled connections; Deliver after Close returns Deferred
}

// classify turns the error of one SMTP step into a Result. It is the one
// place where "permanent or temporary" is decided: a 5yz reply is
// permanent, everything else (4yz, network, TLS, timeouts, anything
// unrecognised) is temporary.
func classify(err error) Result {
	if err == nil {
		return Result{Class: Sent}
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		r := Result{Class: Deferred, Code: se.Code, Enhanced: enhanced(se.EnhancedCode), Message: se.Message}
		if se.Code >= 500 && se.Code <= 599 {
			r.Class = Failed
		}
		if r.Message == "" {
			r.Message = fmt.Sprintf("reply %d without text", se.Code)
		}
		return r
	}
	return Result{Class: Deferred, Message: err.Error()}
}

// temporary is like classify but never permanent: it is used for problems
// with the connection as a whole (greeting, EHLO, STARTTLS, AUTH), which
// are a matter of configuration or of the provider's health, not of the
// message.
func temporary(err error) Result {
	r := classify(err)
	r.Class = Deferred
	var se *smtp.SMTPError
	if !errors.As(err, &se) || err != error(se) {
		// Keep our own context ("AUTH not offered by …") in the message.
		r.Message = err.Error()
	}
	return r
}

func enhanced(c smtp.EnhancedCode) string {
	if c == smtp.NoEnhancedCode || c == smtp.EnhancedCodeNotSet {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// connGone reports whether err leaves the connection unusable: a network
// or local error (no reply), or 421, the server closing the channel.
func connGone(err error) bool {
	c := replyCode(err)
	return c == 0 || c == 421
}

// replyCode returns the SMTP reply code carried by err, or 0.
func replyCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
