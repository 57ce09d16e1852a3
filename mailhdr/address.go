package mailhdr

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
)

// qualified lists the fields whose addresses Qualify completes.
var qualified = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true,
	"reply-to": true, "sender": true,
	"resent-from": true, "resent-to": true, "resent-cc": true,
	"resent-bcc": true, "resent-sender": true,
}

// token kinds of the address list scanner.
const (
	tWord    = iota // atext and dots: an atom, a dot-atom or a piece of one
	tQuoted         // "quoted string"
	tLiteral        // [domain literal]
	tSpecial        // one of < > , : ; @
)

type token struct {
	kind       int
	start, end int  // byte range in the scanned value
	c          byte // the character of a tSpecial
}

// scan cuts an address list value into tokens, dropping blanks, line
// breaks and comments. It fails on anything it cannot account for (stray
// brackets, unterminated quotes or comments, control characters), which
// callers take as "do not touch".
func scan(v []byte) ([]token, bool) {
	var toks []token
	i := 0
	for i < len(v) {
		c := v[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth := 0
			for ; i < len(v); i++ {
				switch v[i] {
				case '\\':
					i++
				case '(':
					depth++
				case ')':
					depth--
				}
				if depth == 0 {
					break
				}
			}
			if i >= len(v) {
				return nil, false
			}
			i++
		case c == '"' || c == '[':
			closing, kind := byte('"'), tQuoted
			if c == '[' {
				closing, kind = ']', tLiteral
			}
			j := i + 1
			for ; j < len(v) && v[j] != closing; j++ {
				if v[j] == '\\' {
					j++
				}
			}
			if j >= len(v) {
				return nil, false
			}
			toks = append(toks, token{kind: kind, start: i, end: j + 1})
			i = j + 1
		case strings.IndexByte("<>,:;@", c) >= 0:
			toks = append(toks, token{kind: tSpecial, start: i, end: i + 1, c: c})
			i++
		case isAtext(c) || c == '.':
			j := i + 1
			for j < len(v) && (isAtext(v[j]) || v[j] == '.') {
				j++
			}
			toks = append(toks, token{kind: tWord, start: i, end: j})
			i = j
		default:
			return nil, false
		}
	}
	return toks, true
}

