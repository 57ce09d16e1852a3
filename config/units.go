package config

import (
	"fmt"
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
