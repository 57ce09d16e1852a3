package relay

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/spool"
)

func TestInEHLO(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `limits { max_message_size = "1MiB" }`})
	for _, network := range []string{"tcp", "unix"} {
		addr := ir.tcp
		if network == "unix" {
			addr = ir.sock
		}
		c := inGreeted(t, network, addr)
		r := c.cmd("EHLO client.test")
		c.want(r, 250, "")
		caps := map[string]bool{}
		for _, l := range r.lines[1:] {
			caps[strings.ToUpper(l)] = true
		}
		for _, want := range []string{"SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES", "DSN", "CHUNKING"} {
			if !caps[want] {
				t.Errorf("%s: EHLO lacks %s: %q", network, want, r.lines)
			}
		}
		for l := range caps {
			if strings.HasPrefix(l, "AUTH") || l == "STARTTLS" {
				t.Errorf("%s: EHLO offers %s on a listener without TLS or users", network, l)
			}
		}
		c.want(c.cmd("QUIT"), 221, "")
	}
}

func TestInAccept(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	body := "From: app\r\nTo: root, someone@example.org\r\nSubject: hi\r\n\r\nline 1\r\n.leading dot\r\n"
	id := inSend(t, c, "app@example.org", []string{"someone@example.org"}, body)

	// The 250 came after the commit: the message is there without waiting.
	m, got := ir.stored(t, id)
	if m.From != "app@example.org" || len(m.Recipients) != 1 || m.Recipients[0].Address != "someone@example.org" {
		t.Errorf("envelope %+v", m)
	}
	if m.Recipients[0].Status != spool.Pending {
		t.Errorf("status %q, want pending", m.Recipients[0].Status)
	}
	if !strings.HasPrefix(m.Submitter, "127.0.0.1:") {
		t.Errorf("Submitter = %q, want the client address", m.Submitter)
	}
	if m.Size != int64(len(got)) {
		t.Errorf("Size %d, body %d bytes", m.Size, len(got))
	}
	if !strings.HasPrefix(got, "Received: ") {
		t.Fatalf("body does not start with our Received header:\n%s", got)
	}
	rcvd := inHeader(got, "Received")
	for _, want := range []string{"from client.test", "[127.0.0.1]", "by " + inHostname, id, "for <someone@example.org>"} {
		if !strings.Contains(rcvd, want) {
			t.Errorf("Received: %q lacks %q", rcvd, want)
		}
	}
	// A loopback client is local: bare names get our hostname, and the
	// missing Date and Message-ID are added.
	if got, want := inHeader(got, "To"), "root@"+inHostname+", someone@example.org"; got != want {
		t.Errorf("To: %q, want %q", got, want)
	}
	if got, want := inHeader(got, "From"), "app@"+inHostname; got != want {
		t.Errorf("From: %q, want %q", got, want)
	}
	if d := inHeader(got, "Date"); d == "" {
		t.Error("no Date added")
	} else if _, err := time.Parse(time.RFC1123Z, d); err != nil {
		t.Errorf("Date %q: %v", d, err)
	}
	if mid := inHeader(got, "Message-ID"); !strings.HasPrefix(mid, "<") || !strings.HasSuffix(mid, "@"+inHostname+">") {
		t.Errorf("Message-ID %q", mid)
	}
	if !strings.HasSuffix(got, "\r\n\r\nline 1\r\n.leading dot\r\n") {
		t.Errorf("body changed:\n%q", got)
	}

	// Existing Date and Message-ID are kept, and the session goes on.
	body2 := "Date: Mon, 02 Jan 2006 15:04:05 +0000\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n"
	id2 := inSend(t, c, "app@example.org", []string{"someone@example.org"}, body2)
	_, got2 := ir.stored(t, id2)
	if inHeader(got2, "Date") != "Mon, 02 Jan 2006 15:04:05 +0000" || inHeader(got2, "Message-ID") != "<x@y>" {
		t.Errorf("Date or Message-ID changed:\n%s", got2)
	}
	if strings.Count(got2, "\r\nDate:")+strings.Count(got2, "\r\nMessage-ID:") != 2 {
		t.Errorf("duplicate Date or Message-ID:\n%s", got2)
	}
	c.want(c.cmd("QUIT"), 221, "")
}

