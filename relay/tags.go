package relay

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/mailhdr"
)

// maxTagValue bounds a tag's value; longer or odd values are recorded as
// "invalid", so a label never carries free text from a message.
const maxTagValue = 64

// maxTagValues is how many distinct values of one tag the metrics keep as
// labels; later ones count as "other". Tags come from message headers,
// which any local user writes: without a bound, one script could create
// a series per message.
const maxTagValues = 50

// readTags returns the values of the X-Outbox-Tag-NAME fields of hdr for
// the names relay.hcl lists (tags = [...]); other tags are ignored.
func readTags(hdr []byte, names []string) map[string]string {
	var out map[string]string
	for _, n := range names {
		v := strings.TrimSpace(mailhdr.Get(hdr, config.TagHeader+n))
		if v == "" {
			continue
		}
		if !validTagValue(v) {
			v = "invalid"
		}
		if out == nil {
			out = map[string]string{}
		}
		out[n] = v
	}
	return out
}

func validTagValue(v string) bool {
	if len(v) > maxTagValue {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// tagAttrs are the log attributes of a message's tags: tag_NAME=value.
func tagAttrs(tags map[string]string) []any {
	if len(tags) == 0 {
		return nil
	}
	out := make([]any, 0, 2*len(tags))
	for _, n := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, "tag_"+n, tags[n])
	}
	return out
}

// tagValues caps the distinct values per tag that become metric labels.
type tagValues struct {
	mu   sync.Mutex
	seen map[string]map[string]bool
}

// label returns v if it is one of the first maxTagValues values of tag
// name seen, else "other".
func (t *tagValues) label(name, v string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[string]map[string]bool{}
	}
	vals := t.seen[name]
	if vals == nil {
		vals = map[string]bool{}
		t.seen[name] = vals
	}
	if vals[v] {
		return v
	}
	if len(vals) >= maxTagValues {
		return "other"
	}
	vals[v] = true
	return v
}
