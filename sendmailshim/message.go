package sendmailshim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/mail"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/mailhdr"
)

// maxHeader bounds the header section the shim keeps in memory; the body
// is streamed.
const maxHeader = 1 << 20

var errHeaderTooLarge = errors.New("the header section is longer than 1 MiB")

// dotReader passes r through up to a line holding a single "." (with LF or
// CRLF, or at the end of the input), which it takes as the end of the
// message, as sendmail does without -i.
type dotReader struct {
	r    *bufio.Reader
	bol  bool // at the beginning of a line
	done bool
}

func newDotReader(r io.Reader) *dotReader {
	return &dotReader{r: bufio.NewReaderSize(r, 64<<10), bol: true}
}

func (d *dotReader) Read(p []byte) (int, error) {
	if d.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if d.bol && d.endLine() {
		d.done = true
		return 0, io.EOF
	}
	if _, err := d.r.Peek(1); err != nil {
		return 0, err
	}
	n := d.r.Buffered()
	if n > len(p) {
		n = len(p)
	}
	chunk, _ := d.r.Peek(n)
	if i := bytes.IndexByte(chunk, '\n'); i >= 0 {
		chunk = chunk[:i+1]
		d.bol = true
	} else {
		d.bol = false
	}
	n = copy(p, chunk)
	d.r.Discard(n)
	return n, nil
}

// endLine reports whether the line starting now is the lone "." line,
// peeking no further than that line needs, so that an interactive sender
// is not kept waiting.
func (d *dotReader) endLine() bool {
	b, err := d.r.Peek(1)
	if len(b) < 1 || b[0] != '.' {
		return false
	}
	b, err = d.r.Peek(2)
	if len(b) < 2 {
		return err != nil // "." at the end of the input
	}
	switch b[1] {
	case '\n':
		return true
	case '\r':
		b, err = d.r.Peek(3)
		return len(b) < 3 && err != nil || len(b) == 3 && b[2] == '\n'
	}
	return false
}

// readHeader reads the header section from br: header fields and their
// continuation lines up to a blank line, which is consumed, or up to the
// first line that is not a header field, which is left for the body (as
// sendmail does for "echo text | sendmail user"). A leading mbox "From "
// line is dropped. The section is returned with CRLF line ends and without
// the blank line.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var hdr []byte
	first := true
	for {
		line, err := peekLine(br)
		if err != nil && err != io.EOF {
			return nil, err
		}
		if len(line) == 0 {
			return mailhdr.ToCRLF(hdr), nil
		}
		if len(hdr)+len(line) > maxHeader {
			return nil, errHeaderTooLarge
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		long := line[len(line)-1] != '\n' && err == nil
		switch {
		case long:
			// A line longer than the buffer: not a header field anyone
			// writes; it starts the body.
			return mailhdr.ToCRLF(hdr), nil
		case len(trimmed) == 0:
			br.Discard(len(line))
			return mailhdr.ToCRLF(hdr), nil
		case first && (bytes.HasPrefix(trimmed, []byte("From ")) || bytes.HasPrefix(trimmed, []byte(">From "))):
			// The mbox separator some programs put first.
		case (trimmed[0] == ' ' || trimmed[0] == '\t') && len(hdr) > 0,
			isField(trimmed):
			hdr = append(hdr, line...)
			if line[len(line)-1] != '\n' {
				hdr = append(hdr, '\n')
			}
		default:
			return mailhdr.ToCRLF(hdr), nil
		}
		br.Discard(len(line))
		first = false
	}
}

// peekLine returns the next line of br, line end included, without
// consuming it; lines longer than maxHeader are returned cut there.
func peekLine(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; n *= 2 {
		if n > br.Size() {
			n = br.Size()
		}
		b, err := br.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i+1], nil
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				return b, nil
			}
			if err == io.EOF {
				return b, io.EOF
			}
			return b, err
		}
		if n == br.Size() {
			return b, nil
		}
	}
}

