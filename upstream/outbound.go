package upstream

import "io"

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
