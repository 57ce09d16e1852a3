package sendmailshim

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/maildrop"
)

// droppedEnvelope returns the envelope of the one file in the maildrop.
func droppedEnvelope(t *testing.T, dir string) *maildrop.Envelope {
	t.Helper()
	md := filepath.Join(dir, "var", "maildrop")
	names, err := maildrop.List(md)
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop = %v (%v), want one file", names, err)
	}
	env, body, err := maildrop.Read(filepath.Join(md, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	return env
}

// TestSMTPUTF8IntoMaildrop: with the daemon down, a -bs transaction that
// declared SMTPUTF8 (and BODY=8BITMIME) is written to the maildrop with
// both, as the daemon would have been told them over SMTP.
func TestSMTPUTF8IntoMaildrop(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	c, done := smtpSession(t, cfg)
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.com", &smtp.MailOptions{UTF8: true, Body: smtp.Body8BitMIME}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.com", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: Gr\u00fc\u00dfe\r\n\r\n\u00c4pfel\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	<-done
	if env := droppedEnvelope(t, dir); !env.SMTPUTF8 || env.BodyType != "8BITMIME" {
		t.Errorf("envelope %+v, want SMTPUTF8 and BODY=8BITMIME", env)
	}
}

// TestNonASCIIRecipientIntoMaildrop: a non-ASCII address needs SMTPUTF8,
// which the shim declares to the daemon; with the daemon down the
// maildrop file says so.
func TestNonASCIIRecipientIntoMaildrop(t *testing.T) {
	dir := testDir(t)
	cfg := writeConfig(t, dir, "")
	code, _, stderr := run(t, cfg, "Subject: hi\n\nbody\n", "-i", "j\u00f6rg@example.com")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if env := droppedEnvelope(t, dir); !env.SMTPUTF8 {
		t.Errorf("envelope %+v, want SMTPUTF8", env)
	}
}
