package relay

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/mailhdr"
)

// maxReturnedOriginal caps the copy of the original message a report
// carries; beyond it only the header section is returned, as a bounce of a
// large message should not be as large again.
const maxReturnedOriginal = 10 << 20

// DSNRecipient is the outcome for one recipient of the original message:
// the per-recipient fields of RFC 3464 section 2.3.
type DSNRecipient struct {
	Address        string     // Final-Recipient (2.3.2): the address delivery was tried to
	ORCPT          string     // Original-Recipient (2.3.1): the ORCPT parameter ("rfc822;addr"), may be ""
	Action         dsn.Action // Action (2.3.3)
	Status         string     // Status (2.3.4): enhanced status code, e.g. "5.1.1", "4.4.7"
	Diagnostic     string     // Diagnostic-Code (2.3.6): the upstream's reply, e.g. "550 5.1.1 <bob@example.com>: user unknown"; "" if none
	DiagnosticType string     // its type: "smtp" (the default) or "x-outbox" for local reasons such as expiry
	RemoteMTA      string     // Remote-MTA (2.3.5): host name of the upstream, "" if none
	LastAttempt    time.Time  // Last-Attempt-Date (2.3.7): zero if there was no attempt
	WillRetryUntil time.Time  // Will-Retry-Until (2.3.9): for dsn.Delayed
}

// DSN is a delivery status notification (RFC 3464) about one message,
// addressed to its envelope sender.
type DSN struct {
	ReportingMTA string    // our host name
	From         string    // From of the report, e.g. "Mail Delivery System <MAILER-DAEMON@host>"; derived from ReportingMTA if ""
	To           string    // the original envelope sender, who receives the report
	EnvID        string    // the original ENVID, "" if none
	Ret          string    // "FULL" or "HDRS"; "" means HDRS
	ArrivalDate  time.Time // when the original message arrived
	Recipients   []DSNRecipient
	Original     io.Reader // the original message, header section and body, CRLF; may be nil
	Now          time.Time // the report's date; time.Now() if zero
}

