package config

import (
	"strings"
)

// MaxTags bounds the tags list: each tag is a label value set in the
// metrics, so their number multiplies the series an operator stores.
const MaxTags = 10

// TagHeader is the header field prefix a tag travels in, as package email
// writes it ("X-Outbox-Tag-Campaign: q3").
const TagHeader = "X-Outbox-Tag-"

// tags validates the top-level tags list: names of letters, digits,
// hyphens and underscores (header field name suffixes), lower-cased, unique.
func (v *validator) tags(raw *rawFile) []string {
	if len(raw.Tags) == 0 {
		return nil
	}
	rng := attrRange(raw.Body, "tags")
	if len(raw.Tags) > MaxTags {
		v.errf(rng, "Too many tags", "tags lists %d names; at most %d are allowed, since each becomes a label in the metrics.", len(raw.Tags), MaxTags)
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, t := range raw.Tags {
		name := strings.ToLower(t)
		if !ValidTagName(name) {
			v.errf(rng, "Invalid tag", "tags: %q is not a tag name; use letters, digits, hyphens and underscores, like \"campaign\" (the header field is X-Outbox-Tag-Campaign).", t)
			continue
		}
		if seen[name] {
			v.errf(rng, "Duplicate tag", "tags: %q is listed twice.", t)
			continue
		}
		seen[name] = true
		out = append(out, name)
	}
	return out
}

// ValidTagName reports whether s can name a tag: a letter or digit, then
// letters, digits, '-' and '_', at most 64 bytes, any case. Package email
// checks Metadata keys with it, so what an application tags the daemon
// can be told to report.
func ValidTagName(s string) bool {
	if s == "" || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
