package relay

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
)

// Policy decides which addresses are acceptable and how local names
// resolve. The SMTP listener and the maildrop importer both use it, so a
// message is judged the same way whichever door it came through; where
// a recipient goes is config.ResolveRecipient's decision, which the
// sendmail shim shares.
type Policy struct {
	hostname string
	cfg      *config.Config
}

// NewPolicy builds the address policy from the configuration.
func NewPolicy(cfg *config.Config) *Policy {
	return &Policy{hostname: cfg.Hostname, cfg: cfg}
}

func smtpErr(code int, enh smtp.EnhancedCode, format string, args ...any) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: fmt.Sprintf(format, args...)}
}

// Sender checks an envelope sender. "" is the null sender. A local
// submitter's unqualified name gets our hostname.
func (p *Policy) Sender(from string, local bool) (string, error) {
	if from == "" {
		return "", nil
	}
	if !strings.Contains(from, "@") {
		if local && config.ValidLocalName(from) {
			return from + "@" + p.hostname, nil
		}
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address <%s>: it needs a domain", from)
	}
	if !config.ValidAddress(from) {
		return "", smtpErr(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax <%s>", from)
	}
	return from, nil
}

// Recipient checks one recipient and resolves local names ("root",
// "root@this-host") through the aliases, else local_catchall. A local
// name that goes nowhere is refused: mail to root must never vanish.
func (p *Policy) Recipient(to string) ([]string, error) {
	r, err := p.cfg.ResolveRecipient(to)
	switch {
	case errors.Is(err, config.ErrBadRecipient):
		return nil, smtpErr(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax <%s>", to)
	case errors.Is(err, config.ErrUnknownLocal):
		return nil, smtpErr(550, smtp.EnhancedCode{5, 1, 1},
			"<%s>: local name with no entry in the aliases block of relay.hcl; add %s = \"someone@example.com\" there, or set local_catchall, so this mail has somewhere to go", to, r.Local)
	case err != nil:
		return nil, err
	}
	return r.Addrs, nil
}

// Header rewrites the header section of a new message. For local
// submitters it qualifies bare names ("To: root") with our hostname and
// adds a missing Date and Message-ID, as Postfix does for local mail.
func (p *Policy) Header(hdr []byte, id string, now time.Time, local bool) []byte {
	if !local {
		return hdr
	}
	if len(hdr) > 0 && !startsWithField(hdr) {
		// No header section at all ("echo hi | sendmail root"): what was
		// read is body text, so give it an empty header section first.
		hdr = append([]byte("\r\n"), hdr...)
	}
	hdr, _ = mailhdr.Qualify(hdr, p.hostname)
	if !mailhdr.Has(hdr, "Message-ID") {
		hdr = mailhdr.Prepend(hdr, "Message-ID: "+messageID(id, p.hostname)+"\r\n")
	}
	if !mailhdr.Has(hdr, "Date") {
		hdr = mailhdr.Prepend(hdr, "Date: "+now.Format(time.RFC1123Z)+"\r\n")
	}
	return hdr
}

// startsWithField reports whether b begins with a header field name and
// its colon (RFC 5322: printable ASCII except the colon), or is the blank
// line of an empty header section.
func startsWithField(b []byte) bool {
	if b[0] == '\r' || b[0] == '\n' {
		return true
	}
	for i, c := range b {
		switch {
		case c == ':':
			return i > 0
		case c < 33 || c > 126:
			return false
		}
	}
	return false
}
