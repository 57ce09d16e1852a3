// Package mailhdr reads and rewrites the header section of a message on the
// inbound path, leaving every byte it does not need to change as it was.
//
// The header section is handled as raw bytes rather than as a parsed map so
// that folding, order, case and line ends of untouched fields survive, which
// keeps signatures (DKIM) made before submission valid.
package mailhdr

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// ErrHeaderTooLarge is returned by ReadHeader when the header section is
// longer than the limit it was given.
var ErrHeaderTooLarge = errors.New("mailhdr: header section too large")

// ReadHeader reads the header section from r, up to and including the blank
// line that ends it, or up to EOF if the message has no body. It reads at
// most max bytes (the blank line included) and returns ErrHeaderTooLarge
// beyond that. Lines may end in LF or CRLF; the returned bytes keep them as
// read. Nothing after the blank line is consumed from r, so the body can be
// streamed from r afterwards. An empty input gives an empty section and no
// error.
func ReadHeader(r *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	lineStart := 0
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max {
			return nil, ErrHeaderTooLarge
		}
		buf = append(buf, chunk...)
		switch err {
		case nil:
			line := buf[lineStart:]
			if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
				return buf, nil
			}
			lineStart = len(buf)
		case bufio.ErrBufferFull:
			// The line goes on beyond the reader's buffer.
		case io.EOF:
			return buf, nil
		default:
			return buf, err
		}
	}
}

// field is one header field of a raw header section: its first line and
// all continuation lines, line ends included.
type field struct {
	start, end int    // byte range in the section
	colon      int    // offset of the ':' in the section, -1 if malformed
	name       string // field name without surrounding blanks, "" if malformed
}

// split cuts raw into fields. The fields cover raw[0:end] without gaps;
// raw[end:] is the blank line that ends the section and anything after it.
// Lines that are not header fields become fields without a name, so that
// they are carried along unchanged.
func split(raw []byte) (fields []field, end int) {
	i := 0
	for i < len(raw) {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			j = len(raw)
		} else {
			j += i + 1
		}
		line := raw[i:j]
		if isBlankLine(line) {
			return fields, i
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].end = j
			i = j
			continue
		}
		f := field{start: i, end: j, colon: -1}
		if c := bytes.IndexByte(line, ':'); c > 0 {
			name := strings.TrimRight(string(line[:c]), " \t")
			if validName(name) {
				f.colon = i + c
				f.name = name
			}
		}
		fields = append(fields, f)
		i = j
	}
	return fields, len(raw)
}

func isBlankLine(line []byte) bool {
	return len(line) == 1 && line[0] == '\n' || len(line) == 2 && line[0] == '\r' && line[1] == '\n'
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// value returns the raw value of f: everything after the colon, folding and
// the final line end included.
func (f field) value(raw []byte) []byte {
	return raw[f.colon+1 : f.end]
}

// unfold removes the line breaks of a folded value and the blanks around it.
func unfold(v []byte) string {
	s := strings.ReplaceAll(string(v), "\r\n", "")
	s = strings.ReplaceAll(s, "\n", "")
	return strings.Trim(s, " \t\r")
}

// Get returns the unfolded value of the first header field called name
// (case-insensitive), or "" if there is none.
func Get(raw []byte, name string) string {
	fields, _ := split(raw)
	for _, f := range fields {
		if f.colon >= 0 && strings.EqualFold(f.name, name) {
			return unfold(f.value(raw))
		}
	}
	return ""
}

// Has reports whether the header section has a field called name.
func Has(raw []byte, name string) bool {
	fields, _ := split(raw)
	for _, f := range fields {
		if f.colon >= 0 && strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// Prepend returns line followed by raw. The line, typically a Received:
// field, should end in CRLF; a CRLF is added if it has no line end.
func Prepend(raw []byte, line string) []byte {
	out := make([]byte, 0, len(line)+2+len(raw))
	out = append(out, line...)
	if !strings.HasSuffix(line, "\n") {
		out = append(out, '\r', '\n')
	}
	return append(out, raw...)
}

// Remove returns raw without any field called name, continuation lines
// included.
func Remove(raw []byte, name string) []byte {
	fields, end := split(raw)
	out := make([]byte, 0, len(raw))
	for _, f := range fields {
		if f.colon >= 0 && strings.EqualFold(f.name, name) {
			continue
		}
		out = append(out, raw[f.start:f.end]...)
	}
	return append(out, raw[end:]...)
}

// ToCRLF returns b with every bare LF turned into CRLF. Existing CRLF pairs
// and lone CRs are left as they are.
func ToCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte{'\n'}))
	return appendCRLF(out, b, false)
}

// appendCRLF appends b to out with bare LFs turned into CRLF; prevCR tells
// whether the byte before b was a CR.
func appendCRLF(out, b []byte, prevCR bool) []byte {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(out, b...)
		}
		out = append(out, b[:i]...)
		if (i == 0 && !prevCR) || (i > 0 && b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, '\n')
		b = b[i+1:]
		prevCR = false
	}
	return out
}

// NewCRLFReader returns a reader that passes r through with bare LFs turned
// into CRLF, as ToCRLF does for a whole buffer. It streams: memory use does
// not depend on the length of r.
func NewCRLFReader(r io.Reader) io.Reader {
	return &crlfReader{r: r, in: make([]byte, 16<<10)}
}

type crlfReader struct {
	r      io.Reader
	in     []byte // scratch for reads from r
	conv   []byte // backing array for out
	out    []byte // converted bytes not yet returned
	prevCR bool   // the last byte read from r was a CR
	err    error  // sticky error from r
}

func (c *crlfReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		n, err := c.r.Read(c.in)
		c.err = err
		if n == 0 {
			return 0, err
		}
		c.conv = appendCRLF(c.conv[:0], c.in[:n], c.prevCR)
		c.prevCR = c.in[n-1] == '\r'
		c.out = c.conv
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}
