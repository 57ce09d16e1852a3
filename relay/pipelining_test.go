package relay

import (
	"io"
	"strings"
	"testing"
)

// pipelinedSend sends one PIPELINING group (MAIL, RCPT, DATA in one write,
// as RFC 2920 allows), reads its three replies, then sends body and
// returns the stored body.
func pipelinedSend(t *testing.T, ir *inRelay, c *inClient, from, to, body string) string {
	t.Helper()
	if _, err := io.WriteString(c.conn, "MAIL FROM:<"+from+">\r\nRCPT TO:<"+to+">\r\nDATA\r\n"); err != nil {
		t.Fatal(err)
	}
	c.want(c.read(), 250, "")
	c.want(c.read(), 250, "")
	c.want(c.read(), 354, "")
	w := c.tp.DotWriter()
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, stored := ir.stored(t, inQueuedID(t, c.read()))
	return stored
}

// TestPipelinedBodyUntouchedByQualifier: the bare-name qualifier of local
// clients must leave a message body alone when the client pipelines MAIL,
// RCPT and DATA. It took the reply to MAIL for the reply to DATA, lost
// track of the body and rewrote body lines that look like commands.
func TestPipelinedBodyUntouchedByQualifier(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `aliases {
  root = "ops@example.com"
}`})
	c := inGreeted(t, "tcp", ir.tcp)
	c.want(c.cmd("EHLO client.test"), 250, "")
	body := "Subject: transcript\r\n\r\nThe session went:\r\nMAIL FROM:<cron>\r\nRCPT TO:<root>\r\nDATA\r\nRCPT TO:<root>\r\nend\r\n"
	for i := 0; i < 2; i++ {
		stored := pipelinedSend(t, ir, c, "app@example.org", "bob@example.com", body)
		if _, got, _ := strings.Cut(stored, "\r\n\r\n"); got != "The session went:\r\nMAIL FROM:<cron>\r\nRCPT TO:<root>\r\nDATA\r\nRCPT TO:<root>\r\nend\r\n" {
			t.Fatalf("transaction %d: body changed: %q", i+1, got)
		}
	}
	// Bare names still work in the envelope after that.
	c.want(c.cmd("MAIL FROM:<cron>"), 250, "")
	c.want(c.cmd("RCPT TO:<root>"), 250, "")
}
