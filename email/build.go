package email

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/textproto"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
	gotextproto "github.com/emersion/go-message/textproto"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
)

// TagPrefix starts the name of the header field that carries each
// Metadata entry ("X-Outbox-Tag-Campaign: spring").
const TagPrefix = config.TagHeader

// now is the clock of the Date field; tests replace it.
var now = time.Now

// part is one entity of the MIME tree: a leaf with a body, or a multipart
// with children.
type part struct {
	header   message.Header
	body     func(io.Writer) error
	children []*part
}

// Bytes returns the message as WriteTo writes it.
func (m *Message) Bytes() ([]byte, error) {
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteTo validates m and writes it to w as an RFC 5322 message with CRLF
// line ends. An invalid message writes nothing and returns a
// *ValidationError.
func (m *Message) WriteTo(w io.Writer) (int64, error) {
	if err := m.Validate(); err != nil {
		return 0, err
	}
	h, err := m.header()
	if err != nil {
		return 0, err
	}
	root := m.tree()
	if t, params, _ := root.header.ContentType(); strings.HasPrefix(t, "multipart/") {
		// A boundary chosen here keeps Content-Type with the other MIME
		// fields: go-message would otherwise add it first.
		params["boundary"] = gotextproto.NewMultipartWriter(io.Discard).Boundary()
		root.header.SetContentType(t, params)
	}
	h.Set("MIME-Version", "1.0")
	order := []string{"Date", "From", "Reply-To", "To", "Cc", "Subject", "Message-Id"}
	for _, k := range sortedKeys(m.Headers) {
		if k = textprotoKey(k); k != "Date" && k != "Message-Id" {
			order = append(order, k)
		}
	}
	for _, k := range sortedKeys(m.Metadata) {
		order = append(order, textprotoKey(TagPrefix+k))
	}
	order = append(order, "MIME-Version")
	for _, f := range []string{"Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Content-Id"} {
		if v := root.header.Get(f); v != "" {
			h.Set(f, v)
			order = append(order, f)
		}
	}
	// go-message writes a header's fields last added first.
	var out message.Header
	for i := len(order) - 1; i >= 0; i-- {
		if v := h.Get(order[i]); v != "" {
			out.Add(order[i], v)
		}
	}
	cw := &countWriter{w: w}
	mw, err := message.CreateWriter(cw, out)
	if err != nil {
		return cw.n, err
	}
	if err := writePart(mw, root); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// header returns the top-level fields other than the MIME ones.
func (m *Message) header() (gomail.Header, error) {
	var h gomail.Header
	from, _ := parseAddress(m.From)
	h.SetAddressList("From", []*gomail.Address{(*gomail.Address)(from)})
	set := func(k string, list []string) {
		var addrs []*gomail.Address
		for _, s := range list {
			a, _ := parseAddress(s)
			addrs = append(addrs, (*gomail.Address)(a))
		}
		h.SetAddressList(k, addrs)
	}
	set("To", m.To)
	set("Cc", m.Cc)
	set("Reply-To", m.ReplyTo)
	if m.Subject != "" {
		h.Set("Subject", encodeText(m.Subject))
	}
	for _, k := range sortedKeys(m.Headers) {
		h.Set(textprotoKey(k), encodeText(m.Headers[k]))
	}
	for _, k := range sortedKeys(m.Metadata) {
		h.Set(TagPrefix+k, encodeText(m.Metadata[k]))
	}
	if !h.Has("Date") {
		h.SetDate(now())
	}
	if !h.Has("Message-Id") {
		domain := from.Address[strings.LastIndexByte(from.Address, '@')+1:]
		if !mailhdr.IsASCII(domain) {
			domain = "localhost"
		}
		if err := h.GenerateMessageIDWithHostname(domain); err != nil {
			return h, err
		}
	}
	return h, nil
}

// tree lays out the MIME structure, using a multipart only where there is
// more than one thing to hold.
func (m *Message) tree() *part {
	var inline, attached []*Attachment
	for i := range m.Attachments {
		if a := &m.Attachments[i]; a.Inline {
			inline = append(inline, a)
		} else {
			attached = append(attached, a)
		}
	}
	var html *part
	if m.HTML != "" {
		html = textPart("text/html", m.HTML)
		if len(inline) > 0 {
			rel := multipart("multipart/related", map[string]string{"type": "text/html"}, html)
			for _, a := range inline {
				rel.children = append(rel.children, attachmentPart(a))
			}
			html = rel
		}
	}
	var body *part
	switch {
	case html == nil:
		if m.Text != "" || len(attached) == 0 {
			body = textPart("text/plain", m.Text)
		}
	case m.Text == "":
		body = html
	default:
		body = multipart("multipart/alternative", nil, textPart("text/plain", m.Text), html)
	}
	if len(attached) == 0 {
		return body
	}
	mixed := multipart("multipart/mixed", nil)
	if body != nil {
		mixed.children = append(mixed.children, body)
	}
	for _, a := range attached {
		mixed.children = append(mixed.children, attachmentPart(a))
	}
	if len(mixed.children) == 1 {
		return mixed.children[0]
	}
	return mixed
}

func multipart(typ string, params map[string]string, children ...*part) *part {
	p := &part{children: children}
	if params == nil {
		params = map[string]string{}
	}
	p.header.SetContentType(typ, params)
	return p
}

// textPart is UTF-8 text in quoted-printable: readable where it is ASCII,
// safe for any transport, and with no line longer than 76 characters.
func textPart(typ, s string) *part {
	p := &part{}
	p.header.SetContentType(typ, map[string]string{"charset": "utf-8"})
	p.header.Set("Content-Transfer-Encoding", "quoted-printable")
	p.body = func(w io.Writer) error {
		_, err := io.WriteString(w, normalizeNewlines(s))
		return err
	}
	return p
}

// normalizeNewlines turns CRLF and lone CR into LF, which the
// quoted-printable encoder writes as CRLF.
func normalizeNewlines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

func attachmentPart(a *Attachment) *part {
	p := &part{}
	typ := a.ContentType
	params := map[string]string{}
	if typ == "" {
		typ = mime.TypeByExtension(path.Ext(a.Filename))
	}
	if typ == "" {
		typ = "application/octet-stream"
	}
	if t, ps, err := mime.ParseMediaType(typ); err == nil {
		typ, params = t, ps
	}
	disp := "attachment"
	if a.Inline {
		disp = "inline"
	}
	if a.Filename != "" {
		// The name parameter of Content-Type is obsolete, but some
		// clients still show it in preference to the filename; go-message
		// writes it as encoded words, which is how those clients read it.
		params["name"] = a.Filename
	}
	p.header.SetContentType(typ, params)
	p.header.Set("Content-Disposition", disposition(disp, a.Filename))
	p.header.Set("Content-Transfer-Encoding", "base64")
	if a.ContentID != "" {
		p.header.Set("Content-Id", "<"+a.ContentID+">")
	}
	p.body = func(w io.Writer) error {
		var err error
		switch c := a.Content.(type) {
		case []byte:
			_, err = w.Write(c)
		case string:
			_, err = io.WriteString(w, c)
		case io.Reader:
			_, err = io.Copy(w, c)
		default:
			err = fmt.Errorf("attachment %q: content is a %T", a.Filename, a.Content)
		}
		if err != nil {
			return fmt.Errorf("attachment %q: %w", a.Filename, err)
		}
		return nil
	}
	return p
}

// rfc2231Chunk bounds each piece of a long file name: with
// " filename*12*=" in front and ";" after it, a line stays under 78
// characters.
const rfc2231Chunk = 50

// disposition formats Content-Disposition with the file name as RFC 2231
// says: a plain (quoted) value when it is short ASCII, else the extended
// form (charset utf-8, other bytes as %XX), cut into numbered continuations.
func disposition(disp, filename string) string {
	if filename == "" {
		return disp
	}
	if mailhdr.IsASCII(filename) && len(filename) <= rfc2231Chunk {
		if v := mime.FormatMediaType(disp, map[string]string{"filename": filename}); v != "" {
			return v
		}
	}
	var enc []string // one element per character of the extended value
	for i := 0; i < len(filename); i++ {
		c := filename[i]
		if isAttrChar(c) {
			enc = append(enc, string(c))
		} else {
			enc = append(enc, fmt.Sprintf("%%%02X", c))
		}
	}
	var chunks []string
	var cur strings.Builder
	for _, e := range enc {
		if cur.Len()+len(e) > rfc2231Chunk {
			chunks = append(chunks, cur.String())
			cur.Reset()
		}
		cur.WriteString(e)
	}
	chunks = append(chunks, cur.String())
	if len(chunks) == 1 {
		return disp + "; filename*=utf-8''" + chunks[0]
	}
	var b strings.Builder
	b.WriteString(disp)
	for i, c := range chunks {
		if i == 0 {
			c = "utf-8''" + c
		}
		fmt.Fprintf(&b, "; filename*%d*=%s", i, c)
	}
	return b.String()
}

// isAttrChar reports whether c may stand for itself in an RFC 2231
// extended value (RFC 2231 attribute-char).
func isAttrChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}

// maxWord bounds the RFC 2047 encoded words of unstructured fields.
// mime.QEncoding writes words of up to 75 characters, the most RFC 2047
// allows, which with "Subject: " in front make a first line of 84 that
// go-message cannot fold; words of 60 keep every line under RFC 5322's
// recommended 78.
const maxWord = 60

// encodeText returns s as it may stand in an unstructured header field
// (Subject, extra fields, tags): as it is when ASCII, else as Q encoded
// words of at most maxWord characters, cut between characters and
// separated by spaces, which decoders drop between encoded words.
func encodeText(s string) string {
	if mailhdr.IsASCII(s) {
		return s
	}
	const prefix, suffix = "=?utf-8?q?", "?="
	var words []string
	var cur strings.Builder
	for _, r := range s {
		enc := qRune(r)
		if cur.Len() > 0 && len(prefix)+cur.Len()+len(enc)+len(suffix) > maxWord {
			words = append(words, prefix+cur.String()+suffix)
			cur.Reset()
		}
		cur.WriteString(enc)
	}
	words = append(words, prefix+cur.String()+suffix)
	return strings.Join(words, " ")
}

// qRune is r in RFC 2047's Q encoding, as in a "text" token: letters,
// digits and !*+-/ stand for themselves, a space is "_", any other byte
// of the UTF-8 form is =XX.
func qRune(r rune) string {
	var buf [utf8.UTFMax]byte
	var b strings.Builder
	for _, c := range buf[:utf8.EncodeRune(buf[:], r)] {
		switch {
		case c == ' ':
			b.WriteByte('_')
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("!*+-/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

func writePart(w *message.Writer, p *part) error {
	if p.body != nil {
		if err := p.body(w); err != nil {
			return err
		}
		return w.Close()
	}
	for _, c := range p.children {
		cw, err := w.CreatePart(c.header)
		if err != nil {
			return err
		}
		if err := writePart(cw, c); err != nil {
			return err
		}
	}
	return w.Close()
}

func textprotoKey(k string) string {
	return textproto.CanonicalMIMEHeaderKey(k)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