// Build returns the complete report message, header section and body, with
// CRLF line ends: a multipart/report with a human-readable explanation, a
// message/delivery-status part and the original message (RET=FULL) or its
// header section. It fails if the report would have no recipient (a null
// envelope sender must never get a bounce) or nothing to report.
func (d *DSN) Build() ([]byte, error) {
	to := oneLine(d.To)
	if to == "" || to == "<>" {
		return nil, errors.New("dsn: no recipient for the report (null sender)")
	}
	if len(d.Recipients) == 0 {
		return nil, errors.New("dsn: no recipients to report on")
	}
	host := oneLine(d.ReportingMTA)
	if host == "" {
		return nil, errors.New("dsn: no reporting MTA")
	}
	now := d.Now
	if now.IsZero() {
		now = time.Now()
	}
	from := oneLine(d.From)
	if from == "" {
		from = "Mail Delivery System <MAILER-DAEMON@" + host + ">"
	}

	original, full, err := d.original()
	if err != nil {
		return nil, err
	}

	var h message.Header
	h.SetContentType("multipart/report", map[string]string{"report-type": "delivery-status"})
	// go-message writes the fields added last first, hence the reverse order.
	h.Add("Auto-Submitted", "auto-replied")
	h.Add("Message-ID", messageID("", host))
	h.Add("Subject", d.subject())
	h.Add("To", to)
	h.Add("From", from)
	h.Add("Date", now.Format(time.RFC1123Z))

	var buf bytes.Buffer
	w, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, err
	}

	text := d.explanation(host, original != nil, full)
	var th message.Header
	th.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
	th.Set("Content-Description", "Notification")
	th.Set("Content-Transfer-Encoding", transferEncoding(text, "quoted-printable"))
	if err := writePart(w, th, text); err != nil {
		return nil, err
	}

	// The delivery-status part is plain ASCII that this file folds itself;
	// leaving Content-Transfer-Encoding out (7bit by default) keeps
	// go-message from re-wrapping its lines.
	var sh message.Header
	sh.SetContentType("message/delivery-status", nil)
	sh.Set("Content-Description", "Delivery report")
	if err := writePart(w, sh, d.status(host)); err != nil {
		return nil, err
	}

	if original != nil {
		var oh message.Header
		if full {
			oh.SetContentType("message/rfc822", nil)
			oh.Set("Content-Description", "Undelivered Message")
		} else {
			oh.SetContentType("text/rfc822-headers", nil)
			oh.Set("Content-Description", "Undelivered Message Headers")
		}
		oh.Set("Content-Transfer-Encoding", transferEncoding(original, "8bit"))
		if err := writePart(w, oh, original); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writePart(w *message.Writer, h message.Header, body []byte) error {
	pw, err := w.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(body); err != nil {
		return err
	}
	return pw.Close()
}

// transferEncoding returns "7bit" for ASCII text and otherwise the given
// encoding.
func transferEncoding(b []byte, nonASCII string) string {
	for _, c := range b {
		if c >= 0x80 || c == 0 {
			return nonASCII
		}
	}
	return "7bit"
}

// original reads what the report returns of the original message: all of
// it when RET=FULL and it fits under maxReturnedOriginal, else its header
// section. It returns nil when there is no original.
func (d *DSN) original() (b []byte, full bool, err error) {
	if d.Original == nil {
		return nil, false, nil
	}
	lr := io.LimitReader(d.Original, maxReturnedOriginal+1)
	if strings.EqualFold(d.Ret, "FULL") {
		b, err := io.ReadAll(lr)
		if err != nil {
			return nil, false, fmt.Errorf("dsn: reading the original message: %w", err)
		}
		if len(b) <= maxReturnedOriginal {
			return b, true, nil
		}
		lr = io.LimitReader(bytes.NewReader(b), maxReturnedOriginal)
	}
	b, err = headerSection(bufio.NewReader(lr))
	if err != nil {
		return nil, false, fmt.Errorf("dsn: reading the original message: %w", err)
	}
	return b, false, nil
}

// headerSection reads the header section from r, without the blank line
// that ends it and without reading the body; an unterminated last line gets
// its CRLF. The caller bounds r, so mailhdr.ReadHeader runs without a limit.
func headerSection(r *bufio.Reader) ([]byte, error) {
	b, err := mailhdr.ReadHeader(r, math.MaxInt)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return []byte{}, nil // not nil: an empty header section is still returned
	}
	// ReadHeader stops after the first blank line, so a blank last line is
	// the one that ends the section.
	last := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
	switch tail := string(b[last:]); {
	case tail == "\n" || tail == "\r\n":
		b = b[:last]
	case b[len(b)-1] != '\n':
		b = append(b, '\r', '\n')
	}
	return b, nil
}

// kind is the overall outcome a report is about, the first that applies:
// some recipients failed, some are delayed, or all went through.
func (d *DSN) kind() dsn.Action {
	has := func(action dsn.Action) bool {
		for _, r := range d.Recipients {
			if r.Action == action {
				return true
			}
		}
		return false
	}
	switch {
	case has(dsn.Failed):
		return dsn.Failed
	case has(dsn.Delayed):
		return dsn.Delayed
	}
	return dsn.Delivered
}

func (d *DSN) subject() string {
	switch d.kind() {
	case dsn.Failed:
		return "Undelivered Mail Returned to Sender"
	case dsn.Delayed:
		return "Delayed Mail (still being retried)"
	}
	return "Successful Mail Delivery Report"
}