// isAtext reports whether c may appear in an atom (RFC 5322 atext, with
// the bytes of UTF-8 sequences allowed as RFC 6532 does).
func isAtext(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c >= 0x80:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// mailbox is one address found in a list, located in the scanned value.
type mailbox struct {
	addrStart, addrEnd int  // the addr-spec
	localEnd           int  // end of the local part
	domain             bool // the addr-spec has a domain
	grouped            bool // the mailbox is a member of a group
	addr               string
}

// parser is a tolerant RFC 5322 address list parser: it accepts local
// parts without a domain, obsolete routes and stray empty list elements,
// and gives up on anything else it does not understand.
type parser struct {
	v       []byte
	toks    []token
	p       int
	inGroup bool
	out     []mailbox
}

// parseList parses an address list value. It fails when the value is not
// an address list it can rewrite safely.
func parseList(v []byte) ([]mailbox, bool) {
	toks, ok := scan(v)
	if !ok {
		return nil, false
	}
	ps := &parser{v: v, toks: toks}
	if !ps.list() {
		return nil, false
	}
	return ps.out, true
}

func (ps *parser) peek() (token, bool) {
	if ps.p >= len(ps.toks) {
		return token{}, false
	}
	return ps.toks[ps.p], true
}

func (ps *parser) special(c byte) bool {
	t, ok := ps.peek()
	return ok && t.kind == tSpecial && t.c == c
}

func (ps *parser) list() bool {
	for {
		if ps.p >= len(ps.toks) {
			return true
		}
		if ps.special(',') {
			ps.p++
			continue
		}
		if ps.isGroup() {
			if !ps.group() {
				return false
			}
		} else if !ps.mailbox() {
			return false
		}
		if ps.p < len(ps.toks) && !ps.special(',') {
			return false
		}
	}
}

// isGroup reports whether the element at the cursor is a group: a phrase
// followed by a colon.
func (ps *parser) isGroup() bool {
	for i := ps.p; i < len(ps.toks); i++ {
		t := ps.toks[i]
		if t.kind != tSpecial {
			continue
		}
		return t.c == ':' && i > ps.p
	}
	return false
}

func (ps *parser) group() bool {
	for ps.toks[ps.p].kind != tSpecial {
		ps.p++
	}
	ps.p++ // the colon
	ps.inGroup = true
	defer func() { ps.inGroup = false }()
	for {
		t, ok := ps.peek()
		switch {
		case !ok:
			// A group without its closing ";" is common enough
			// ("undisclosed-recipients:") to be let through.
			return true
		case t.kind == tSpecial && t.c == ';':
			ps.p++
			return true
		case t.kind == tSpecial && t.c == ',':
			ps.p++
		default:
			if !ps.mailbox() {
				return false
			}
			if !ps.special(',') && !ps.special(';') && ps.p < len(ps.toks) {
				return false
			}
		}
	}
}

func (ps *parser) mailbox() bool {
	// Look for an angle address before the end of this element.
	angle := -1
	for i := ps.p; i < len(ps.toks); i++ {
		t := ps.toks[i]
		if t.kind == tSpecial && (t.c == ',' || t.c == ';' || t.c == '>') {
			break
		}
		if t.kind == tSpecial && t.c == '<' {
			angle = i
			break
		}
	}
	if angle < 0 {
		return ps.addrSpec()
	}
	// The display name: words and quoted strings; an unquoted "@" shows up
	// in the wild ("bob@example.com <bob@example.com>") and is harmless
	// here because only the angle address is ever rewritten.
	for ; ps.p < angle; ps.p++ {
		t := ps.toks[ps.p]
		if t.kind == tLiteral || t.kind == tSpecial && t.c != '@' {
			return false
		}
	}
	ps.p++ // "<"
	if ps.special('>') {
		ps.p++ // "<>", the null address
		return true
	}
	if ps.special('@') {
		// Obsolete source route: "<@a.example,@b.example:user@c.example>".
		for ps.p < len(ps.toks) && !ps.special(':') {
			ps.p++
		}
		if ps.p >= len(ps.toks) {
			return false
		}
		ps.p++
	}
	if !ps.addrSpec() {
		return false
	}
	if !ps.special('>') {
		return false
	}
	ps.p++
	return true
}

// dotted consumes a run of tokens of the given kinds that are joined by
// dots ("a.b", "a" . "b", "\"a\".b") and returns its byte range.
func (ps *parser) dotted(words ...int) (start, end int, text string, ok bool) {
	var b strings.Builder
	first := true
	prevDot := false
	for {
		t, more := ps.peek()
		if !more || t.kind == tSpecial {
			break
		}
		if !kindIn(t.kind, words) {
			return 0, 0, "", false
		}
		s := ps.v[t.start:t.end]
		if !first && !prevDot && s[0] != '.' {
			// Two words without a dot between them: a phrase, not an
			// address.
			return 0, 0, "", false
		}
		if first {
			start = t.start
		}
		first = false
		end = t.end
		b.Write(s)
		prevDot = s[len(s)-1] == '.' && t.kind == tWord
		ps.p++
	}
	if first {
		return 0, 0, "", false
	}
	text = strings.NewReplacer("\r", "", "\n", "").Replace(b.String())
	return start, end, text, true
}

func kindIn(k int, kinds []int) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

func (ps *parser) addrSpec() bool {
	start, end, local, ok := ps.dotted(tWord, tQuoted)
	if !ok {
		return false
	}
	m := mailbox{addrStart: start, addrEnd: end, localEnd: end, grouped: ps.inGroup, addr: local}
	if ps.special('@') {
		ps.p++
		_, dend, domain, ok := ps.dotted(tWord, tLiteral)
		if !ok {
			return false
		}
		m.domain = true
		m.addrEnd = dend
		m.addr = local + "@" + domain
	} else if strings.HasPrefix(local, "=?") && strings.HasSuffix(local, "?=") {
		// An encoded word where an address should be is a display name
		// gone astray; qualifying it would only make things worse.
		return false
	}
	ps.out = append(ps.out, m)
	return true
}

// Qualify appends "@"+domain to the unqualified addresses (those without
// "@") in the From, To, Cc, Bcc, Reply-To, Sender and Resent-* fields, as
// Postfix does for mail submitted locally: "To: root" becomes
// "To: root@host.example" and "From: Cron Daemon <root>" becomes
// "From: Cron Daemon <root@host.example>". Addresses inside a group are
// qualified too; the group syntax itself, empty fields and fields that
// cannot be parsed safely are left alone. Fields it does not rewrite stay
// byte-identical; the fields it rewrites get CRLF line ends. It returns the
// new header section and whether anything changed.
func Qualify(raw []byte, domain string) ([]byte, bool) {
	if domain == "" || strings.ContainsAny(domain, "\r\n") {
		return raw, false
	}
	fields, end := split(raw)
	var out []byte
	changed := false
	for _, f := range fields {
		rewritten, ok := qualifyField(raw, f, domain)
		if !ok {
			out = append(out, raw[f.start:f.end]...)
			continue
		}
		if !changed {
			out = make([]byte, 0, len(raw)+64)
			out = append(out, raw[:f.start]...)
			changed = true
		}
		out = append(out, rewritten...)
	}
	if !changed {
		return raw, false
	}
	return append(out, raw[end:]...), true
}

// qualifyField returns f rewritten with its unqualified addresses
// completed, or false when there is nothing to do.
func qualifyField(raw []byte, f field, domain string) ([]byte, bool) {
	if f.colon < 0 || !qualified[strings.ToLower(f.name)] {
		return nil, false
	}
	v := f.value(raw)
	mbs, ok := parseList(v)
	if !ok {
		return nil, false
	}
	var nv []byte
	last := 0
	for _, m := range mbs {
		if m.domain {
			continue
		}
		nv = append(nv, v[last:m.localEnd]...)
		nv = append(nv, '@')
		nv = append(nv, domain...)
		last = m.localEnd
	}
	if nv == nil {
		return nil, false
	}
	nv = append(nv, v[last:]...)
	out := append([]byte(nil), raw[f.start:f.colon+1]...)
	out = append(out, nv...)
	out = ToCRLF(out)
	if !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, '\r', '\n')
	}
	return out, true
}

