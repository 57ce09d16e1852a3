package email

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

const (
	cnSubject = "测试邮件：季度报告"
	cnName    = "张伟"
	cnFile    = "季度报告.pdf"
	cnText    = "各位好，\n\n附件是第三季度的报告，请查收。\nA line that is long enough to need a soft line break in quoted-printable encoding, which wraps at 76.\n"
	cnHTML    = "<p>各位好，</p>\n<p>图表：<img src=\"cid:chart@outbox\"></p>\n"
)

// pdfBytes is binary content with every byte value, as a PDF has.
func pdfBytes() []byte {
	b := []byte("%PDF-1.4\n")
	for i := 0; i < 3000; i++ {
		b = append(b, byte(i*31%256))
	}
	return append(b, "\n%%EOF\n"...)
}

func chinese(t *testing.T) *Message {
	t.Helper()
	png, err := os.ReadFile("testdata/chart.png")
	if err != nil {
		t.Fatal(err)
	}
	return &Message{
		From:    cnName + " <zhang.wei@example.com>",
		To:      []string{"李娜 <li.na@example.org>", "ops@example.org"},
		Cc:      []string{"\"Wang, Fang\" <wang@example.org>"},
		Bcc:     []string{"audit@example.net"},
		Subject: cnSubject,
		Text:    cnText,
		HTML:    cnHTML,
		Attachments: []Attachment{
			{Filename: "chart.png", Content: bytes.NewReader(png), Inline: true, ContentID: "chart@outbox"},
			{Filename: cnFile, ContentType: "application/pdf", Content: pdfBytes()},
		},
		Metadata: map[string]string{"campaign": "q3-report"},
	}
}

type pyAddr struct{ Name, Addr string }

type pyPart struct {
	Type        string
	Multipart   bool
	Text        *string
	Data        *string
	Filename    *string
	Disposition *string
	CID         *string
}

type pyMessage struct {
	Subject   string
	From      []pyAddr
	To        []pyAddr
	Cc        []pyAddr
	Bcc       bool
	Date      bool
	MessageID string `json:"message_id"`
	Defects   []string
	Headers   map[string]string
	Parts     []pyPart
}

func parsePython(t *testing.T, raw []byte) *pyMessage {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is needed for the interoperability tests")
		}
		t.Skip("no python3")
	}
	cmd := exec.Command(py, "testdata/parse.py")
	cmd.Stdin = bytes.NewReader(raw)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.Bytes())
	}
	var m pyMessage
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return &m
}

// TestPythonDecodesEverything parses a Chinese message with text, HTML, an
// inline PNG and a PDF with Python's email package and checks that every
// name and every part come back exactly.
func TestPythonDecodesEverything(t *testing.T) {
	m := chinese(t)
	raw, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, raw)
	for _, line := range bytes.Split(raw, []byte("\r\n")) {
		if bytes.HasPrefix(line, []byte("Subject:")) && len(line) > 78 {
			t.Errorf("Subject line of %d characters, more than RFC 5322's recommended 78: %s", len(line), line)
		}
	}
	p := parsePython(t, raw)
	if len(p.Defects) > 0 {
		t.Errorf("python found defects: %v", p.Defects)
	}
	if p.Subject != cnSubject {
		t.Errorf("subject %q, want %q", p.Subject, cnSubject)
	}
	if len(p.From) != 1 || p.From[0] != (pyAddr{cnName, "zhang.wei@example.com"}) {
		t.Errorf("from %+v", p.From)
	}
	wantTo := []pyAddr{{"李娜", "li.na@example.org"}, {"", "ops@example.org"}}
	if len(p.To) != 2 || p.To[0] != wantTo[0] || p.To[1] != wantTo[1] {
		t.Errorf("to %+v, want %+v", p.To, wantTo)
	}
	if len(p.Cc) != 1 || p.Cc[0] != (pyAddr{"Wang, Fang", "wang@example.org"}) {
		t.Errorf("cc %+v", p.Cc)
	}
	if p.Bcc || bytes.Contains(raw, []byte("audit@")) {
		t.Error("the Bcc address is in the message")
	}
	if !p.Date || !strings.HasSuffix(p.MessageID, "@example.com>") {
		t.Errorf("date %v, message-id %q", p.Date, p.MessageID)
	}
	if p.Headers["X-Outbox-Tag-Campaign"] != "q3-report" {
		t.Errorf("tag header: %v", p.Headers)
	}
	var types []string
	for _, part := range p.Parts {
		types = append(types, part.Type)
	}
	want := "multipart/mixed multipart/alternative text/plain multipart/related text/html image/png application/pdf"
	if got := strings.Join(types, " "); got != want {
		t.Fatalf("structure %s\nwant      %s", got, want)
	}
	text := p.Parts[2]
	if text.Text == nil || crlfToLF(*text.Text) != cnText {
		t.Errorf("text %q", deref(text.Text))
	}
	html := p.Parts[4]
	if html.Text == nil || crlfToLF(*html.Text) != cnHTML {
		t.Errorf("html %q", deref(html.Text))
	}
	png, _ := os.ReadFile("testdata/chart.png")
	img := p.Parts[5]
	if got := decode64(t, img.Data); !bytes.Equal(got, png) {
		t.Error("the PNG does not decode to the original bytes")
	}
	if deref(img.CID) != "<chart@outbox>" || deref(img.Disposition) != "inline" || deref(img.Filename) != "chart.png" {
		t.Errorf("image part %+v", img)
	}
	pdf := p.Parts[6]
	if got := decode64(t, pdf.Data); !bytes.Equal(got, pdfBytes()) {
		t.Error("the PDF does not decode to the original bytes")
	}
	if !bytes.Contains(raw, []byte("Content-Disposition: attachment;\r\n filename*=utf-8''%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.pdf\r\n")) {
		t.Errorf("the file name is not in RFC 2231 form:\n%s", raw)
	}
	if deref(pdf.Filename) != cnFile || deref(pdf.Disposition) != "attachment" {
		t.Errorf("pdf filename %q disposition %q", deref(pdf.Filename), deref(pdf.Disposition))
	}
}