// explanation is the human-readable first part, in the manner of Postfix.
func (d *DSN) explanation(host string, attached, full bool) []byte {
	var b strings.Builder
	attachment := "."
	if attached {
		attachment = ". It's attached below."
		if !full {
			attachment = ". Its header section is attached below."
		}
	}
	fmt.Fprintf(&b, "This is the mail system at host %s.\n\n", host)
	switch d.kind() {
	case dsn.Failed:
		b.WriteString(wrap("I'm sorry to have to inform you that your message could not be delivered to one or more recipients"+attachment, "") + "\n")
		b.WriteString(wrap("For further assistance, please send mail to postmaster. If you do so, please include this problem report.", "") + "\n")
	case dsn.Delayed:
		b.WriteString("####################################################################\n")
		b.WriteString("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n")
		b.WriteString("####################################################################\n\n")
		b.WriteString(wrap("Your message could not be delivered yet to one or more recipients. The mail system will keep trying"+retryUntil(d.Recipients)+attachment, "") + "\n")
	default:
		b.WriteString(wrap("Your message was successfully delivered to the destination(s) listed below. If the message was delivered to a mailbox you will receive no further notifications. Otherwise you may still receive notifications of mail delivery errors from other systems"+attachment, "") + "\n")
	}
	b.WriteString("                   The mail system\n")
	// Failures first, then delays, then successes: dsn.Actions' order.
	for _, action := range dsn.Actions {
		for _, r := range d.Recipients {
			if r.Action == action {
				b.WriteString("\n" + wrap(recipientLine(r), "    "))
			}
		}
	}
	// Recipients with an action RFC 3464 does not name still get a line.
	for _, r := range d.Recipients {
		if !slices.Contains(dsn.Actions, r.Action) {
			b.WriteString("\n" + wrap(recipientLine(r), "    "))
		}
	}
	return []byte(strings.ReplaceAll(b.String(), "\n", "\r\n"))
}

// retryUntil describes the latest retry deadline among the delayed
// recipients, "" if none is known.
func retryUntil(rs []DSNRecipient) string {
	var until time.Time
	for _, r := range rs {
		if r.Action == dsn.Delayed && r.WillRetryUntil.After(until) {
			until = r.WillRetryUntil
		}
	}
	if until.IsZero() {
		return ""
	}
	return " until " + until.Format(time.RFC1123Z)
}

func recipientLine(r DSNRecipient) string {
	addr := "<" + textLine(r.Address) + ">"
	diag := textLine(r.Diagnostic)
	remote := textLine(r.RemoteMTA)
	var s string
	switch {
	case remote != "" && diag != "":
		s = fmt.Sprintf("%s: host %s said: %s", addr, remote, diag)
	case diag != "":
		s = fmt.Sprintf("%s: %s", addr, diag)
	case r.Action == dsn.Delivered, r.Action == dsn.Relayed:
		s = fmt.Sprintf("%s: %s", addr, r.Action)
		if remote != "" {
			s += " to host " + remote
		}
	default:
		s = fmt.Sprintf("%s: %s, status %s", addr, textLine(string(r.Action)), textLine(r.Status))
	}
	if r.Action == dsn.Delayed && !r.WillRetryUntil.IsZero() {
		s += " (will retry until " + r.WillRetryUntil.Format(time.RFC1123Z) + ")"
	}
	return s
}

