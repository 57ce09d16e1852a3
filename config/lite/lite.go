// Package lite reads the three settings the sendmail shim needs to submit
// a message — hostname, the first unix listener (the submission socket)
// and limits.max_message_size — straight from relay.hcl, without HCL's
// parser, and holds the value checks the config package shares with it.
//
// The shim runs once per message, and linking HCL and cty made every call
// pay for their package initialisation and page-in as well as for the
// parse (a third of a call's CPU). This reader takes the plain subset of
// HCL's native syntax that configuration files are written in: attributes
// whose values are literal strings, numbers, booleans, lists and objects,
// blocks with labels, and the three kinds of comment. Anything else
// (string templates, heredocs, expressions, and any value of the three
// settings the full reader would refuse) makes Parse return ErrNotSimple,
// and the shim then reads the file with package config as before, so that
// a file this reader does not fully understand is never half-read. It
// reads the file on every call: there is no cache to go stale when
// relay.hcl changes.
//
// It does not validate the rest of the file; the daemon and `outbox check`
// do.
package lite

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DefaultPath is where relay.hcl lives when neither --config (-C) nor
// OUTBOX_CONFIG says otherwise; config.DefaultPath is the same.
const DefaultPath = "/etc/outbox/relay.hcl"

// DefaultSubmitSocket is the submission socket when relay.hcl has no
// listen block.
const DefaultSubmitSocket = "/run/outbox/submit.sock"

// DefaultMaxMessageSize is limits.max_message_size when unset.
const DefaultMaxMessageSize = 25 << 20

// ErrNotSimple means the file uses syntax or values this reader leaves to
// package config.
var ErrNotSimple = errors.New("configuration needs the full reader")

// Settings are what the shim takes from relay.hcl to submit a message,
// resolved as package config resolves them.
type Settings struct {
	Path           string // absolute path of the file
	Hostname       string
	SubmitSocket   string // absolute; "" when no listener is a unix socket
	MaxMessageSize int64
}

// Read reads the file at path. Errors other than ErrNotSimple are those of
// reading it.
func Read(path string) (*Settings, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, err
	}
	return Parse(abs, src)
}

// Parse reads src, the file at the absolute path.
func Parse(path string, src []byte) (*Settings, error) {
	if !utf8.Valid(src) {
		return nil, ErrNotSimple
	}
	p := &parser{src: string(src)}
	items, err := p.body(false)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	s := &Settings{Path: path, MaxMessageSize: DefaultMaxMessageSize}
	var hostname *item
	var limits []*item
	listens := 0
	seen := map[string]bool{}
	for _, it := range items {
		if !it.block {
			if seen[it.name] {
				return nil, ErrNotSimple // the full reader refuses the file
			}
			seen[it.name] = true
		}
		switch {
		case it.name == "hostname" && !it.block:
			hostname = it
		case it.name == "listen" && it.block:
			if len(it.labels) > 0 {
				return nil, ErrNotSimple
			}
			listens++
			addr, ok, err := it.attr("address")
			if err != nil || !ok || addr.kind != tokString {
				return nil, ErrNotSimple
			}
			if sock, isUnix := strings.CutPrefix(addr.text, "unix:"); isUnix {
				if sock == "" {
					return nil, ErrNotSimple
				}
				if s.SubmitSocket == "" {
					s.SubmitSocket = joinPath(dir, sock)
				}
			} else if _, port, err := net.SplitHostPort(addr.text); err != nil || port == "" {
				return nil, ErrNotSimple
			}
		case it.name == "limits" && it.block:
			if len(it.labels) > 0 {
				return nil, ErrNotSimple
			}
			limits = append(limits, it)
		}
	}
	if listens == 0 {
		s.SubmitSocket = DefaultSubmitSocket
	}
	if hostname != nil {
		if hostname.value.kind != tokString || !ValidHostname(hostname.value.text) {
			return nil, ErrNotSimple
		}
		s.Hostname = hostname.value.text
	}
	if s.Hostname == "" {
		s.Hostname = DefaultHostname()
	}
	if len(limits) > 1 {
		return nil, ErrNotSimple
	}
	if len(limits) == 1 {
		v, ok, err := limits[0].attr("max_message_size")
		if err != nil {
			return nil, err
		}
		if ok {
			if v.kind != tokString && v.kind != tokNumber {
				return nil, ErrNotSimple
			}
			n, err := ParseSize(v.text)
			if err != nil || n <= 0 {
				return nil, ErrNotSimple
			}
			s.MaxMessageSize = n
		}
	}
	return s, nil
}

