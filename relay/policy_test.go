package relay

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
)

func inPolicy() *Policy {
	return NewPolicy(&config.Config{
		Hostname: "relay.test",
		Aliases: map[string][]string{
			"root":       {"alice@example.com", "bob@example.com"},
			"postmaster": {"alice@example.com"},
		},
	})
}

func inCode(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return fmt.Sprintf("not an SMTPError: %v", err)
	}
	return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
}

func TestPolicyRecipient(t *testing.T) {
	p := inPolicy()
	for _, tc := range []struct {
		to   string
		want string // addresses, or the error's codes
	}{
		{"someone@example.org", "[someone@example.org]"},
		{"root@example.org", "[root@example.org]"},
		{"root", "[alice@example.com bob@example.com]"},
		{"ROOT", "[alice@example.com bob@example.com]"},
		{"root@relay.test", "[alice@example.com bob@example.com]"},
		{"Root@Relay.Test", "[alice@example.com bob@example.com]"},
		{"postmaster@localhost", "[alice@example.com]"},
		{"nobody", "550 5.1.1"},
		{"nobody@relay.test", "550 5.1.1"},
		{"www-data@localhost.localdomain", "550 5.1.1"},
		{`"root"@relay.test`, "550 5.1.1"},
		{"a..b@example.org", "501 5.1.3"},
		{"a@b@", "501 5.1.3"},
		{"bad name", "501 5.1.3"},
		{"", "501 5.1.3"},
		{"@relay.test", "501 5.1.3"},
	} {
		addrs, err := p.Recipient(tc.to)
		got := fmt.Sprint(addrs)
		if err != nil {
			got = inCode(err)
		}
		if got != tc.want {
			t.Errorf("Recipient(%q) = %s, want %s", tc.to, got, tc.want)
		}
	}
}

func TestPolicySender(t *testing.T) {
	p := inPolicy()
	for _, tc := range []struct {
		from  string
		local bool
		want  string
	}{
		{"", false, ""},
		{"a@example.org", false, "a@example.org"},
		{"cron", true, "cron@relay.test"},
		{"cron", false, "501 5.1.7"},
		{"a..b@example.org", true, "501 5.1.7"},
		{"bad name", true, "501 5.1.7"},
		{".", true, "501 5.1.7"},
		{"a..b", true, "501 5.1.7"},
	} {
		got, err := p.Sender(tc.from, tc.local)
		if err != nil {
			got = inCode(err)
		}
		if got != tc.want {
			t.Errorf("Sender(%q, local=%v) = %q, want %q", tc.from, tc.local, got, tc.want)
		}
	}
}

func TestPolicyHeader(t *testing.T) {
	p := inPolicy()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	hdr := []byte("From: app\r\nTo: root, x@example.org\r\nSubject: s\r\n\r\n")
	local := string(p.Header(hdr, "ID1", now, true))
	for _, want := range []string{"To: root@relay.test, x@example.org\r\n", "From: app@relay.test\r\n", "Date: Sun, 01 Jun 2025 12:00:00 +0000\r\n", "Message-ID: <ID1."} {
		if !strings.Contains(local, want) {
			t.Errorf("local header lacks %q:\n%s", want, local)
		}
	}
	// Remote clients' headers are theirs: nothing is added or qualified.
	if remote := string(p.Header(hdr, "ID1", now, false)); remote != string(hdr) {
		t.Errorf("remote header changed:\n%s", remote)
	}
}

// FuzzPolicy checks that no address makes the policy panic, and that what
// it accepts is a valid address.
func FuzzPolicy(f *testing.F) {
	for _, s := range []string{"root", "a@example.org", "root@relay.test", `"a@b"@relay.test`, "@", "a@", "@b", "", "用户@例子.测试", "a@[1.2.3.4]", "\xff@x", ".", "a..b"} {
		f.Add(s, true)
	}
	p := inPolicy()
	f.Fuzz(func(t *testing.T, addr string, local bool) {
		addrs, err := p.Recipient(addr)
		if err == nil {
			for _, a := range addrs {
				if !config.ValidAddress(a) {
					t.Errorf("Recipient(%q) accepted invalid %q", addr, a)
				}
			}
		} else if inCode(err)[0] != '5' {
			t.Errorf("Recipient(%q): %v", addr, err)
		}
		from, err := p.Sender(addr, local)
		if err == nil && from != "" && !config.ValidAddress(from) {
			t.Errorf("Sender(%q) accepted invalid %q", addr, from)
		}
	})
}