// isField reports whether line starts a header field: a name of printable
// ASCII characters, then a colon.
func isField(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// headerRecipients returns the addresses that -t takes from the header:
// those of Resent-To, Resent-Cc and Resent-Bcc when any of these is
// present, else those of To, Cc and Bcc.
func headerRecipients(hdr []byte) ([]string, error) {
	names := []string{"To", "Cc", "Bcc"}
	for _, n := range []string{"Resent-To", "Resent-Cc", "Resent-Bcc"} {
		if mailhdr.Has(hdr, n) {
			names = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}
			break
		}
	}
	addrs, err := mailhdr.Addresses(hdr, names...)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range addrs {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out, nil
}

// fixup says how to complete a header section.
type fixup struct {
	sender    string // envelope sender; "" is the null sender
	fullName  string
	hostname  string
	now       time.Time
	removeBcc bool
}

// fix removes Bcc fields if asked and adds the Date, Message-ID and From
// fields the section lacks, at its end, as Postfix's cleanup does.
func (f fixup) fix(hdr []byte) []byte {
	if f.removeBcc {
		hdr = mailhdr.Remove(hdr, "Bcc")
		hdr = mailhdr.Remove(hdr, "Resent-Bcc")
	}
	if !mailhdr.Has(hdr, "Date") {
		hdr = append(hdr, "Date: "+f.now.Format(time.RFC1123Z)+"\r\n"...)
	}
	if !mailhdr.Has(hdr, "Message-ID") {
		hdr = append(hdr, "Message-ID: "+messageID(f.now, f.hostname)+"\r\n"...)
	}
	if !mailhdr.Has(hdr, "From") {
		addr := f.sender
		if addr == "" {
			addr = "MAILER-DAEMON@" + f.hostname
		}
		hdr = append(hdr, "From: "+formatFrom(f.fullName, addr)+"\r\n"...)
	}
	return hdr
}

// formatFrom writes "Full Name <addr>", quoting or encoding the name as
// RFC 5322 and RFC 2047 need; just the address without a name.
func formatFrom(name, addr string) string {
	name = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 32 || r == 127 {
			return -1
		}
		return r
	}, name))
	if name == "" {
		return addr
	}
	s := (&mail.Address{Name: name, Address: "x@x"}).String()
	return strings.TrimSuffix(s, "<x@x>") + "<" + addr + ">"
}

// messageID makes a Message-ID unique by 80 random bits. math/rand/v2's
// generator is seeded from the kernel's randomness at start; crypto/rand
// would do no better here and links the FIPS module, whose package
// initialisation every call would pay.
func messageID(now time.Time, host string) string {
	return fmt.Sprintf("<%s.%016x%04x@%s>", now.UTC().Format("20060102150405"), rand.Uint64(), rand.Uint32()&0xffff, host)
}

// errTooBig is returned by a content reader past its limit.
var errTooBig = errors.New("message too big")

// content is a prepared message: its header section, with CRLF line ends
// and without the blank line, and the body after it.
type content struct {
	header []byte
	body   io.Reader // CRLF line ends
}

// reader returns the whole message, bounded by max bytes (0: no bound).
func (c *content) reader(max int64) *mailhdr.LimitReader {
	r := io.MultiReader(bytes.NewReader(c.header), strings.NewReader("\r\n"), c.body)
	return &mailhdr.LimitReader{R: r, Max: max, Err: errTooBig}
}

// whole returns the whole message when it is at most max bytes long, and
// nil when it is longer; either way c can still be read whole with reader.
func (c *content) whole(max int) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(c.body, int64(max+1)))
	if err != nil {
		return nil, err
	}
	if len(c.header)+len("\r\n")+len(body) > max {
		c.body = io.MultiReader(bytes.NewReader(body), c.body)
		return nil, nil
	}
	c.body = bytes.NewReader(body)
	msg := make([]byte, 0, len(c.header)+2+len(body))
	msg = append(append(append(msg, c.header...), "\r\n"...), body...)
	return msg, nil
}

// readContent reads the header section from r and returns it with the rest
// of r as the body, bare LFs turned into CRLF.
func readContent(r io.Reader) (*content, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	hdr, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	return &content{header: hdr, body: mailhdr.NewCRLFReader(br)}, nil
}