// DefaultHostname is the hostname when relay.hcl sets none: the machine's
// host name, else "localhost".
func DefaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return h
}

func joinPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// item is an attribute or a block of a body.
type item struct {
	name   string
	block  bool
	labels []string
	value  token   // an attribute's value: a string or number; tokOther for lists, objects and keywords
	items  []*item // a block's body
}

// attr returns the value of the block's attribute name, and whether it is
// set. A name given twice is an error of the file: ErrNotSimple, for the
// full reader to report.
func (it *item) attr(name string) (token, bool, error) {
	var found *item
	for _, c := range it.items {
		if c.name == name && !c.block {
			if found != nil {
				return token{}, false, ErrNotSimple
			}
			found = c
		}
	}
	if found == nil {
		return token{}, false, nil
	}
	return found.value, true, nil
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokNewline
	tokIdent
	tokString
	tokNumber
	tokPunct // one of = { } [ ] , :
	tokOther // a value that is neither a string nor a number
)

type token struct {
	kind tokKind
	text string // identifier, unquoted string, number or punctuation
}

type parser struct {
	src  string
	pos  int
	peek *token
}

func (p *parser) next() (token, error) {
	if p.peek != nil {
		t := *p.peek
		p.peek = nil
		return t, nil
	}
	return p.scan()
}

func (p *parser) unread(t token) { p.peek = &t }

// scan returns the next token, skipping blanks and comments.
func (p *parser) scan() (token, error) {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '\n':
			p.pos++
			return token{kind: tokNewline}, nil
		case c == '#' || strings.HasPrefix(p.src[p.pos:], "//"):
			// The newline ending a line comment still ends its line.
			if i := strings.IndexByte(p.src[p.pos:], '\n'); i >= 0 {
				p.pos += i
			} else {
				p.pos = len(p.src)
			}
		case strings.HasPrefix(p.src[p.pos:], "/*"):
			i := strings.Index(p.src[p.pos+2:], "*/")
			if i < 0 || strings.Contains(p.src[p.pos:p.pos+2+i], "\n") {
				return token{}, ErrNotSimple
			}
			p.pos += 2 + i + 2
		case c == '"':
			return p.str()
		case c >= '0' && c <= '9':
			start := p.pos
			for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
				p.pos++
			}
			if p.pos < len(p.src) && (isIdentByte(p.src[p.pos]) || p.src[p.pos] == '.') {
				return token{}, ErrNotSimple // fractions and exponents: left to HCL
			}
			return token{kind: tokNumber, text: p.src[start:p.pos]}, nil
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			start := p.pos
			for p.pos < len(p.src) && isIdentByte(p.src[p.pos]) {
				p.pos++
			}
			return token{kind: tokIdent, text: p.src[start:p.pos]}, nil
		case strings.IndexByte("={}[],:", c) >= 0:
			p.pos++
			return token{kind: tokPunct, text: string(c)}, nil
		default:
			return token{}, ErrNotSimple
		}
	}
	return token{kind: tokEOF}, nil
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// str reads a quoted string with HCL's escapes; templates are left to HCL.
func (p *parser) str() (token, error) {
	p.pos++ // the opening quote
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			return token{kind: tokString, text: b.String()}, nil
		case c == '\n' || c == '\r':
			return token{}, ErrNotSimple
		case (c == '$' || c == '%') && p.pos+1 < len(p.src) && p.src[p.pos+1] == '{':
			return token{}, ErrNotSimple
		case c == '\\':
			if p.pos+1 >= len(p.src) {
				return token{}, ErrNotSimple
			}
			e := p.src[p.pos+1]
			p.pos += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '"', '\\':
				b.WriteByte(e)
			case 'u', 'U':
				n := 4
				if e == 'U' {
					n = 8
				}
				if p.pos+n > len(p.src) {
					return token{}, ErrNotSimple
				}
				r, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
				if err != nil || !utf8.ValidRune(rune(r)) {
					return token{}, ErrNotSimple
				}
				if r >= utf8.RuneSelf {
					return token{}, ErrNotSimple // see the default case
				}
				b.WriteRune(rune(r))
				p.pos += n
			default:
				return token{}, ErrNotSimple
			}
		case c >= utf8.RuneSelf:
			// HCL turns string literals into Unicode normal form C;
			// rather than carry the tables, lite leaves non-ASCII text
			// to it (the three settings are ASCII in practice).
			return token{}, ErrNotSimple
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return token{}, ErrNotSimple
}

