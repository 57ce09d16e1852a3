package relay

import (
	"io"
	"strings"
	"testing"
)

// TestHeaderNearLimitStaysDeliverable: a header section just under
// the inbound limit grows by our Received:, Message-ID: and Date: fields.
// If such a message is accepted, the From: rewriting of an upstream with
// from_header = "rewrite" must still be able to read its header section;
// otherwise the message is deferred on every attempt and never delivered.
func TestHeaderNearLimitStaysDeliverable(t *testing.T) {
	ir := inStartRelay(t, inSetup{})
	c := inGreeted(t, "tcp", ir.tcp)
	c.want(c.cmd("EHLO client.test"), 250, "")
	var hdr strings.Builder
	hdr.WriteString("From: app@example.org\r\nTo: bob@example.com\r\n")
	line := "X-Filler: " + strings.Repeat("x", 990) + "\r\n"
	for hdr.Len()+len(line)+2+40 < maxHeaderSection {
		hdr.WriteString(line)
	}
	for hdr.Len()+2 < maxHeaderSection-40 {
		hdr.WriteString("X-F: y\r\n")
	}
	c.ok("MAIL FROM:<app@example.org>")
	c.ok("RCPT TO:<bob@example.com>")
	rep := c.data(hdr.String() + "\r\nbody\r\n")
	if rep.code != 250 {
		if rep.code != 552 {
			t.Fatalf("reply %v, want 250 or 552", rep)
		}
		return // refused at the door: the client knows
	}
	id := inQueuedID(t, rep)
	rc, err := rewriteFrom(func() (io.ReadCloser, error) { return ir.r.Spool().Body(id) }, "relay@example.net")
	if err != nil {
		t.Fatalf("accepted message cannot have its From rewritten: %v", err)
	}
	rc.Close()
}