func TestInUnixSocket(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "unix", ir.sock)
	c.ok("EHLO localhost")
	c.ok("MAIL FROM:<cron@%s>", inHostname)
	c.ok("RCPT TO:<root@%s>", inHostname)
	id := inQueuedID(t, c.data("Subject: cron\r\n\r\nout\r\n"))
	m, body := ir.stored(t, id)
	if m.From != "cron@"+inHostname {
		t.Errorf("From = %q, want cron@%s", m.From, inHostname)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	who := fmt.Sprintf("%d (%s)", os.Getuid(), u.Username)
	rcvd := inHeader(body, "Received")
	if !strings.Contains(rcvd, "userid "+who) || !strings.Contains(rcvd, id) {
		t.Errorf("Received: %q, want the uid and user name %q", rcvd, who)
	}
	if !strings.Contains(m.Submitter, who) {
		t.Errorf("Submitter %q, want %q", m.Submitter, who)
	}
}

func TestInMessageSize(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `limits { max_message_size = "1KiB" }`})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")

	// Declared too big in MAIL FROM.
	c.want(c.cmd("MAIL FROM:<a@example.org> SIZE=4096"), 552, "5.3.4")

	// Too big in fact.
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b@example.org>")
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 40)
	c.want(c.data(big), 552, "5.3.4")
	if n := ir.count(t); n != 0 {
		t.Errorf("%d messages stored after 552", n)
	}

	// The session is still usable, and a message that fits goes through.
	id := inSend(t, c, "a@example.org", []string{"b@example.org"}, "Subject: small\r\n\r\nhi\r\n")
	ir.stored(t, id)

	// BDAT past the limit.
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b@example.org>")
	c.want(c.bdat(big, true), 552, "5.3.4")
	if n := ir.count(t); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

func TestInMaxRecipients(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `limits { max_recipients = 2 }` + inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b1@example.org>")
	c.ok("RCPT TO:<b2@example.org>")
	c.want(c.cmd("RCPT TO:<b3@example.org>"), 452, "4.5.3")
	id := inQueuedID(t, c.data("Subject: x\r\n\r\nx\r\n"))
	if m, _ := ir.stored(t, id); len(m.Recipients) != 2 {
		t.Errorf("%d recipients stored, want 2", len(m.Recipients))
	}

	// An alias that expands past the limit counts as its addresses.
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b1@example.org>")
	c.want(c.cmd("RCPT TO:<root@%s>", inHostname), 452, "4.5.3")
}

func TestInAddressSyntax(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	for _, tc := range []struct {
		from string
		enh  []string
	}{
		{"a..b@example.org", []string{"5.1.7"}},
		{"a@-bad-.example", []string{"5.1.7"}},
		{"a b@example.org", []string{"5.1.7", "5.5.2"}},
	} {
		r := c.cmd("MAIL FROM:<%s>", tc.from)
		if r.code != 501 || !inOneOf(r.enh, tc.enh) {
			t.Errorf("MAIL FROM:<%s>: %v, want 501 %v", tc.from, r, tc.enh)
		}
	}
	c.ok("MAIL FROM:<a@example.org>")
	for _, tc := range []struct {
		to  string
		enh []string
	}{
		{"a..b@example.org", []string{"5.1.3"}},
		{"b@exa_mple..org", []string{"5.1.3"}},
		{"b@", []string{"5.1.3", "5.5.2"}},
		{"@example.org", []string{"5.1.3", "5.5.2"}},
		{"a b@example.org", []string{"5.1.3", "5.5.2"}},
		{"bad<name", []string{"5.1.3", "5.5.2"}},
	} {
		r := c.cmd("RCPT TO:<%s>", tc.to)
		if r.code != 501 || !inOneOf(r.enh, tc.enh) {
			t.Errorf("RCPT TO:<%s>: %v, want 501 %v", tc.to, r, tc.enh)
		}
		if tc.enh[0] == "5.1.3" && r.enh == "5.1.3" && !strings.Contains(strings.Join(r.lines, " "), tc.to) {
			t.Errorf("RCPT TO:<%s>: %v does not name the address", tc.to, r)
		}
	}
	// Nothing was accepted, so DATA is refused.
	if r := c.cmd("DATA"); r.code/100 != 5 {
		t.Errorf("DATA without recipients: %v", r)
	}
}