// body reads attributes and blocks up to the end of the file, or up to
// the closing brace when nested.
func (p *parser) body(nested bool) ([]*item, error) {
	var items []*item
	for {
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		switch {
		case t.kind == tokNewline:
			continue
		case t.kind == tokEOF:
			if nested {
				return nil, ErrNotSimple
			}
			return items, nil
		case t.kind == tokPunct && t.text == "}" && nested:
			return items, nil
		case t.kind != tokIdent:
			return nil, ErrNotSimple
		}
		it := &item{name: t.text}
		t, err = p.next()
		if err != nil {
			return nil, err
		}
		if t.kind == tokPunct && t.text == "=" {
			if it.value, err = p.value(); err != nil {
				return nil, err
			}
		} else {
			it.block = true
			for t.kind == tokString || t.kind == tokIdent {
				it.labels = append(it.labels, t.text)
				if t, err = p.next(); err != nil {
					return nil, err
				}
			}
			if t.kind != tokPunct || t.text != "{" {
				return nil, ErrNotSimple
			}
			if it.items, err = p.body(true); err != nil {
				return nil, err
			}
		}
		items = append(items, it)
		// An item ends its line (a one-line block may close right after).
		t, err = p.next()
		if err != nil {
			return nil, err
		}
		switch {
		case t.kind == tokNewline, t.kind == tokEOF:
			p.unread(t)
		case t.kind == tokPunct && t.text == "}" && nested:
			p.unread(t)
		default:
			return nil, ErrNotSimple
		}
	}
}

// value reads a literal value: a string, a whole number, true, false or
// null, or a list or object of such values.
func (p *parser) value() (token, error) {
	t, err := p.next()
	if err != nil {
		return token{}, err
	}
	switch {
	case t.kind == tokString || t.kind == tokNumber:
		return t, nil
	case t.kind == tokIdent && (t.text == "true" || t.text == "false" || t.text == "null"):
		return token{kind: tokOther, text: t.text}, nil
	case t.kind == tokPunct && t.text == "[":
		return token{kind: tokOther}, p.seq("]", false)
	case t.kind == tokPunct && t.text == "{":
		return token{kind: tokOther}, p.seq("}", true)
	}
	return token{}, ErrNotSimple
}

// seq reads the elements of a list, or the key = value pairs of an object,
// up to end; newlines may separate them.
func (p *parser) seq(end string, object bool) error {
	for {
		t, err := p.skipNewlines()
		if err != nil {
			return err
		}
		if t.kind == tokPunct && t.text == end {
			return nil
		}
		if object {
			if t.kind != tokIdent && t.kind != tokString {
				return ErrNotSimple
			}
			if t, err = p.next(); err != nil {
				return err
			}
			if t.kind != tokPunct || t.text != "=" && t.text != ":" {
				return ErrNotSimple
			}
		} else {
			p.unread(t)
		}
		if _, err := p.value(); err != nil {
			return err
		}
		t, err = p.next()
		if err != nil {
			return err
		}
		newline := t.kind == tokNewline
		if newline {
			if t, err = p.skipNewlines(); err != nil {
				return err
			}
		}
		switch {
		case t.kind == tokPunct && t.text == end:
			return nil
		case t.kind == tokPunct && t.text == ",":
		case object && newline && t.kind != tokEOF:
			// Object elements may be separated by newlines alone.
			p.unread(t)
		default:
			return ErrNotSimple
		}
	}
}

func (p *parser) skipNewlines() (token, error) {
	for {
		t, err := p.next()
		if err != nil || t.kind != tokNewline {
			return t, err
		}
	}
}

// String describes the settings, for -v.
func (s *Settings) String() string {
	return fmt.Sprintf("hostname %s, submission socket %s, max_message_size %d", s.Hostname, s.SubmitSocket, s.MaxMessageSize)
}
