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
		if !validTagName(name) {
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

func validTagName(s string) bool {
	// As package email allows Metadata keys: letters, digits, '-', '_'.
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