func inOneOf(s string, list []string) bool {
	for _, l := range list {
		if s == l {
			return true
		}
	}
	return false
}

func TestInUnresolvedLocalName(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `aliases { postmaster = "ops@example.com" }`})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<a@example.org>")
	for _, to := range []string{"root@" + inHostname, "ROOT@" + strings.ToUpper(inHostname), "www-data@localhost"} {
		r := c.cmd("RCPT TO:<%s>", to)
		c.want(r, 550, "5.1.1")
		if !strings.Contains(strings.Join(r.lines, " "), "aliases") {
			t.Errorf("RCPT TO:<%s>: %v does not name the aliases block", to, r)
		}
	}
	// The alias that exists resolves, in any case.
	c.ok("RCPT TO:<PostMaster@%s>", inHostname)
	// Other domains are relayed unchanged.
	c.ok("RCPT TO:<root@example.com>")
	id := inQueuedID(t, c.data("Subject: x\r\n\r\nx\r\n"))
	m, _ := ir.stored(t, id)
	var got []string
	for _, r := range m.Recipients {
		got = append(got, r.Address)
	}
	if fmt.Sprint(got) != "[ops@example.com root@example.com]" {
		t.Errorf("recipients %v", got)
	}
}

func TestInAliasExpansion(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<root@%s>", inHostname)
	id := inQueuedID(t, c.data("Subject: x\r\n\r\nx\r\n"))
	m, _ := ir.stored(t, id)
	if len(m.Recipients) != 2 {
		t.Fatalf("recipients %+v, want two", m.Recipients)
	}
	for i, want := range []string{"alice@example.com", "bob@example.com"} {
		r := m.Recipients[i]
		if r.Address != want {
			t.Errorf("recipient %d = %q, want %q", i, r.Address, want)
		}
		// The original recipient is kept for DSNs.
		if !strings.EqualFold(r.ORCPT, "rfc822;root@"+inHostname) {
			t.Errorf("recipient %s ORCPT = %q, want rfc822;root@%s", r.Address, r.ORCPT, inHostname)
		}
	}

	// postmaster → root → two addresses; asking for both keeps each once
	// per RCPT, each with its own ORCPT.
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<postmaster@%s>", inHostname)
	id = inQueuedID(t, c.data("Subject: x\r\n\r\nx\r\n"))
	m, _ = ir.stored(t, id)
	if len(m.Recipients) != 2 || !strings.EqualFold(m.Recipients[0].ORCPT, "rfc822;postmaster@"+inHostname) {
		t.Errorf("recipients %+v", m.Recipients)
	}
}

func TestInDSNParams(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<a@example.org> RET=HDRS ENVID=QQ314159 BODY=8BITMIME")
	c.ok("RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Bb@example.org")
	c.ok("RCPT TO:<c@example.org> NOTIFY=NEVER")
	c.ok("RCPT TO:<root@%s> NOTIFY=DELAY ORCPT=rfc822;boss@example.org", inHostname)
	id := inQueuedID(t, c.data("Subject: dsn\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"))
	m, _ := ir.stored(t, id)
	if m.EnvID != "QQ314159" || m.Ret != "HDRS" || m.BodyType != "8BITMIME" {
		t.Errorf("EnvID %q Ret %q BodyType %q", m.EnvID, m.Ret, m.BodyType)
	}
	if len(m.Recipients) != 4 {
		t.Fatalf("recipients %+v", m.Recipients)
	}
	b, cc, alice := m.Recipients[0], m.Recipients[1], m.Recipients[2]
	if fmt.Sprint(b.Notify) != "[SUCCESS FAILURE]" || !strings.EqualFold(b.ORCPT, "rfc822;orig+b@example.org") {
		t.Errorf("b: Notify %v ORCPT %q", b.Notify, b.ORCPT)
	}
	if fmt.Sprint(cc.Notify) != "[NEVER]" || cc.ORCPT != "" {
		t.Errorf("c: Notify %v ORCPT %q", cc.Notify, cc.ORCPT)
	}
	// The client's ORCPT wins over the alias name.
	if fmt.Sprint(alice.Notify) != "[DELAY]" || !strings.EqualFold(alice.ORCPT, "rfc822;boss@example.org") {
		t.Errorf("alias: Notify %v ORCPT %q", alice.Notify, alice.ORCPT)
	}

	// SMTPUTF8 is recorded.
	c.ok("MAIL FROM:<José@example.org> SMTPUTF8")
	c.ok("RCPT TO:<用户@例子.测试>")
	id = inQueuedID(t, c.data("Subject: utf8\r\n\r\nx\r\n"))
	m, _ = ir.stored(t, id)
	if !m.UTF8 || m.From != "José@example.org" || m.Recipients[0].Address != "用户@例子.测试" {
		t.Errorf("SMTPUTF8 message: %+v", m)
	}
}

