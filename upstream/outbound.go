package upstream

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/mailhdr"
	"golang.org/x/net/idna"
)

// crlfWriter passes a message on with CRLF line ends only: a bare LF or a
// bare CR becomes CRLF, every other byte goes through unchanged. It sits in
// front of the dot-stuffing writer, which recognises a line start only
// after CRLF: a bare CR followed by "." would otherwise reach the upstream
// as "\r.\r\n", a sequence that some servers read as the end of the data
// (SMTP smuggling, CVE-2023-51764 and its family), and a line "." after a
// bare CR would not be dot-stuffed. It streams: at most one pending CR is
// held between writes.
type crlfWriter struct {
	w   io.Writer
	cr  bool   // the last byte written was a CR whose LF has not come yet
	buf []byte // output scratch, reused
}

func newCRLFWriter(w io.Writer) *crlfWriter { return &crlfWriter{w: w} }

func (c *crlfWriter) Write(p []byte) (int, error) {
	out := c.buf[:0]
	for _, b := range p {
		if c.cr {
			c.cr = false
			out = append(out, '\r', '\n')
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\r':
			c.cr = true
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b)
		}
	}
	c.buf = out
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close ends a message that stopped after a CR with its LF. It does not
// close the writer below.
func (c *crlfWriter) Close() error {
	if !c.cr {
		return nil
	}
	c.cr = false
	_, err := c.w.Write([]byte{'\r', '\n'})
	return err
}

// What leaves for an upstream that does not offer 8BITMIME is 7-bit: the
// parts of the body that hold 8-bit data are re-encoded, text as
// quoted-printable and anything else as base64, as RFC 6152 §3 asks of a
// relay and as Postfix does. Parts that are already 7-bit go through byte
// for byte. An address with a non-ASCII domain and an ASCII local part
// goes to an upstream without SMTPUTF8 with its domain in A-label form
// (RFC 5890); one with a non-ASCII local part cannot, and fails with 5.6.7
// (RFC 6531 §3.2).

// asciiAddress returns addr in a form an upstream without SMTPUTF8 may
// receive, false if there is none.
func asciiAddress(addr string) (string, bool) {
	if mailhdr.IsASCII(addr) {
		return addr, true
	}
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || !mailhdr.IsASCII(addr[:i]) {
		return "", false
	}
	domain, err := idna.Lookup.ToASCII(addr[i+1:])
	if err != nil || !mailhdr.IsASCII(domain) {
		return "", false
	}
	return addr[:i+1] + domain, true
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// scanner8bit learns, from a message written to it in any pieces,
// whether its header section and its body hold 8-bit bytes.
type scanner8bit struct {
	header, body bool // 8-bit bytes seen there
	inBody       bool // the blank line that ends the header section was seen
	line         int  // bytes of the current header line so far
	cr           bool // the current header line so far is a lone CR
}

func (s *scanner8bit) Write(p []byte) (int, error) {
	n := len(p)
	for i, c := range p {
		if s.inBody {
			s.body = s.body || has8bit(p[i:])
			return n, nil
		}
		switch {
		case c == '\n':
			if s.line == 0 || (s.line == 1 && s.cr) {
				s.inBody = true
			}
			s.line, s.cr = 0, false
			continue
		case c >= 0x80:
			s.header = true
		}
		s.cr = s.line == 0 && c == '\r'
		s.line++
	}
	return n, nil
}

// to7bit writes the message from r with every part that holds 8-bit data
// re-encoded (see above). It holds one part at a time in memory.
func to7bit(w io.Writer, r io.Reader) error {
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("reading the header section: %w", err)
	}
	h = encodeHeader(h)
	nh, body, err := plan7bit(h, br, true)
	if err != nil {
		return err
	}
	if err := textproto.WriteHeader(w, nh); err != nil {
		return err
	}
	return body(w)
}

