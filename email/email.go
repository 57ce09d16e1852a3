// Package email composes correct Internet mail — plain text, HTML with
// inline images, attachments, non-ASCII subjects, names and file names —
// and hands it to the local Outbox daemon or to any SMTP server.
//
// A Message says what to send; Validate reports every problem with it at
// once; WriteTo builds it with go-message in the structure mail clients
// expect: a plain text message stays a single part, text and HTML become
// multipart/alternative, inline images and the HTML that shows them
// multipart/related, and attachments wrap all of it in multipart/mixed.
// Non-ASCII subjects and display names are RFC 2047 encoded words,
// non-ASCII file names RFC 2231 parameters, text is quoted-printable and
// binary content base64, so every line stays within RFC 5322's limits
// whatever the content. Bcc recipients are in the envelope only.
//
// A Sender delivers a Message: Outbox submits to the daemon over its unix
// socket as the sendmail shim does, SMTP submits to any SMTP server
// through Outbox's upstream client. Their errors say whether trying again
// later can help (see IsTemporary).
package email

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
)

// Message is one mail to compose. Addresses are RFC 5322 mailboxes, with
// or without a display name ("张三 <zhang@example.com>",
// "ops@example.com"); display names may be any UTF-8 text.
type Message struct {
	From    string
	To      []string
	Cc      []string
	Bcc     []string // envelope recipients only: never written in the header
	ReplyTo []string
	Subject string

	// Text and HTML are the bodies; with both set, mail clients show one
	// of them (multipart/alternative). Line ends of either become CRLF.
	Text string
	HTML string

	Attachments []Attachment

	// Headers are extra header fields, such as "In-Reply-To" or
	// "List-Unsubscribe"; an empty value is left out. Date and
	// Message-ID given here replace the ones
	// WriteTo generates; the fields WriteTo writes from the other fields
	// (From, To, Subject, Content-Type…) cannot be set here.
	Headers map[string]string

	// Metadata are tags for the relay, not for the recipient: each becomes
	// an "X-Outbox-Tag-Key: value" header field, which the daemon reads
	// to label its logs and metrics.
	Metadata map[string]string
}

// Attachment is a file carried by a Message.
type Attachment struct {
	// Filename is the name the recipient sees; any UTF-8 text without a
	// path separator.
	Filename string
	// ContentType is a media type such as "application/pdf"; empty means
	// a guess from the file name's extension, else
	// application/octet-stream.
	ContentType string
	// Content is the file's bytes: a []byte, a string or an io.Reader
	// (read once, by WriteTo).
	Content any
	// Inline marks an image shown inside the HTML body, which refers to
	// it as "cid:" followed by ContentID.
	Inline    bool
	ContentID string
}

// Problem is one thing wrong with a Message.
type Problem struct {
	Field string // "To", "Attachments[1].Filename", "Headers[X-Foo]"…
	Msg   string
}

func (p Problem) String() string { return p.Field + ": " + p.Msg }

// ValidationError lists every problem Validate found.
type ValidationError struct {
	Problems []Problem
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "invalid message: " + strings.Join(parts, "; ")
}

// Limits that keep every header line within RFC 5322's 998 bytes once
// encoded: a file name of 255 bytes is at most 765 bytes of RFC 2231
// percent-encoding, and a header value is folded at its spaces.
const (
	maxFilename   = 255
	maxHeaderWord = 900
	maxTagValue   = 200
)

// reserved are the header fields WriteTo writes itself.
var reserved = map[string]bool{
	"From": true, "To": true, "Cc": true, "Bcc": true, "Reply-To": true, "Subject": true,
	"Mime-Version": true, "Content-Type": true, "Content-Transfer-Encoding": true,
	"Content-Disposition": true, "Content-Id": true,
}

var (
	fieldName = regexp.MustCompile(`^[!-9;-~]+$`) // printable ASCII but colon (RFC 5322 ftext)
	cidRef    = regexp.MustCompile(`(?i)cid:([^"'\s)>]+)`)
)

