package config

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

type rawAliases struct {
	Entries hcl.Attributes `hcl:",remain"`
}

// aliasDef is one alias as written, in the aliases block or in the
// aliases_file.
type aliasDef struct {
	targets []string
	rng     hcl.Range // the block's attribute, or the aliases_file attribute
	origin  string    // "FILE:LINE"
	file    bool      // from the aliases_file: its problems are warnings
}

func (v *validator) warnf(format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "aliases", Detail: fmt.Sprintf(format, args...)})
}

// aliases merges aliases_file and the aliases block (the block wins for a
// name both define), resolves local_catchall, then every local name to its
// final addresses. It returns the aliases, where each is defined, and the
// catch-all's addresses.
//
// A problem with an alias of the block is an error. One with an entry of
// aliases_file is a warning naming its line, and the name is left out:
// /etc/aliases is shared with the system's conventions (Debian's may
// point names at a root with no entry) and must not stop the daemon.
func (v *validator) aliases(raw *rawFile) (map[string][]string, map[string]string, []string) {
	defs := map[string]*aliasDef{}
	if raw.AliasesFile != "" {
		p := v.path(raw.AliasesFile)
		entries, warns, err := ReadAliasesFile(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Debian does not always ship /etc/aliases, yet the packaged
			// configuration names it.
			v.warnf("aliases_file %s does not exist; only the aliases block is used", p)
		case err != nil:
			v.errf(attrRange(raw.Body, "aliases_file"), "Cannot read aliases_file", "%s; fix the path or remove aliases_file.", err)
		}
		for _, w := range warns {
			v.warnf("%s", w)
		}
		for _, e := range entries {
			origin := fmt.Sprintf("%s:%d", p, e.Line)
			if prev, dup := defs[e.Name]; dup {
				v.warnf("%s: %s is defined again (first at %s); this line wins", origin, e.Name, prev.origin)
			}
			defs[e.Name] = &aliasDef{targets: e.Targets, rng: attrRange(raw.Body, "aliases_file"), origin: origin, file: true}
		}
	}
	if raw.Aliases != nil {
		for name, a := range raw.Aliases.Entries {
			list := v.targetList(a, fmt.Sprintf("alias %q", name))
			if len(list) == 0 {
				v.errf(a.Range, "Empty alias", "alias %q has no target; give it an address.", name)
			}
			defs[strings.ToLower(name)] = &aliasDef{targets: list, rng: a.Range, origin: fmt.Sprintf("%s:%d", a.Range.Filename, a.Range.Start.Line)}
		}
	}
	r := &aliasResolver{defs: defs, hostname: v.hostname}
	if a := raw.Catchall; a != nil {
		list := v.targetList(a, "local_catchall")
		if len(list) == 0 {
			v.errf(a.Range, "Empty local_catchall", "local_catchall has no address; give it one, like \"admin@example.com\", or remove it so that mail to unknown local names is refused.")
		}
		// The catch-all is resolved without itself: "root" as catch-all
		// with root undefined would otherwise point at itself.
		out, problem := r.expandList(list, nil)
		if problem != "" {
			v.errf(a.Range, "Invalid local_catchall", "local_catchall: %s.", problem)
		} else {
			r.catchall = out
		}
	}
	resolved := map[string][]string{}
	origin := map[string]string{}
	for _, name := range sortedKeys(defs) {
		d := defs[name]
		out, problem := r.expandList(d.targets, []string{name})
		switch {
		case problem == "":
			resolved[name], origin[name] = out, d.origin
		case d.file:
			v.warnf("%s: %s: %s; mail to %s is refused (550) until this is fixed", d.origin, name, problem, name)
		default:
			v.errf(d.rng, "Invalid alias", "alias %q: %s.", name, problem)
		}
	}
	return resolved, origin, r.catchall
}

// targetList reads an alias value or local_catchall: an address, a
// comma-separated string of them, or a list.
func (v *validator) targetList(a *hcl.Attribute, what string) []string {
	val, d := a.Expr.Value(nil)
	if d.HasErrors() {
		v.diags = append(v.diags, d...)
		return nil
	}
	var list []string
	switch {
	case val.Type() == cty.String && !val.IsNull():
		list = splitTargets(val.AsString())
	case val.CanIterateElements():
		for it := val.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.Type() != cty.String || e.IsNull() {
				v.errf(a.Range, "Invalid alias", "%s must be an address or a list of addresses, like [\"ops@example.com\", \"alice\"].", what)
				return nil
			}
			list = append(list, splitTargets(e.AsString())...)
		}
	default:
		v.errf(a.Range, "Invalid alias", "%s must be an address or a list of addresses, like [\"ops@example.com\", \"alice\"].", what)
	}
	return list
}