// encodeHeader returns h with raw UTF-8 (or other 8-bit text) in its
// display names and unstructured fields put into RFC 2047 encoded words,
// which a 7-bit server may receive. A field it cannot encode (a non-ASCII
// local part, 8-bit data in a MIME parameter) is left as it was.
func encodeHeader(h textproto.Header) textproto.Header {
	var out textproto.Header
	changed := false
	// Fields() walks in order; building with Add would reverse it (Add
	// puts a field first), hence the list.
	type kv struct{ k, v string }
	var fields []kv
	raw := map[int][]byte{}
	for f := h.Fields(); f.Next(); {
		k, v := f.Key(), f.Value()
		if b, err := f.Raw(); err == nil {
			raw[len(fields)] = b
		}
		if has8bit([]byte(v)) {
			if nv, ok := encodeField(k, v); ok {
				v, changed = nv, true
				delete(raw, len(fields))
			}
		}
		fields = append(fields, kv{k, v})
	}
	if !changed {
		return h
	}
	for i := len(fields) - 1; i >= 0; i-- {
		if b, ok := raw[i]; ok {
			out.AddRaw(b)
		} else {
			out.Add(fields[i].k, fields[i].v)
		}
	}
	return out
}

// encodeField encodes one header field's value for a 7-bit server.
func encodeField(k, v string) (string, bool) {
	charset := "utf-8"
	if !utf8.ValidString(v) {
		return "", false
	}
	switch strings.ToLower(k) {
	case "from", "to", "cc", "bcc", "reply-to", "sender", "resent-from", "resent-to", "resent-cc", "resent-bcc", "resent-sender":
		list, err := mail.ParseAddressList(v)
		if err != nil {
			return "", false
		}
		parts := make([]string, len(list))
		for i, a := range list {
			parts[i] = a.String() // encodes the display name
			if !mailhdr.IsASCII(parts[i]) {
				return "", false
			}
		}
		return strings.Join(parts, ", "), true
	case "subject", "comments", "keywords", "content-description":
		return mime.QEncoding.Encode(charset, v), true
	}
	if strings.HasPrefix(strings.ToLower(k), "x-") {
		return mime.QEncoding.Encode(charset, v), true
	}
	return "", false
}

// plan7bit returns the header an entity is sent with and a function that
// writes its body, re-encoded where needed. top marks the message itself,
// which gets a MIME-Version when it had none and is re-encoded.
func plan7bit(h textproto.Header, body io.Reader, top bool) (textproto.Header, func(io.Writer) error, error) {
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	identity := cte == "" || cte == "7bit" || cte == "8bit" || cte == "binary"
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil {
		mt, params = "text/plain", nil
	}
	if identity && strings.HasPrefix(mt, "multipart/") && params["boundary"] != "" {
		if cte != "" && cte != "7bit" {
			h = h.Copy()
			h.Set("Content-Transfer-Encoding", "7bit")
		}
		return h, func(w io.Writer) error {
			mr := textproto.NewMultipartReader(body, params["boundary"])
			mw := textproto.NewMultipartWriter(w)
			if err := mw.SetBoundary(params["boundary"]); err != nil {
				return err
			}
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("reading a part of %s: %w", mt, err)
				}
				ph, pbody, err := plan7bit(p.Header, p, false)
				if err != nil {
					return err
				}
				pw, err := mw.CreatePart(ph)
				if err != nil {
					return err
				}
				if err := pbody(pw); err != nil {
					return err
				}
			}
			return mw.Close()
		}, nil
	}
	if identity && (mt == "message/rfc822" || mt == "message/global") {
		// An enclosed message may not be encoded as a whole (RFC 2046
		// §5.2.1): its own parts are.
		if cte != "" && cte != "7bit" {
			h = h.Copy()
			h.Set("Content-Transfer-Encoding", "7bit")
		}
		return h, func(w io.Writer) error { return to7bit(w, body) }, nil
	}
	if !identity {
		return h, func(w io.Writer) error { _, err := io.Copy(w, body); return err }, nil
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return h, nil, err
	}
	if !has8bit(data) {
		return h, func(w io.Writer) error { _, err := w.Write(data); return err }, nil
	}
	h = h.Copy()
	if top && !h.Has("Mime-Version") {
		h.Set("MIME-Version", "1.0")
	}
	if ct == "" {
		// No declared type: plain text, in a charset the bytes tell.
		charset := "unknown-8bit" // RFC 1428
		if utf8.Valid(data) {
			charset = "utf-8"
		}
		h.Set("Content-Type", "text/plain; charset="+charset)
	}
	if strings.HasPrefix(mt, "text/") {
		h.Set("Content-Transfer-Encoding", "quoted-printable")
		return h, func(w io.Writer) error {
			qw := quotedprintable.NewWriter(w)
			if _, err := qw.Write(data); err != nil {
				return err
			}
			return qw.Close()
		}, nil
	}
	h.Set("Content-Transfer-Encoding", "base64")
	return h, func(w io.Writer) error {
		// Lines of 76 characters (RFC 2045 §6.8). No line end after the
		// last: in a multipart, the one before the boundary belongs to it.
		enc := base64.StdEncoding.EncodeToString(data)
		for len(enc) > 76 {
			if _, err := io.WriteString(w, enc[:76]+"\r\n"); err != nil {
				return err
			}
			enc = enc[76:]
		}
		_, err := io.WriteString(w, enc)
		return err
	}, nil
}

