package relay

import (
	"bufio"
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/outbox-mta/outbox/internal/dsn"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files in testdata")

var (
	dsnNow     = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	dsnArrival = time.Date(2025, 2, 27, 23, 0, 1, 0, time.FixedZone("", 8*3600))
)

const dsnOriginal = "Received: from localhost by relay.example.internal\r\n" +
	"From: App <app@example.org>\r\n" +
	"To: bob@example.com, carol@example.net\r\n" +
	"Subject: Nightly report\r\n" +
	"Message-ID: <orig-1@example.org>\r\n" +
	"\r\n" +
	"The body of the original message.\r\n" +
	"Second line.\r\n"

func failedDSN() *DSN {
	return &DSN{
		ReportingMTA: "relay.example.internal",
		From:         "Mail Delivery System <MAILER-DAEMON@relay.example.internal>",
		To:           "app@example.org",
		EnvID:        "QQ314159",
		Ret:          "FULL",
		ArrivalDate:  dsnArrival,
		Now:          dsnNow,
		Original:     strings.NewReader(dsnOriginal),
		Recipients: []DSNRecipient{{
			Address:     "bob@example.com",
			ORCPT:       "rfc822;Bob@Example.com",
			Action:      "failed",
			Status:      "5.1.1",
			Diagnostic:  "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
			RemoteMTA:   "smtp.example.com",
			LastAttempt: dsnNow.Add(-time.Minute),
		}, {
			Address:        "carol@example.net",
			Action:         "failed",
			Status:         "4.4.7",
			Diagnostic:     "delivery time expired after 5 days",
			DiagnosticType: "x-outbox",
		}},
	}
}

// report is a parsed report: its header, and each part's header and
// decoded body.
type report struct {
	header message.Header
	parts  []reportPart
}

type reportPart struct {
	header message.Header
	body   []byte
}

func parseReport(t testing.TB, b []byte) report {
	t.Helper()
	e, err := message.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("report does not parse: %v\n%s", err, b)
	}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatalf("report is not multipart:\n%s", b)
	}
	r := report{header: e.Header}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading part %d: %v", len(r.parts)+1, err)
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatalf("reading part %d: %v", len(r.parts)+1, err)
		}
		r.parts = append(r.parts, reportPart{p.Header, body})
	}
	return r
}

// parseStatus splits a message/delivery-status body into its per-message
// block and per-recipient blocks.
func parseStatus(t testing.TB, body []byte) []textproto.Header {
	t.Helper()
	var blocks []textproto.Header
	br := bufio.NewReader(bytes.NewReader(body))
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return blocks
		}
		h, err := textproto.ReadHeader(br)
		if err != nil {
			t.Fatalf("delivery-status block %d: %v\n%s", len(blocks), err, body)
		}
		blocks = append(blocks, h)
	}
}

func wantFields(t *testing.T, what string, h textproto.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if v == "" {
			if h.Has(k) {
				t.Errorf("%s: unexpected %s: %q", what, k, h.Get(k))
			}
			continue
		}
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
}

func buildReport(t *testing.T, d *DSN) (report, []byte) {
	t.Helper()
	b, err := d.Build()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("bare LF in report:\n%q", b)
	}
	return parseReport(t, b), b
}