// Validate reports every problem with m at once as a *ValidationError, or
// nil when WriteTo can build it. It reads no attachment content.
func (m *Message) Validate() error {
	var v validator
	v.addrs("From", []string{m.From}, true)
	v.addrs("To", m.To, false)
	v.addrs("Cc", m.Cc, false)
	v.addrs("Bcc", m.Bcc, false)
	v.addrs("Reply-To", m.ReplyTo, false)
	if len(m.To)+len(m.Cc)+len(m.Bcc) == 0 {
		v.add("To", "no recipient: give at least one To, Cc or Bcc address")
	}
	v.text("Subject", m.Subject)
	if !utf8.ValidString(m.Text) {
		v.add("Text", "not valid UTF-8")
	}
	if !utf8.ValidString(m.HTML) {
		v.add("HTML", "not valid UTF-8")
	}
	refs := map[string]bool{}
	for _, r := range cidRef.FindAllStringSubmatch(m.HTML, -1) {
		refs[r[1]] = true
	}
	cids := map[string]bool{}
	for i, a := range m.Attachments {
		f := fmt.Sprintf("Attachments[%d]", i)
		switch {
		case a.Filename == "" && !a.Inline:
			v.add(f+".Filename", "empty")
		case strings.ContainsAny(a.Filename, "/\\"):
			v.add(f+".Filename", "contains a path separator")
		case len(a.Filename) > maxFilename:
			v.add(f+".Filename", fmt.Sprintf("longer than %d bytes", maxFilename))
		default:
			v.text(f+".Filename", a.Filename)
		}
		if a.ContentType != "" {
			if t, _, err := mime.ParseMediaType(a.ContentType); err != nil {
				v.add(f+".ContentType", fmt.Sprintf("%q is not a media type", a.ContentType))
			} else if strings.HasPrefix(t, "multipart/") {
				v.add(f+".ContentType", "a multipart type cannot be an attachment's")
			}
		}
		switch a.Content.(type) {
		case []byte, string, io.Reader:
		case nil:
			v.add(f+".Content", "missing")
		default:
			v.add(f+".Content", fmt.Sprintf("a %T: give a []byte, a string or an io.Reader", a.Content))
		}
		if a.ContentID != "" {
			v.text(f+".ContentID", a.ContentID)
			if strings.ContainsAny(a.ContentID, "<> \t\"") || !mailhdr.IsASCII(a.ContentID) {
				v.add(f+".ContentID", "may not contain <, >, spaces, quotes or non-ASCII characters")
			}
			if cids[a.ContentID] {
				v.add(f+".ContentID", fmt.Sprintf("%q is used twice", a.ContentID))
			}
			cids[a.ContentID] = true
		}
		if a.Inline {
			switch {
			case a.ContentID == "":
				v.add(f+".ContentID", "an inline attachment needs a Content-ID for the HTML to refer to")
			case m.HTML == "":
				v.add(f+".Inline", "an inline attachment needs an HTML body that shows it")
			case !refs[a.ContentID]:
				v.add(f+".ContentID", fmt.Sprintf("the HTML body does not refer to cid:%s", a.ContentID))
			}
		}
	}
	seen := map[string]bool{} // header field names, as written
	for _, k := range sortedKeys(m.Headers) {
		f := "Headers[" + k + "]"
		switch {
		case seen[textprotoKey(k)]:
			v.add(f, "given twice, in different cases")
		case !fieldName.MatchString(k):
			v.add(f, "not a header field name (printable ASCII without colon or space)")
		case reserved[textprotoKey(k)]:
			v.add(f, "set by the Message's own fields")
		case strings.HasPrefix(textprotoKey(k), "X-Outbox-Tag-"):
			v.add(f, "set through Metadata")
		default:
			v.text(f, m.Headers[k])
		}
		seen[textprotoKey(k)] = true
	}
	for _, k := range sortedKeys(m.Metadata) {
		f := "Metadata[" + k + "]"
		if seen[textprotoKey(TagPrefix+k)] {
			v.add(f, "given twice, in different cases")
		}
		seen[textprotoKey(TagPrefix+k)] = true
		if !config.ValidTagName(k) {
			v.add(f, "a tag name is a letter or digit, then letters, digits, - and _, at most 64")
		}
		val := m.Metadata[k]
		if len(val) > maxTagValue {
			v.add(f, fmt.Sprintf("a tag value is at most %d bytes", maxTagValue))
		}
		v.text(f, val)
	}
	if len(v.problems) == 0 {
		return nil
	}
	return &ValidationError{Problems: v.problems}
}

type validator struct{ problems []Problem }

func (v *validator) add(field, msg string) {
	v.problems = append(v.problems, Problem{Field: field, Msg: msg})
}

// text checks a value that goes into a header: a CR or LF would end the
// field and start one the caller did not mean (header injection).
func (v *validator) text(field, s string) {
	switch {
	case strings.ContainsAny(s, "\r\n"):
		v.add(field, "contains a line break (CR or LF)")
	case strings.ContainsRune(s, 0):
		v.add(field, "contains a NUL byte")
	case !utf8.ValidString(s):
		v.add(field, "not valid UTF-8")
	case mailhdr.IsASCII(s):
		// Non-ASCII text becomes encoded words of at most 75 bytes;
		// ASCII text is written as it is, folded only at spaces.
		for _, w := range strings.Fields(s) {
			if len(w) > maxHeaderWord {
				v.add(field, fmt.Sprintf("has a word longer than %d bytes, which no header line can hold", maxHeaderWord))
				return
			}
		}
	}
}

func (v *validator) addrs(field string, list []string, required bool) {
	if required && len(list) == 1 && list[0] == "" {
		v.add(field, "empty")
		return
	}
	for i, s := range list {
		f := field
		if len(list) > 1 || field != "From" {
			f = fmt.Sprintf("%s[%d]", field, i)
		}
		if strings.ContainsAny(s, "\r\n") {
			v.add(f, "contains a line break (CR or LF)")
			continue
		}
		a, err := parseAddress(s)
		if err != nil {
			v.add(f, fmt.Sprintf("%q is not a mail address: %v", s, err))
			continue
		}
		v.text(f, a.Name)

	}
}

// parseAddress parses one mailbox; its display name may be raw UTF-8 or
// encoded words.
func parseAddress(s string) (*mail.Address, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("line break in address")
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, strippedErr(err)
	}
	if len(a.Address) > 254 {
		return nil, fmt.Errorf("longer than 254 bytes")
	}
	return a, nil
}

func strippedErr(err error) error {
	return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "mail: "))
}

// Recipients returns the envelope recipients: the addresses of To, Cc and
// Bcc, each once.
func (m *Message) Recipients() ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, list := range [][]string{m.To, m.Cc, m.Bcc} {
		for _, s := range list {
			a, err := parseAddress(s)
			if err != nil {
				return nil, err
			}
			k := strings.ToLower(a.Address)
			if !seen[k] {
				seen[k] = true
				out = append(out, a.Address)
			}
		}
	}
	return out, nil
}

// envelopeFrom returns the envelope sender: the address of From.
func (m *Message) envelopeFrom() (string, error) {
	a, err := parseAddress(m.From)
	if err != nil {
		return "", err
	}
	return a.Address, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
