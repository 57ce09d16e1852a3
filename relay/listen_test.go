package relay

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/outbox-mta/outbox/config"
)

// TestBareNamesOverSMTP: a loopback client may use bare names in the
// envelope; they resolve through the aliases, and an unknown one gets
// 550 5.1.1 rather than a syntax error.
func TestBareNamesOverSMTP(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `aliases {
  root       = "ops@example.com"
  postmaster = "root"
}`})
	for _, network := range []string{"tcp", "unix"} {
		addr := ir.tcp
		if network == "unix" {
			addr = ir.sock
		}
		c := inGreeted(t, network, addr)
		c.want(c.cmd("EHLO client.test"), 250, "")
		c.want(c.cmd("MAIL FROM:<cron>"), 250, "")
		c.want(c.cmd("RCPT TO:<root>"), 250, "")
		c.want(c.cmd("RCPT TO:<Postmaster>"), 250, "")
		c.want(c.cmd("RCPT TO:<nobody>"), 550, "5.1.1")
		id := inQueuedID(t, c.data("Subject: bare\r\n\r\nRCPT TO:<root>\r\n"))
		m, body := ir.stored(t, id)
		if m.From != "cron@"+inHostname {
			t.Errorf("%s: sender %q, want cron@%s", network, m.From, inHostname)
		}
		if len(m.Recipients) != 2 || m.Recipients[0].Address != "ops@example.com" || m.Recipients[0].ORCPT != "rfc822;root@"+inHostname {
			t.Errorf("%s: recipients %+v", network, m.Recipients)
		}
		if !strings.HasSuffix(body, "\r\nRCPT TO:<root>\r\n") {
			t.Errorf("%s: body changed: %q", network, body)
		}
	}
}

func TestNoIPv6(t *testing.T) {
	v6 := config.Listen{Network: "tcp", Addr: "[::1]:25"}
	v4 := config.Listen{Network: "tcp", Addr: "127.0.0.1:25"}
	notAvail := &net.OpError{Op: "listen", Net: "tcp", Err: &os.SyscallError{Syscall: "bind", Err: syscall.EADDRNOTAVAIL}}
	inUse := &net.OpError{Op: "listen", Net: "tcp", Err: &os.SyscallError{Syscall: "bind", Err: syscall.EADDRINUSE}}
	for _, tc := range []struct {
		lc   config.Listen
		err  error
		want bool
	}{
		{v6, notAvail, true},
		{v6, inUse, false},
		{v4, notAvail, false},
		{config.Listen{Network: "tcp", Addr: "[2001:db8::1]:25"}, notAvail, false},
		{config.Listen{Network: "unix", Addr: "/run/x.sock"}, notAvail, false},
	} {
		if got := noIPv6(tc.lc, tc.err); got != tc.want {
			t.Errorf("noIPv6(%s, %v) = %v, want %v", tc.lc.Addr, tc.err, got, tc.want)
		}
	}
}