func TestDSNFailed(t *testing.T) {
	r, _ := buildReport(t, failedDSN())

	mt, params, err := r.header.ContentType()
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" || params["boundary"] == "" {
		t.Errorf("Content-Type = %q %v %v", mt, params, err)
	}
	wantFields(t, "header", r.header.Header, map[string]string{
		"Date":           "Tue, 04 Mar 2025 05:06:07 +0000",
		"From":           "Mail Delivery System <MAILER-DAEMON@relay.example.internal>",
		"To":             "app@example.org",
		"Subject":        "Undelivered Mail Returned to Sender",
		"Auto-Submitted": "auto-replied",
		"MIME-Version":   "1.0",
	})
	if id := r.header.Get("Message-ID"); !regexp.MustCompile(`^<[0-9a-f]+@relay\.example\.internal>$`).MatchString(id) {
		t.Errorf("Message-ID = %q", id)
	}
	if len(r.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(r.parts))
	}

	mt, params, _ = r.parts[0].header.ContentType()
	if mt != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("part 1 Content-Type = %q %v", mt, params)
	}
	text := string(r.parts[0].body)
	for _, s := range []string{
		"could not be delivered",
		"<bob@example.com>: host smtp.example.com said: 550 5.1.1 <bob@example.com>:",
		"User unknown in virtual mailbox table",
		"<carol@example.net>: delivery time expired after 5 days",
	} {
		if !strings.Contains(strings.Join(strings.Fields(text), " "), s) {
			t.Errorf("explanation lacks %q:\n%s", s, text)
		}
	}

	if mt, _, _ := r.parts[1].header.ContentType(); mt != "message/delivery-status" {
		t.Errorf("part 2 Content-Type = %q", mt)
	}
	blocks := parseStatus(t, r.parts[1].body)
	if len(blocks) != 3 {
		t.Fatalf("%d delivery-status blocks, want 3:\n%s", len(blocks), r.parts[1].body)
	}
	wantFields(t, "per-message", blocks[0], map[string]string{
		"Reporting-MTA":        "dns; relay.example.internal",
		"Original-Envelope-Id": "QQ314159",
		"Arrival-Date":         "Thu, 27 Feb 2025 23:00:01 +0800",
	})
	wantFields(t, "bob", blocks[1], map[string]string{
		"Original-Recipient": "rfc822;Bob@Example.com",
		"Final-Recipient":    "rfc822; bob@example.com",
		"Action":             "failed",
		"Status":             "5.1.1",
		"Remote-MTA":         "dns; smtp.example.com",
		"Diagnostic-Code":    "smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in virtual mailbox table",
		"Last-Attempt-Date":  "Tue, 04 Mar 2025 05:05:07 +0000",
		"Will-Retry-Until":   "",
	})
	wantFields(t, "carol", blocks[2], map[string]string{
		"Original-Recipient": "",
		"Final-Recipient":    "rfc822; carol@example.net",
		"Action":             "failed",
		"Status":             "4.4.7",
		"Remote-MTA":         "",
		"Diagnostic-Code":    "x-outbox; delivery time expired after 5 days",
		"Last-Attempt-Date":  "",
	})

	if mt, _, _ := r.parts[2].header.ContentType(); mt != "message/rfc822" {
		t.Errorf("part 3 Content-Type = %q", mt)
	}
	if got := string(r.parts[2].body); got != dsnOriginal {
		t.Errorf("returned original = %q, want %q", got, dsnOriginal)
	}
}

func TestDSNDelayed(t *testing.T) {
	until := dsnNow.Add(96 * time.Hour)
	d := failedDSN()
	d.EnvID = ""
	d.Ret = ""
	d.Recipients = []DSNRecipient{{
		Address:        "bob@example.com",
		Action:         "delayed",
		Status:         "4.7.0",
		Diagnostic:     "421 4.7.0 Try again later",
		RemoteMTA:      "smtp.example.com",
		LastAttempt:    dsnNow,
		WillRetryUntil: until,
	}}
	r, _ := buildReport(t, d)
	if s := r.header.Get("Subject"); s != "Delayed Mail (still being retried)" {
		t.Errorf("Subject = %q", s)
	}
	if len(r.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(r.parts))
	}
	text := strings.Join(strings.Fields(string(r.parts[0].body)), " ")
	for _, s := range []string{"WARNING ONLY", "until Sat, 08 Mar 2025 05:06:07 +0000", "421 4.7.0 Try again later"} {
		if !strings.Contains(text, s) {
			t.Errorf("explanation lacks %q:\n%s", s, r.parts[0].body)
		}
	}
	blocks := parseStatus(t, r.parts[1].body)
	if len(blocks) != 2 {
		t.Fatalf("%d blocks, want 2", len(blocks))
	}
	wantFields(t, "per-message", blocks[0], map[string]string{
		"Original-Envelope-Id": "",
		"Reporting-MTA":        "dns; relay.example.internal",
	})
	wantFields(t, "bob", blocks[1], map[string]string{
		"Action":            "delayed",
		"Status":            "4.7.0",
		"Diagnostic-Code":   "smtp; 421 4.7.0 Try again later",
		"Last-Attempt-Date": "Tue, 04 Mar 2025 05:06:07 +0000",
		"Will-Retry-Until":  "Sat, 08 Mar 2025 05:06:07 +0000",
	})
	if mt, _, _ := r.parts[2].header.ContentType(); mt != "text/rfc822-headers" {
		t.Errorf("part 3 Content-Type = %q", mt)
	}
}