// outgoing is how one message goes to the server of one connection.
type outgoing struct {
	from     string
	rcpts    []string // per recipient, the address to send; "" if none
	sendable []int    // the recipients that have an address to send
	utf8     bool     // send with SMTPUTF8
	convert  bool     // re-encode the body to 7 bits
	size     int64    // for SIZE=; 0 when not known
	// data is the message to send, converted where needed, when prepare
	// read it and it fit in keepInMemory; nil means read it again.
	data []byte
}

// prepare decides how env goes to the server c is connected to, from the
// extensions it offers. Recipients that cannot go there get their result
// in res; false means none can, and every result is filled in.
func (s *SMTP) prepare(c *smtp.Client, env *Envelope, res []Result) (out outgoing, ok bool) {
	has8bit, _ := c.Extension("8BITMIME")
	hasUTF8, _ := c.Extension("SMTPUTF8")
	return s.plan(env, has8bit, hasUTF8, res)
}

// plan is prepare for a server that offers 8BITMIME (has8bit) and
// SMTPUTF8 (hasUTF8) or not.
func (s *SMTP) plan(env *Envelope, has8bit, hasUTF8 bool, res []Result) (out outgoing, ok bool) {
	fail := func(idx []int, msg string) {
		for _, i := range idx {
			res[i] = Result{Class: Failed, Enhanced: "5.6.7", Message: msg}
		}
	}
	all := make([]int, len(env.Recipients))
	for i := range all {
		all[i] = i
	}
	out.from, out.size = env.From, env.Size
	// A non-ASCII address needs SMTPUTF8 even where the submitter did not
	// ask for it.
	needUTF8 := env.UTF8 || !mailhdr.IsASCII(env.From)
	for _, r := range env.Recipients {
		needUTF8 = needUTF8 || !mailhdr.IsASCII(r.Address)
	}
	out.utf8 = needUTF8 && hasUTF8
	out.rcpts = make([]string, len(env.Recipients))
	if hasUTF8 {
		for i, r := range env.Recipients {
			out.rcpts[i] = r.Address
		}
		out.sendable = all
	} else {
		from, ok := asciiAddress(env.From)
		if !ok {
			fail(all, fmt.Sprintf("the sender <%s> needs SMTPUTF8, which upstream %s does not offer", env.From, s.addr))
			return out, false
		}
		out.from = from
		for i, r := range env.Recipients {
			a, ok := asciiAddress(r.Address)
			if !ok {
				fail([]int{i}, fmt.Sprintf("the address <%s> needs SMTPUTF8, which upstream %s does not offer", r.Address, s.addr))
				continue
			}
			out.rcpts[i] = a
			out.sendable = append(out.sendable, i)
		}
		if len(out.sendable) == 0 {
			return out, false
		}
	}
	if has8bit && (hasUTF8 || !env.UTF8) {
		return out, true
	}
	// Look at the content: 8-bit data goes only where 8BITMIME is
	// offered, UTF-8 header fields only where SMTPUTF8 is. Where the body
	// has to be converted, it is converted here without sending, so a
	// message that cannot be converted bounces now instead of breaking
	// the connection in mid-DATA, and to learn its new size.
	in, err := inspect(env, !has8bit)
	if err != nil {
		for _, i := range out.sendable {
			res[i] = Result{Class: Deferred, Message: err.Error()}
		}
		return out, false
	}
	if env.UTF8 && !hasUTF8 && in.scan.header {
		fail(out.sendable, fmt.Sprintf("the message has UTF-8 header fields and upstream %s does not offer SMTPUTF8", s.addr))
		return out, false
	}
	if has8bit || !(in.scan.body || in.scan.header) {
		out.data = in.raw.kept()
		return out, true
	}
	if in.convErr != nil {
		for _, i := range out.sendable {
			res[i] = Result{Class: Failed, Enhanced: "5.6.3", Message: fmt.Sprintf(
				"upstream %s does not offer 8BITMIME and the 8-bit message cannot be converted to 7 bits: %v", s.addr, in.convErr)}
		}
		return out, false
	}
	out.convert, out.size, out.data = true, in.converted.n, in.converted.kept()
	return out, true
}