// TestGoMessageDecodesEverything reads the same message with go-message's
// mail reader.
func TestGoMessageDecodesEverything(t *testing.T) {
	raw, err := chinese(t).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := r.Header.Subject(); err != nil || s != cnSubject {
		t.Errorf("subject %q, %v", s, err)
	}
	from, err := r.Header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != cnName {
		t.Errorf("from %v, %v", from, err)
	}
	png, _ := os.ReadFile("testdata/chart.png")
	var got []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p.Body)
		switch h := p.Header.(type) {
		case *gomail.InlineHeader:
			ct, _, _ := h.ContentType()
			got = append(got, ct)
			switch ct {
			case "text/plain":
				if crlfToLF(string(body)) != cnText {
					t.Errorf("text %q", body)
				}
			case "text/html":
				if crlfToLF(string(body)) != cnHTML {
					t.Errorf("html %q", body)
				}
			case "image/png":
				if !bytes.Equal(body, png) {
					t.Error("png differs")
				}
			}
		case *gomail.AttachmentHeader:
			name, err := h.Filename()
			got = append(got, "attachment:"+name)
			if err != nil || name != cnFile {
				t.Errorf("filename %q, %v", name, err)
			}
			if !bytes.Equal(body, pdfBytes()) {
				t.Error("pdf differs")
			}
		}
	}
	if want := "text/plain text/html image/png attachment:" + cnFile; strings.Join(got, " ") != want {
		t.Errorf("parts %v, want %s", got, want)
	}
}

// TestStructure checks that each combination uses only the multiparts it
// needs.
func TestStructure(t *testing.T) {
	base := func() *Message { return &Message{From: "a@example.com", To: []string{"b@example.com"}} }
	cases := []struct {
		name string
		edit func(m *Message)
		want string
	}{
		{"text", func(m *Message) { m.Text = "hi" }, "text/plain"},
		{"empty", func(m *Message) {}, "text/plain"},
		{"html", func(m *Message) { m.HTML = "<b>hi</b>" }, "text/html"},
		{"both", func(m *Message) { m.Text, m.HTML = "hi", "<b>hi</b>" }, "multipart/alternative[text/plain text/html]"},
		{"attachment only", func(m *Message) {
			m.Attachments = []Attachment{{Filename: "a.txt", Content: "x"}}
		}, "text/plain"},
		{"text+attachment", func(m *Message) {
			m.Text = "hi"
			m.Attachments = []Attachment{{Filename: "a.bin", Content: []byte{0, 1}}}
		}, "multipart/mixed[text/plain application/octet-stream]"},
		{"html+inline", func(m *Message) {
			m.HTML = `<img src="cid:x@y">`
			m.Attachments = []Attachment{{Filename: "x.png", Content: "p", Inline: true, ContentID: "x@y"}}
		}, "multipart/related[text/html image/png]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := base()
			c.edit(m)
			raw, err := m.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			e, err := message.Read(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := shape(t, e); got != c.want {
				t.Errorf("%s, want %s\n%s", got, c.want, raw)
			}
		})
	}
}