func TestDSNDelivered(t *testing.T) {
	d := failedDSN()
	d.Recipients = []DSNRecipient{{Address: "bob@example.com", Action: "relayed", Status: "2.0.0", RemoteMTA: "smtp.example.com"}}
	r, _ := buildReport(t, d)
	if s := r.header.Get("Subject"); s != "Successful Mail Delivery Report" {
		t.Errorf("Subject = %q", s)
	}
	blocks := parseStatus(t, r.parts[1].body)
	wantFields(t, "bob", blocks[1], map[string]string{"Action": "relayed", "Status": "2.0.0", "Diagnostic-Code": ""})
}

func TestDSNRet(t *testing.T) {
	headers := dsnOriginal[:strings.Index(dsnOriginal, "\r\n\r\n")+2]
	big := headers + "\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", maxReturnedOriginal/1000+1)
	tests := []struct {
		name, ret, original, wantType, want string
	}{
		{"full", "FULL", dsnOriginal, "message/rfc822", dsnOriginal},
		{"full lower case", "full", dsnOriginal, "message/rfc822", dsnOriginal},
		{"hdrs", "HDRS", dsnOriginal, "text/rfc822-headers", headers},
		{"default", "", dsnOriginal, "text/rfc822-headers", headers},
		{"full but too big", "FULL", big, "text/rfc822-headers", headers},
		{"LF original", "FULL", strings.ReplaceAll(dsnOriginal, "\r\n", "\n"), "message/rfc822", dsnOriginal},
		{"no body", "HDRS", "Subject: x\r\n", "text/rfc822-headers", "Subject: x\r\n"},
		{"8bit", "FULL", "Subject: x\r\n\r\nGrüße\r\n", "message/rfc822", "Subject: x\r\n\r\nGrüße\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := failedDSN()
			d.Ret = tt.ret
			d.Original = strings.NewReader(tt.original)
			r, _ := buildReport(t, d)
			if len(r.parts) != 3 {
				t.Fatalf("%d parts, want 3", len(r.parts))
			}
			if mt, _, _ := r.parts[2].header.ContentType(); mt != tt.wantType {
				t.Errorf("part 3 Content-Type = %q, want %q", mt, tt.wantType)
			}
			if got := string(r.parts[2].body); got != tt.want {
				t.Errorf("part 3 = %.200q, want %.200q", got, tt.want)
			}
			if bytes.Contains(r.parts[2].body, []byte("The body")) != (tt.wantType == "message/rfc822" && tt.want == dsnOriginal) {
				t.Error("body returned when it should not be, or the other way round")
			}
		})
	}

	d := failedDSN()
	d.Original = nil
	r, _ := buildReport(t, d)
	if len(r.parts) != 2 {
		t.Errorf("without an original: %d parts, want 2", len(r.parts))
	}
}

func TestDSNUTF8(t *testing.T) {
	d := failedDSN()
	d.To = "用户@例子.广告"
	d.Recipients = []DSNRecipient{{
		Address:    "jörg+tag@bücher.example",
		ORCPT:      "rfc822;jörg@bücher.example",
		Action:     "failed",
		Status:     "5.1.1",
		Diagnostic: "550 5.1.1 Empfänger unbekannt\r\n550 second line",
	}}
	r, raw := buildReport(t, d)
	if got := r.header.Get("To"); got != "用户@例子.广告" {
		t.Errorf("To = %q", got)
	}
	blocks := parseStatus(t, r.parts[1].body)
	wantFields(t, "jörg", blocks[1], map[string]string{
		"Final-Recipient":    `utf-8; j\x{F6}rg\x{2B}tag@b\x{FC}cher.example`,
		"Original-Recipient": `utf-8;j\x{F6}rg@b\x{FC}cher.example`,
		"Diagnostic-Code":    `smtp; 550 5.1.1 Empf\x{E4}nger unbekannt 550 second line`,
	})
	for _, c := range r.parts[1].body {
		if c >= 0x80 {
			t.Fatalf("delivery-status part is not 7-bit:\n%s", r.parts[1].body)
		}
	}
	if !strings.Contains(string(r.parts[0].body), "<jörg+tag@bücher.example>: 550 5.1.1 Empfänger unbekannt 550 second line") {
		t.Errorf("explanation:\n%s", r.parts[0].body)
	}
	if bytes.Contains(raw, []byte("\r\n550 second")) {
		t.Error("diagnostic line break leaked into the report")
	}
}