// keepInMemory bounds the copy of a message that prepare keeps for the
// send (twice while it reads: as stored and as converted), so a message up
// to it is read from the spool once per attempt, and a larger one twice
// (to look at it, then to send it) without holding it all in memory.
// BenchmarkPlanSend (1 MiB of 8-bit text to an upstream without 8BITMIME,
// on a busy 2-core machine) took 48 ms (median, 39 to 76) with three reads
// and two conversions, 22 ms (15 to 42) with one of each.
const keepInMemory = 2 << 20

// inspection is what one read of a message tells prepare.
type inspection struct {
	scan      scanner8bit
	raw       keepWriter // the message as stored
	converted keepWriter // the message converted to 7 bits, when asked for
	convErr   error      // why it cannot be converted
}

// inspect reads the message of env once, learning whether it holds 8-bit
// data and, if convert is set, converting it to 7 bits on the way. The
// error is a failure to read, worth a retry.
func inspect(env *Envelope, convert bool) (*inspection, error) {
	in := &inspection{raw: keepWriter{max: keepInMemory}, converted: keepWriter{max: keepInMemory}}
	switch {
	case env.Size > keepInMemory:
		// Too large to keep: copying up to the bound would be thrown away.
		in.raw.over, in.converted.over = true, true
	case env.Size > 0:
		// The stored size is known: one allocation for the copy.
		in.raw.buf = make([]byte, 0, env.Size)
	}
	body, err := env.Body()
	if err != nil {
		return nil, fmt.Errorf("opening message body: %w", err)
	}
	defer body.Close()
	rr := &mailhdr.ReadWatch{R: body}
	// Every byte read passes the scanner and the copy once, in order,
	// whether the converter or the drain below reads it.
	tee := io.TeeReader(rr, io.MultiWriter(&in.scan, &in.raw))
	if convert {
		in.convErr = to7bit(&in.converted, tee)
	}
	// The converter may stop early: after a multipart's closing boundary,
	// or at data it cannot convert. The rest is still looked at.
	if rr.Err == nil {
		io.Copy(io.Discard, tee)
	}
	if rr.Err != nil {
		return nil, fmt.Errorf("reading message body: %w", rr.Err)
	}
	return in, nil
}

// keepWriter counts the bytes written and keeps them while they stay
// within max.
type keepWriter struct {
	n    int64
	max  int64
	buf  []byte
	over bool
}

func (k *keepWriter) Write(p []byte) (int, error) {
	k.n += int64(len(p))
	if !k.over && k.n > k.max {
		k.over, k.buf = true, nil
	}
	if !k.over {
		k.buf = append(k.buf, p...)
	}
	return len(p), nil
}

// kept returns what was written, nil if it went over max.
func (k *keepWriter) kept() []byte {
	if k.over {
		return nil
	}
	if k.buf == nil {
		return []byte{}
	}
	return k.buf
}

// open returns the message to send as prepare decided: the copy it kept,
// or the stored body read again and converted on the way. done releases
// what open took.
func (out *outgoing) open(env *Envelope) (data io.Reader, done func(), err error) {
	if out.data != nil {
		return bytes.NewReader(out.data), func() {}, nil
	}
	body, err := env.Body()
	if err != nil {
		return nil, nil, err
	}
	if !out.convert {
		return body, func() { body.Close() }, nil
	}
	pr, pw := io.Pipe()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		pw.CloseWithError(to7bit(pw, body))
	}()
	return pr, func() { pr.Close(); <-finished; body.Close() }, nil
}