func TestInConnectionCap(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: `limits { max_connections = 2 }`})
	c1 := inGreeted(t, "tcp", ir.tcp)
	c2 := inGreeted(t, "tcp", ir.tcp)
	c3 := inDial(t, "tcp", ir.tcp)
	r := c3.read()
	c3.want(r, 421, "")
	if _, err := c3.tp.ReadLine(); err == nil {
		t.Error("connection stays open after 421")
	}
	c2.ok("EHLO client.test")

	// Once a client leaves, its slot is free again.
	c1.want(c1.cmd("QUIT"), 221, "")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := inDial(t, "tcp", ir.tcp)
		r := c.read()
		c.conn.Close()
		if r.code == 220 {
			break
		}
		if r.code != 421 || time.Now().After(deadline) {
			t.Fatalf("after QUIT: %v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInAllowNetworks(t *testing.T) {
	ir := inStartRelay(t, inSetup{listen: `allow_networks = ["10.0.0.0/8"]`})
	c := inDial(t, "tcp", ir.tcp)
	c.want(c.read(), 554, "5.7.1")
	if _, err := c.tp.ReadLine(); err == nil {
		t.Error("connection stays open after 554")
	}
	// The unix socket is not subject to allow_networks.
	u := inGreeted(t, "unix", ir.sock)
	u.ok("EHLO localhost")
}

func TestInAuthSTARTTLS(t *testing.T) {
	dir := t.TempDir()
	pool := inWriteCert(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	ir := inStartRelay(t, inSetup{listen: fmt.Sprintf(`
  allow_networks = ["10.0.0.0/8"]
  tls_cert = %q
  tls_key  = %q
  auth = { alice = %q }`, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), hash)})

	c := inGreeted(t, "tcp", ir.tcp)
	r := c.ok("EHLO client.test")
	if !inHasCap(r, "STARTTLS") || inHasCap(r, "AUTH") {
		t.Errorf("EHLO before TLS: %q; want STARTTLS and no AUTH", r.lines)
	}
	c.want(c.cmd("MAIL FROM:<a@example.org>"), 530, "5.7.0")

	c.want(c.cmd("STARTTLS"), 220, "")
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pool, ServerName: inHostname})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.tp = tc, textproto.NewConn(tc)
	r = c.ok("EHLO client.test")
	if !inHasCap(r, "AUTH PLAIN") {
		t.Errorf("EHLO after TLS: %q; want AUTH PLAIN", r.lines)
	}
	c.want(c.cmd("MAIL FROM:<a@example.org>"), 530, "5.7.0")
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	c.want(c.cmd("AUTH PLAIN %s", plain("alice", "wrong")), 535, "5.7.8")
	c.want(c.cmd("AUTH PLAIN %s", plain("mallory", "s3cret")), 535, "5.7.8")
	c.want(c.cmd("AUTH PLAIN %s", plain("alice", "s3cret")), 235, "")
	id := inSend(t, c, "alice@example.org", []string{"b@example.org"}, "Subject: authed\r\n\r\nhi\r\n")
	m, body := ir.stored(t, id)
	if !strings.Contains(m.Submitter, "auth=alice") {
		t.Errorf("Submitter %q lacks the AUTH identity", m.Submitter)
	}
	if rcvd := inHeader(body, "Received"); !strings.Contains(rcvd, "with ESMTPSA") {
		t.Errorf("Received: %q, want ESMTPSA", rcvd)
	}
}