// aliasResolver follows local names through the aliases to addresses
// with a domain.
type aliasResolver struct {
	defs     map[string]*aliasDef
	hostname string
	catchall []string // where a local name with no alias goes; nil: nowhere
}

// expandList resolves targets; stack holds the names being expanded, to
// catch loops. problem, when not "", says why the targets lead nowhere.
func (r *aliasResolver) expandList(targets []string, stack []string) (out []string, problem string) {
	seen := map[string]bool{}
	add := func(a string) {
		if !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			out = append(out, a)
		}
	}
	var walk func(targets []string, stack []string) string
	walk = func(targets []string, stack []string) string {
		for _, t := range targets {
			// "\name" is the local mailbox of name, not its alias:
			// Outbox has no local mailboxes, so it is an unaliased name.
			if IsPlaceholder(t) {
				// Reported on its own; followed as a name, it would
				// also bring errors about what it leads to.
				add(t)
				continue
			}
			mailbox := strings.HasPrefix(t, `\`)
			t = strings.TrimPrefix(t, `\`)
			name := strings.ToLower(t)
			if i := strings.LastIndexByte(t, '@'); i >= 0 {
				if !ValidAddress(t) {
					return fmt.Sprintf("%q is not a valid address", t)
				}
				if !isLocalDomain(t[i+1:], r.hostname) {
					add(t)
					continue
				}
				// root@localhost is the local name root again.
				name = strings.ToLower(t[:i])
			} else if !ValidLocalName(t) {
				return fmt.Sprintf("%q is neither an address nor a local name", t)
			}
			d, defined := r.defs[name]
			if defined && !mailbox {
				for _, s := range stack {
					if s == name {
						return fmt.Sprintf("aliases loop: %s → %s; break the cycle by pointing one of them at a full address", strings.Join(stack, " → "), name)
					}
				}
				if p := walk(d.targets, append(stack, name)); p != "" {
					return p
				}
				continue
			}
			if r.catchall == nil {
				return fmt.Sprintf("the local name %q has no alias and local_catchall is not set; add %s = \"someone@example.com\" to the aliases block, use a full address, or set local_catchall", t, name)
			}
			for _, a := range r.catchall {
				add(a)
			}
		}
		return ""
	}
	if p := walk(targets, stack); p != "" {
		return nil, p
	}
	return out, ""
}

func splitTargets(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// AliasEntry is one line of an aliases file.
type AliasEntry struct {
	Name    string
	Targets []string
	Line    int
}

// ReadAliasesFile parses a file in /etc/aliases syntax: "name: addr, addr",
// continuation lines starting with white space, # comments. Pipes, files
// and :include: are refused: each such target is skipped with a warning
// naming the line.
func ReadAliasesFile(path string) ([]AliasEntry, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var (
		entries []AliasEntry
		warns   []string
		logical string
		start   int
	)
	flush := func() {
		if strings.TrimSpace(logical) == "" {
			return
		}
		name, rest, ok := strings.Cut(logical, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || !ValidLocalName(name) {
			warns = append(warns, fmt.Sprintf("%s:%d: not \"name: address, ...\"; line ignored", path, start))
			return
		}
		e := AliasEntry{Name: name, Line: start}
		for _, t := range splitTargets(rest) {
			t = strings.Trim(t, `"`)
			switch {
			case strings.HasPrefix(t, "|"):
				warns = append(warns, fmt.Sprintf("%s:%d: %s: delivery to a program is not supported; target ignored", path, start, name))
			case strings.HasPrefix(t, ":include:"):
				warns = append(warns, fmt.Sprintf("%s:%d: %s: :include: is not supported; target ignored", path, start, name))
			case strings.HasPrefix(t, "/"):
				warns = append(warns, fmt.Sprintf("%s:%d: %s: delivery to a file is not supported; target ignored", path, start, name))
			default:
				e.Targets = append(e.Targets, t)
			}
		}
		if len(e.Targets) > 0 {
			entries = append(entries, e)
		}
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			logical += " " + strings.TrimSpace(line)
			continue
		}
		flush()
		logical, start = line, n
	}
	flush()
	return entries, warns, sc.Err()
}
