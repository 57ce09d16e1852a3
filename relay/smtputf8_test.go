package relay

import "testing"

// TestInNonASCIIAddressNeedsSMTPUTF8: a non-ASCII address is taken only in
// a transaction that declared SMTPUTF8 (RFC 6531 §3.4), so a message that
// needs it is known to need it when it is relayed.
func TestInNonASCIIAddressNeedsSMTPUTF8(t *testing.T) {
	ir := inStartRelay(t, inSetup{})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.want(c.cmd("MAIL FROM:<j\u00f6rg@example.org>"), 553, "5.6.7")
	c.ok("MAIL FROM:<app@example.org>")
	c.want(c.cmd("RCPT TO:<\u00fc@example.net>"), 553, "5.6.7")
	c.want(c.cmd("RSET"), 250, "")
	c.ok("MAIL FROM:<j\u00f6rg@example.org> SMTPUTF8")
	c.ok("RCPT TO:<\u00fc@example.net>")
	c.want(c.cmd("QUIT"), 221, "")
}
