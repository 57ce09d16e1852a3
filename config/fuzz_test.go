package config

import (
	"os"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that every
// rejection is a *Error whose diagnostics can be printed.
func FuzzParse(f *testing.F) {
	f.Add([]byte(fullConfig))
	f.Add([]byte(minimal))
	if src, err := os.ReadFile("../relay.hcl"); err == nil {
		f.Add(src)
	}
	f.Add([]byte(`aliases { a = "b" b = "a" }`))
	f.Add([]byte(`aliases { a = ["x@y", 1, null] }`))
	f.Add([]byte(`listen { address = "unix:" }`))
	f.Add([]byte(`upstream "x" { provider = "ses" port = -1 tls = "none" host = "[::1]" }`))
	f.Add([]byte(`limits { max_message_size = "NaN" max_recipients = 0 }`))
	f.Add([]byte(`route { upstreams = [] }`))
	f.Add([]byte("hostname = \"\xff\""))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse("/fuzz/relay.hcl", src)
		if err != nil {
			_ = err.Error()
			return
		}
		if cfg == nil {
			t.Fatal("nil config without an error")
		}
	})
}

// FuzzParseSize and FuzzParseRate check the unit parsers.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"25MiB", "1", "NaN", "-0", "1e400", "0x1p4KiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/hour", "1/s", "/", "9999999999999999999/day"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, per, err := ParseRate(s)
		if err == nil && (n < 1 || per <= 0) {
			t.Fatalf("ParseRate(%q) = %d, %v", s, n, per)
		}
	})
}