// Addresses returns the addresses in the fields with the given names (for
// `sendmail -t`: To, Cc, Bcc, or their Resent- forms), in the order the
// fields and addresses appear. Display names, comments and group syntax
// are dropped; unqualified names are returned as they are; the null
// address "<>" is skipped.
func Addresses(raw []byte, names ...string) ([]string, error) {
	fields, _ := split(raw)
	var addrs []string
	for _, f := range fields {
		if f.colon < 0 || !nameIn(f.name, names) {
			continue
		}
		v := f.value(raw)
		if unfold(v) == "" {
			continue
		}
		if list, err := mail.ParseAddressList(unfold(v)); err == nil {
			for _, a := range list {
				addrs = append(addrs, quoteLocal(a.Address))
			}
			continue
		}
		mbs, ok := parseList(v)
		if !ok {
			return nil, fmt.Errorf("mailhdr: cannot parse the addresses in %s: %q", f.name, unfold(v))
		}
		for _, m := range mbs {
			addrs = append(addrs, m.addr)
		}
	}
	return addrs, nil
}

func nameIn(name string, names []string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// quoteLocal puts back the quotes net/mail takes off a local part that is
// not a dot-atom, so the address can be used in RCPT TO.
func quoteLocal(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr
	}
	local := addr[:at]
	if isDotAtom(local) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if local[i] == '"' || local[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String() + addr[at:]
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

// RewriteFrom replaces the address in the From field with newFrom, keeping
// the display name and comments, and adds a Reply-To field carrying the
// original From value when the message has none, so that replies still
// reach the author. A From field that is not a single mailbox is replaced
// as a whole; a missing one is added. If From already holds newFrom the
// section is returned unchanged.
func RewriteFrom(raw []byte, newFrom string) []byte {
	newFrom = strings.NewReplacer("\r", "", "\n", "").Replace(newFrom)
	fields, end := split(raw)
	hasReplyTo := false
	from := -1
	for i, f := range fields {
		if f.colon < 0 {
			continue
		}
		switch {
		case strings.EqualFold(f.name, "From") && from < 0:
			from = i
		case strings.EqualFold(f.name, "Reply-To"):
			hasReplyTo = true
		}
	}
	out := make([]byte, 0, len(raw)+2*len(newFrom)+32)
	if from < 0 {
		for _, f := range fields {
			out = append(out, raw[f.start:f.end]...)
		}
		out = terminate(out)
		out = append(out, "From: "+newFrom+"\r\n"...)
		return append(out, raw[end:]...)
	}
	f := fields[from]
	v := f.value(raw)
	var nv []byte
	mbs, ok := parseList(v)
	if ok && len(mbs) == 1 && !mbs[0].grouped {
		m := mbs[0]
		if strings.EqualFold(m.addr, newFrom) {
			return raw
		}
		nv = append(nv, v[:m.addrStart]...)
		nv = append(nv, newFrom...)
		nv = append(nv, v[m.addrEnd:]...)
	} else {
		nv = []byte(" " + newFrom + "\r\n")
	}
	out = append(out, raw[:f.start]...)
	out = append(out, raw[f.start:f.colon+1]...)
	out = append(out, ToCRLF(nv)...)
	out = terminate(out)
	// A From that held no address at all ("<>", an empty group) is not
	// worth replying to.
	if !hasReplyTo && unfold(v) != "" && (!ok || len(mbs) > 0) {
		out = append(out, "Reply-To:"...)
		out = append(out, ToCRLF(v)...)
		out = terminate(out)
	}
	return append(out, raw[f.end:]...)
}

// terminate makes sure b ends with a line end, unless it is empty.
func terminate(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\r', '\n')
	}
	return b
}