// wrap breaks s into lines of about 76 characters at spaces; lines after
// the first start with indent. The result ends with a newline.
func wrap(s, indent string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 {
			if n+1+utf8.RuneCountInString(w) > 76 {
				b.WriteString("\n" + indent)
				n = len(indent)
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(w)
		n += utf8.RuneCountInString(w)
	}
	b.WriteByte('\n')
	return b.String()
}

// status is the message/delivery-status body.
func (d *DSN) status(host string) []byte {
	var b strings.Builder
	field(&b, "Reporting-MTA", "dns; "+statusText(host))
	if d.EnvID != "" {
		field(&b, "Original-Envelope-Id", statusText(d.EnvID))
	}
	if !d.ArrivalDate.IsZero() {
		field(&b, "Arrival-Date", d.ArrivalDate.Format(time.RFC1123Z))
	}
	for _, r := range d.Recipients {
		b.WriteString("\r\n")
		if r.ORCPT != "" {
			field(&b, "Original-Recipient", originalRecipient(r.ORCPT))
		}
		field(&b, "Final-Recipient", addressField(r.Address))
		field(&b, "Action", statusText(string(r.Action)))
		field(&b, "Status", statusText(r.Status))
		if r.RemoteMTA != "" {
			field(&b, "Remote-MTA", "dns; "+statusText(r.RemoteMTA))
		}
		if r.Diagnostic != "" {
			typ := r.DiagnosticType
			if typ == "" {
				typ = "smtp"
			}
			field(&b, "Diagnostic-Code", statusText(typ)+"; "+statusText(r.Diagnostic))
		}
		if !r.LastAttempt.IsZero() {
			field(&b, "Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		if r.Action == dsn.Delayed && !r.WillRetryUntil.IsZero() {
			field(&b, "Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return []byte(b.String())
}

// field writes "name: value", folded at spaces to keep lines short.
func field(b *strings.Builder, name, value string) {
	b.WriteString(name + ":")
	n := len(name) + 1
	for _, w := range strings.Split(value, " ") {
		if w == "" {
			continue
		}
		if n+1+len(w) > 78 && n > len(name)+1 {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteByte(' ')
		b.WriteString(w)
		n += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// addressField is a Final-Recipient value: "rfc822; addr", or for an
// address that is not printable ASCII "utf-8; " and the address in the
// 7-bit utf-8-addr-xtext form of RFC 6533.
func addressField(addr string) string {
	if isPrintableASCII(addr) {
		return "rfc822; " + addr
	}
	return "utf-8; " + utf8AddrXtext(addr)
}

// originalRecipient is an Original-Recipient value: the ORCPT parameter as
// given when it is printable ASCII, else re-encoded as a utf-8 address.
func originalRecipient(orcpt string) string {
	if isPrintableASCII(orcpt) {
		return orcpt
	}
	typ, addr, ok := strings.Cut(orcpt, ";")
	typ = strings.TrimSpace(typ)
	if !ok {
		addr = orcpt
	} else if !strings.EqualFold(typ, "rfc822") && !strings.EqualFold(typ, "utf-8") {
		return statusText(orcpt)
	}
	return "utf-8;" + utf8AddrXtext(strings.TrimSpace(addr))
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			if s[i] == ' ' {
				continue
			}
			return false
		}
	}
	return true
}

// utf8AddrXtext encodes addr as RFC 6533 utf-8-addr-xtext: printable ASCII
// stays, except "\", "+" and "="; everything else becomes \x{HEX}.
func utf8AddrXtext(addr string) string {
	var b strings.Builder
	for _, r := range addr {
		if r > 0x20 && r < 0x7f && r != '\\' && r != '+' && r != '=' {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%02X}`, r)
	}
	return b.String()
}

// statusText makes s safe for a delivery-status field: line breaks and
// other controls become spaces and anything beyond ASCII is written as
// \x{HEX}, the notation RFC 6533 uses, so the part stays 7-bit.
func statusText(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			b.WriteByte(' ')
		case r < 0x7f:
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\x{%02X}`, r)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

// textLine makes s one line of text for the human-readable part.
func textLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == ' '
	}), " ")
}

// oneLine makes s fit in a header field: controls, line breaks included,
// become spaces.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

// messageID makes the value of a Message-ID field we add: the spool ID of
// the message where there is one (it leads from a copy back to the queue
// and the logs), 96 random bits, and our host name.
func messageID(spoolID, host string) string {
	var b [12]byte
	rand.Read(b[:])
	if spoolID == "" {
		return "<" + hex.EncodeToString(b[:]) + "@" + host + ">"
	}
	return "<" + spoolID + "." + hex.EncodeToString(b[:]) + "@" + host + ">"
}
