package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Placeholder marks a value the operator (or the package's configuration
// step) must replace: the packaged relay.hcl ships with it where a real
// account or address belongs. Any string value that contains it fails
// Load, so the daemon never starts with "CHANGE-ME@example.com" as root's
// address. Addresses under example.com are not placeholders: tests and
// examples use them as real values.
const Placeholder = "CHANGE-ME"

// IsPlaceholder reports whether s holds the placeholder marker.
func IsPlaceholder(s string) bool {
	return strings.Contains(s, Placeholder)
}

// findPlaceholders walks every attribute of the file, in blocks too, and
// returns one error diagnostic per string value holding the marker, in
// file order, and the ranges of the attributes that hold them.
func findPlaceholders(body *hclsyntax.Body, path string) (hcl.Diagnostics, []hcl.Range) {
	fix := "edit " + path
	if path == DefaultPath {
		fix += " (or run dpkg-reconfigure outbox)"
	}
	var (
		out   hcl.Diagnostics
		attrs []hcl.Range
	)
	var walk func(b *hclsyntax.Body, context string)
	walk = func(b *hclsyntax.Body, context string) {
		for _, a := range b.Attributes {
			val, d := a.Expr.Value(nil)
			if d.HasErrors() {
				continue
			}
			found := placeholderStrings(val)
			if len(found) > 0 {
				attrs = append(attrs, a.SrcRange)
			}
			for _, s := range found {
				rng := a.Expr.Range()
				out = append(out, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  fmt.Sprintf("placeholder value %q in %s", s, strings.TrimSpace(context+" "+a.Name)),
					Detail:   fix,
					Subject:  &rng,
				})
			}
		}
		for _, blk := range b.Blocks {
			ctx := blk.Type
			for _, l := range blk.Labels {
				ctx += fmt.Sprintf(" %q", l)
			}
			walk(blk.Body, strings.TrimSpace(context+" "+ctx))
		}
	}
	walk(body, "")
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].Subject.Start.Byte < out[j].Subject.Start.Byte
	})
	return out, attrs
}

// placeholderStrings returns the strings inside v (a string, or a list,
// tuple, map or object of them) that hold the marker.
func placeholderStrings(v cty.Value) []string {
	if v.IsNull() || !v.IsKnown() {
		return nil
	}
	if v.Type() == cty.String {
		if s := v.AsString(); IsPlaceholder(s) {
			return []string{s}
		}
		return nil
	}
	var out []string
	if v.CanIterateElements() {
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, placeholderStrings(e)...)
		}
	}
	return out
}

// within reports whether r lies inside one of the ranges.
func within(r hcl.Range, ranges []hcl.Range) bool {
	for _, o := range ranges {
		if r.Filename == o.Filename && r.Start.Byte >= o.Start.Byte && r.End.Byte <= o.End.Byte {
			return true
		}
	}
	return false
}
