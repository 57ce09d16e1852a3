package relay

import (
	"fmt"
	"testing"

	"github.com/outbox-mta/outbox/config"
)

func TestPolicyCatchall(t *testing.T) {
	p := NewPolicy(&config.Config{
		Hostname:      "relay.test",
		Aliases:       map[string][]string{"root": {"ops@example.com"}},
		LocalCatchall: []string{"admin@example.com"},
	})
	for _, tc := range []struct{ to, want string }{
		{"root", "[ops@example.com]"},
		{"www-data", "[admin@example.com]"},
		{"nobody@relay.test", "[admin@example.com]"},
		{"alice@localhost", "[admin@example.com]"},
		{"alice@example.org", "[alice@example.org]"},
		{"bad name", "501 5.1.3"},
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

// TestInCatchall: mail from cron (www-data, a bare name on the local
// socket) to local names with no alias reaches local_catchall; the sender
// stays www-data@hostname, and each recipient keeps the name asked for as
// its ORCPT.
func TestInCatchall(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `
aliases { root = "ops@example.com" }
local_catchall = "admin@example.com"
`})
	c := inGreeted(t, "unix", ir.sock)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<www-data>")
	c.ok("RCPT TO:<www-data>")
	c.ok("RCPT TO:<nobody@localhost>")
	c.ok("RCPT TO:<root>")
	id := inQueuedID(t, c.data("Subject: x\r\n\r\nx\r\n"))
	m, _ := ir.stored(t, id)
	if m.From != "www-data@"+inHostname {
		t.Errorf("sender %q, want www-data@%s unchanged", m.From, inHostname)
	}
	var got []string
	for _, r := range m.Recipients {
		got = append(got, r.Address+" "+r.ORCPT)
	}
	want := "[admin@example.com rfc822;www-data@relay.test admin@example.com rfc822;nobody@localhost ops@example.com rfc822;root@relay.test]"
	if fmt.Sprint(got) != want {
		t.Errorf("recipients %v\nwant %s", got, want)
	}
}
