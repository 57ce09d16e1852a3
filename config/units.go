package config

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/config/lite"
)

// ParseSize reads a byte count: a plain number, or a number with a unit
// (KiB, MiB, GiB, or the decimal KB, MB, GB).
func ParseSize(s string) (int64, error) { return lite.ParseSize(s) }

// ParseRate reads "N/unit" where unit is second, minute, hour or day (or s,
// m, h, d).
func ParseRate(s string) (int, time.Duration, error) {
	n, unit, ok := strings.Cut(strings.ReplaceAll(s, " ", ""), "/")
	if !ok {
		return 0, 0, fmt.Errorf("invalid rate %q", s)
	}
	count, err := strconv.Atoi(n)
	if err != nil || count < 1 {
		return 0, 0, fmt.Errorf("invalid rate %q", s)
	}
	var per time.Duration
	switch strings.ToLower(unit) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	case "d", "day":
		per = 24 * time.Hour
	default:
		return 0, 0, fmt.Errorf("invalid rate %q", s)
	}
	return count, per, nil
}

// ValidAddress reports whether s is a mailbox local@domain as RFC 5321
// allows it (dot-atom or quoted local part, UTF-8 permitted for SMTPUTF8).
func ValidAddress(s string) bool { return lite.ValidAddress(s) }

// ValidLocalName reports whether s is a plausible local user name without a
// domain ("root", "www-data").
func ValidLocalName(s string) bool { return lite.ValidLocalName(s) }

func validDomain(d string) bool { return lite.ValidDomain(d) }

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