func TestDSNErrors(t *testing.T) {
	for name, mod := range map[string]func(*DSN){
		"null sender":      func(d *DSN) { d.To = "" },
		"null sender <>":   func(d *DSN) { d.To = "<>" },
		"no recipients":    func(d *DSN) { d.Recipients = nil },
		"no reporting MTA": func(d *DSN) { d.ReportingMTA = "" },
	} {
		d := failedDSN()
		mod(d)
		if _, err := d.Build(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestDSNGolden(t *testing.T) {
	for _, name := range []string{"failed", "delayed"} {
		t.Run(name, func(t *testing.T) {
			d := failedDSN()
			if name == "delayed" {
				d.Ret = "HDRS"
				d.Recipients = []DSNRecipient{{
					Address: "bob@example.com", Action: "delayed", Status: "4.4.1",
					Diagnostic: "connect to smtp.example.com:587: connection refused", DiagnosticType: "x-outbox",
					LastAttempt: dsnNow, WillRetryUntil: dsnNow.Add(72 * time.Hour),
				}}
			}
			b, err := d.Build()
			if err != nil {
				t.Fatal(err)
			}
			got := maskReport(t, b)
			path := filepath.Join("testdata", "dsn-"+name+".golden")
			if *updateGolden {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("report differs from %s (run with -update to accept):\n%s", path, got)
			}
		})
	}
}

// maskReport replaces the parts of a report that change from run to run,
// the Message-ID and the MIME boundary, with fixed placeholders.
func maskReport(t *testing.T, b []byte) []byte {
	t.Helper()
	e, err := message.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := e.Header.ContentType()
	b = bytes.ReplaceAll(b, []byte(params["boundary"]), []byte("BOUNDARY"))
	b = bytes.ReplaceAll(b, []byte(e.Header.Get("Message-ID")), []byte("<MESSAGE-ID>"))
	return b
}

func FuzzDSN(f *testing.F) {
	f.Add("bob@example.com", "rfc822;bob@example.com", "failed", "550 5.1.1 unknown", "ENV1", "FULL", []byte(dsnOriginal))
	f.Add("jörg@bücher.example", "jörg", "delayed", "421 try\r\nlater", "", "HDRS", []byte("Subject: x\n\nbody"))
	f.Add("a\r\nBcc: x@y", "", "delivered", strings.Repeat("long ", 300), "é\r\n", "", []byte(""))
	f.Fuzz(func(t *testing.T, addr, orcpt, action, diag, envid, ret string, original []byte) {
		d := &DSN{
			ReportingMTA: "relay.example.internal",
			To:           addr,
			EnvID:        envid,
			Ret:          ret,
			ArrivalDate:  dsnArrival,
			Now:          dsnNow,
			Original:     bytes.NewReader(original),
			Recipients: []DSNRecipient{{
				Address: addr, ORCPT: orcpt, Action: dsn.Action(action), Status: "5.0.0",
				Diagnostic: diag, RemoteMTA: diag, LastAttempt: dsnNow, WillRetryUntil: dsnNow,
			}, {Address: "x@y.example", Action: "delayed", Status: "4.0.0"}},
		}
		b, err := d.Build()
		if err != nil {
			return
		}
		r := parseReport(t, b)
		if len(r.parts) != 3 {
			t.Fatalf("%d parts, want 3", len(r.parts))
		}
		blocks := parseStatus(t, r.parts[1].body)
		if len(blocks) != 3 {
			t.Fatalf("%d delivery-status blocks, want 3:\n%s", len(blocks), r.parts[1].body)
		}
		if blocks[2].Get("Final-Recipient") != "rfc822; x@y.example" {
			t.Fatalf("second recipient lost:\n%s", r.parts[1].body)
		}
		if (blocks[0].Get("Original-Envelope-Id") != "") != (strings.TrimSpace(statusText(envid)) != "") {
			t.Fatalf("Original-Envelope-Id = %q for %q", blocks[0].Get("Original-Envelope-Id"), envid)
		}
	})
}