func shape(t *testing.T, e *message.Entity) string {
	ct, _, _ := e.Header.ContentType()
	mr := e.MultipartReader()
	if mr == nil {
		return ct
	}
	var kids []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kids = append(kids, shape(t, p))
	}
	return ct + "[" + strings.Join(kids, " ") + "]"
}

// TestLongNamesStayWithinLineLimit uses a Chinese subject, display name and
// file name as long as Validate allows and checks every line.
func TestLongNamesStayWithinLineLimit(t *testing.T) {
	long := strings.Repeat("季度报告", 21) // 252 bytes
	m := &Message{
		From:        strings.Repeat("张伟", 60) + " <a@example.com>",
		To:          []string{"b@example.com"},
		Subject:     strings.Repeat(cnSubject, 40),
		Text:        strings.Repeat("长", 2000), // one line of 6000 bytes
		Attachments: []Attachment{{Filename: long + ".p", Content: []byte("x")}},
	}
	raw, err := m.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	checkLines(t, raw)
	for _, line := range bytes.Split(raw, []byte("\r\n")) {
		if bytes.Contains(line, []byte("filename*")) && len(line) > 78 {
			t.Errorf("file name line of %d characters: %s", len(line), line)
		}
	}
	r, err := gomail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if from, err := r.Header.AddressList("From"); err != nil || from[0].Name != strings.Repeat("张伟", 60) {
		t.Errorf("go-message reads the long name as %v, %v", from, err)
	}
	p := parsePython(t, raw)
	// Python's address parser (3.11, and its own output alike) keeps the
	// space between adjacent encoded words of a display name, which
	// RFC 2047 section 6.2 says to drop; a name long enough to need
	// several words comes back with spaces in Python only.
	if p.Subject != m.Subject || strings.ReplaceAll(p.From[0].Name, " ", "") != strings.Repeat("张伟", 60) {
		t.Errorf("subject or name changed: %q %q", p.Subject, p.From[0].Name)
	}
	last := p.Parts[len(p.Parts)-1]
	if deref(last.Filename) != long+".p" {
		t.Errorf("filename %q", deref(last.Filename))
	}
	if crlfToLF(deref(p.Parts[1].Text)) != m.Text {
		t.Error("long text line changed")
	}
}

// TestDateAndMessageID checks the generated fields and that Headers can
// replace them.
func TestDateAndMessageID(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Date(2026, 3, 1, 9, 30, 0, 0, time.FixedZone("CST", 8*3600)) }
	m := &Message{From: "a@example.com", To: []string{"b@example.com"}, Text: "x"}
	raw, _ := m.Bytes()
	if !bytes.Contains(raw, []byte("Date: Sun, 01 Mar 2026 09:30:00 +0800\r\n")) {
		t.Errorf("no Date field:\n%s", raw)
	}
	if !bytes.Contains(raw, []byte("@example.com>\r\n")) || !bytes.Contains(raw, []byte("Message-Id: <")) {
		t.Errorf("no Message-ID field:\n%s", raw)
	}
	m.Headers = map[string]string{"Message-ID": "<fixed@example.com>", "date": "Mon, 02 Mar 2026 10:00:00 +0000"}
	raw, _ = m.Bytes()
	if bytes.Count(raw, []byte("Message-Id:")) != 1 || !bytes.Contains(raw, []byte("Message-Id: <fixed@example.com>\r\n")) ||
		!bytes.Contains(raw, []byte("Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n")) {
		t.Errorf("fields not replaced:\n%s", raw)
	}
}

// checkLines fails when a line is longer than RFC 5322's 998 bytes or
// ends otherwise than with CRLF.
func checkLines(t *testing.T, raw []byte) {
	t.Helper()
	for i, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			t.Errorf("line %d does not end with CRLF: %q", i+1, line)
		}
		if n := len(line) - 2; n > 998 {
			t.Errorf("line %d is %d bytes long", i+1, n)
		}
	}
}

func crlfToLF(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func decode64(t *testing.T, s *string) []byte {
	t.Helper()
	if s == nil {
		t.Fatal("no binary content")
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
