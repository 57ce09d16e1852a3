package config

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ParseSize reads a byte count: a plain number, or a number with a unit
// (KiB, MiB, GiB, or the decimal KB, MB, GB).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
		{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
		{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			mult = u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	// !(f >= 0) also refuses NaN, which no comparison catches otherwise.
	if err != nil || !(f >= 0) || f*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	return int64(f * float64(mult)), nil
}

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
