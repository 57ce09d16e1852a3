package gosmtp

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
	"sync"
)

// Qualifier lets local clients use bare names in the envelope, as they can
// with Postfix: "RCPT TO:<root>" becomes "RCPT TO:<root@HOSTNAME>" before
// go-smtp sees it, so the name then resolves through the aliases block like
// any local address. go-smtp parses MAIL FROM and RCPT TO itself and
// answers a path without "@domain" with 501 (parser.parseMailbox) before
// the Session is called, with no hook to parse it otherwise: the only
// place to qualify the name is the byte stream the server reads, which
// the connection passes through Read (and its writes through Wrote).
//
// It rewrites only complete command lines. It follows the session to know
// where commands are: after DATA and the server's 354 it passes the body
// through untouched up to the lone "." line; after "BDAT n" it passes n
// bytes; after STARTTLS it stops for good (what follows is TLS). If the
// session does anything it cannot follow, it stops rewriting: the worst
// case is the parser's own 501 for a bare name.
type Qualifier struct {
	domain string

	mu      sync.Mutex
	mode    int
	line    []byte // partial command line
	out     []byte // processed bytes not yet returned
	tail    []byte // last bytes of the body, to find CRLF.CRLF across reads
	bdat    int64  // BDAT bytes still to pass
	scratch []byte
}

const (
	qCommand = iota
	qAwaitData
	qBody
	qBDAT
	qOff
)

// maxCommandLine bounds a held partial line; longer lines pass through
// unchanged (the parser refuses them anyway).
const maxCommandLine = 4096

// bareEnvelope is compiled on first use, not at start-up: every run of
// the sendmail shim imports this package, and compiling it took 1.7% of
// a `sendmail -t -i` call that never needs it.
var bareEnvelope = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)^(MAIL FROM:|RCPT TO:)(\s*)<([A-Za-z0-9!#$%&'*+/=?^_` + "`" + `{|}~.-]+)>`)
})

// NewQualifier returns a Qualifier that appends "@" and domain to bare
// names; it serves one SMTP session.
func NewQualifier(domain string) *Qualifier {
	return &Qualifier{domain: domain, scratch: make([]byte, 32<<10)}
}

// Read fills p from r, rewriting command lines. Only the connection's
// reader calls it; the lock guards against Wrote, never held while
// blocked in r.Read.
func (q *Qualifier) Read(r io.Reader, p []byte) (int, error) {
	for {
		q.mu.Lock()
		if len(q.out) > 0 {
			n := copy(p, q.out)
			q.out = q.out[n:]
			if len(q.out) == 0 {
				q.out = nil
			}
			q.mu.Unlock()
			return n, nil
		}
		off := q.mode == qOff && len(q.line) == 0
		q.mu.Unlock()
		if off {
			return r.Read(p)
		}
		n, err := r.Read(q.scratch)
		q.mu.Lock()
		q.feed(q.scratch[:n])
		if err != nil && len(q.out) == 0 {
			// Hand over a held partial line before the error.
			q.out, q.line = q.line, nil
			if len(q.out) == 0 {
				q.mu.Unlock()
				return 0, err
			}
		}
		q.mu.Unlock()
	}
}

// feed processes bytes read from the client.
func (q *Qualifier) feed(b []byte) {
	for len(b) > 0 {
		switch q.mode {
		case qOff, qAwaitData:
			q.out = append(q.out, b...)
			return
		case qBDAT:
			n := int64(len(b))
			if n > q.bdat {
				n = q.bdat
			}
			q.out = append(q.out, b[:n]...)
			q.bdat -= n
			b = b[n:]
			if q.bdat == 0 {
				q.mode = qCommand
			}
		case qBody:
			// Find the end of data, possibly split across reads.
			joined := append(q.tail, b...)
			i := bytes.Index(joined, []byte("\r\n.\r\n"))
			if i < 0 {
				q.out = append(q.out, b...)
				if len(joined) > 4 {
					joined = joined[len(joined)-4:]
				}
				q.tail = append([]byte(nil), joined...)
				return
			}
			end := i + 5 - len(q.tail) // bytes of b up to and including the marker
			q.out = append(q.out, b[:end]...)
			b = b[end:]
			q.tail = nil
			q.mode = qCommand
		case qCommand:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				q.line = append(q.line, b...)
				if len(q.line) > maxCommandLine {
					q.out = append(q.out, q.line...)
					q.line = nil
					q.mode = qOff
				}
				return
			}
			q.line = append(q.line, b[:i+1]...)
			b = b[i+1:]
			q.command(q.line)
			q.line = nil
		}
	}
}

// command handles one complete command line.
func (q *Qualifier) command(line []byte) {
	verb := bytes.ToUpper(bytes.TrimRight(line, "\r\n"))
	switch {
	case bytes.Equal(verb, []byte("DATA")):
		q.mode = qAwaitData
	case bytes.HasPrefix(verb, []byte("BDAT ")):
		fields := bytes.Fields(verb)
		var n int64 = -1
		if len(fields) >= 2 {
			n, _ = strconv.ParseInt(string(fields[1]), 10, 64)
		}
		if n < 0 {
			q.mode = qOff
		} else if n > 0 {
			q.mode, q.bdat = qBDAT, n
		}
	case bytes.Equal(verb, []byte("STARTTLS")):
		q.mode = qOff
	default:
		if m := bareEnvelope().FindSubmatchIndex(line); m != nil {
			var b []byte
			b = append(b, line[:m[7]]...)
			b = append(b, '@')
			b = append(b, q.domain...)
			b = append(b, line[m[7]:]...)
			line = b
		}
	}
	q.out = append(q.out, line...)
}

// Wrote tells the qualifier what the server answered; only the reply to
// DATA matters. With PIPELINING the replies to MAIL and RCPT come after
// the DATA line was read, so a 2yz reply never ends the wait (DATA is
// never answered 2yz), and a 354, which answers nothing but DATA, starts
// the body even after an earlier refusal (a rejected RCPT) ended the wait.
func (q *Qualifier) Wrote(p []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(p) < 3 || (q.mode != qAwaitData && q.mode != qCommand) {
		return
	}
	switch {
	case bytes.HasPrefix(p, []byte("354")):
		q.mode = qBody
		q.tail = []byte("\r\n") // the body may end at once with ".\r\n"
	case q.mode == qAwaitData && p[0] != '2':
		q.mode = qCommand
	}
}
