package config

import (
	"strings"
	"unicode/utf8"

	"github.com/outbox-mta/outbox/mailhdr"
)

// ValidAddress reports whether s is a mailbox local@domain as RFC 5321
// allows it (dot-atom or quoted local part, UTF-8 permitted for SMTPUTF8).
func ValidAddress(s string) bool {
	if len(s) > 254+2 || !utf8.ValidString(s) {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64*4 {
		return false
	}
	if strings.HasPrefix(local, `"`) {
		if len(local) < 2 || !strings.HasSuffix(local, `"`) {
			return false
		}
		for _, c := range local[1 : len(local)-1] {
			if c < 32 || c == 127 {
				return false
			}
		}
	} else {
		if strings.HasPrefix(local, ".") || strings.HasSuffix(local, ".") || strings.Contains(local, "..") {
			return false
		}
		for _, c := range local {
			if c < 128 && !isAtext(byte(c)) && c != '.' {
				return false
			}
		}
	}
	return validDomain(domain)
}

func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// validDomain reports whether d is a domain (UTF-8 labels allowed) or an
// address literal.
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") && strings.HasSuffix(d, "]") {
		return len(d) > 2 // address literal
	}
	if len(d) > 253 || d == "" {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if c < 128 && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validHostname reports whether h can be the EHLO name: a domain as
// validDomain takes it, but in ASCII and without an address literal.
func validHostname(h string) bool {
	return !strings.HasPrefix(h, "[") && mailhdr.IsASCII(h) && validDomain(h)
}

// ValidLocalName reports whether s is a plausible local user name without a
// domain ("root", "www-data").
func ValidLocalName(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAtext(s[i]) && s[i] != '.' {
			return false
		}
	}
	return true
}