func inHasCap(r inReply, cap string) bool {
	for _, l := range r.lines[1:] {
		if strings.EqualFold(l, cap) || strings.HasPrefix(strings.ToUpper(l), strings.ToUpper(cap)+" ") {
			return true
		}
	}
	return false
}

// inWriteCert writes cert.pem and key.pem for inHostname into dir and
// returns a pool that trusts them.
func inWriteCert(t testing.TB, dir string) *x509.CertPool {
	t.Helper()
	ca := testpki.NewCA(t, "inbound test CA")
	testpki.WriteKeyPair(t, dir, ca.ServerCert(t, inHostname))
	return ca.Pool
}

func TestInSpoolFailure(t *testing.T) {
	ir := inStartRelay(t, inSetup{mod: func(r *Relay) { r.in.store = inFailStore{} }})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b@example.org>")
	c.want(c.data("Subject: x\r\n\r\nx\r\n"), 451, "4.3.0")
	// BDAT fails the same way.
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b@example.org>")
	c.want(c.bdat("Subject: x\r\n\r\nx\r\n", true), 451, "4.3.0")
	// The session survives for a retry.
	c.want(c.cmd("RSET"), 250, "")
	if n := ir.count(t); n != 0 {
		t.Errorf("%d messages in the spool", n)
	}
}

// bdat sends one BDAT chunk and returns its reply.
func (c *inClient) bdat(chunk string, last bool) inReply {
	c.t.Helper()
	cmd := fmt.Sprintf("BDAT %d", len(chunk))
	if last {
		cmd += " LAST"
	}
	if _, err := io.WriteString(c.conn, cmd+"\r\n"+chunk); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

func TestInBDAT(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	c.ok("MAIL FROM:<a@example.org>")
	c.ok("RCPT TO:<b@example.org>")
	// Chunks cut anywhere, even inside the header; a lone "." line is data.
	parts := []string{"Subj", "ect: chunked\r\nTo: root\r\n\r\nline 1\r\n.\r\n", "line 3\r\n"}
	c.want(c.bdat(parts[0], false), 250, "")
	c.want(c.bdat(parts[1], false), 250, "")
	id := inQueuedID(t, c.bdat(parts[2], true))
	m, body := ir.stored(t, id)
	if len(m.Recipients) != 1 || m.Recipients[0].Address != "b@example.org" {
		t.Errorf("recipients %+v", m.Recipients)
	}
	if !strings.HasSuffix(body, "\r\n\r\nline 1\r\n.\r\nline 3\r\n") || inHeader(body, "Subject") != "chunked" {
		t.Errorf("body:\n%q", body)
	}
	if inHeader(body, "To") != "root@"+inHostname {
		t.Errorf("To: %q", inHeader(body, "To"))
	}

	// Pipelined: commands and chunks in one write.
	var b bytes.Buffer
	b.WriteString("MAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.org>\r\n")
	chunk := "Subject: piped\r\n\r\nbody\r\n"
	fmt.Fprintf(&b, "BDAT %d LAST\r\n%s", len(chunk), chunk)
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	c.want(c.read(), 250, "")
	c.want(c.read(), 250, "")
	id = inQueuedID(t, c.read())
	if _, body := ir.stored(t, id); !strings.HasSuffix(body, chunk) {
		t.Errorf("pipelined body:\n%q", body)
	}
}

func TestInPipelining(t *testing.T) {
	ir := inStartRelay(t, inSetup{extra: inAliases})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	if _, err := io.WriteString(c.conn, "MAIL FROM:<a@example.org>\r\nRCPT TO:<nobody@"+inHostname+">\r\nRCPT TO:<b@example.org>\r\nDATA\r\n"); err != nil {
		t.Fatal(err)
	}
	c.want(c.read(), 250, "")
	c.want(c.read(), 550, "5.1.1")
	c.want(c.read(), 250, "")
	c.want(c.read(), 354, "")
	w := c.tp.DotWriter()
	io.WriteString(w, "Subject: p\r\n\r\nx\r\n")
	w.Close()
	id := inQueuedID(t, c.read())
	if m, _ := ir.stored(t, id); len(m.Recipients) != 1 {
		t.Errorf("recipients %+v", m.Recipients)
	}
}

func inMetricsLine(addr string) string {
	if addr == "" {
		return ""
	}
	return fmt.Sprintf("metrics_address = %q", addr)
}
