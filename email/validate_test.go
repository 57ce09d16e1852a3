package email

import (
	"errors"
	"strings"
	"testing"
)

// TestValidateReportsEverything gives a message with one problem in each
// field and expects all of them in one error.
func TestValidateReportsEverything(t *testing.T) {
	m := &Message{
		From:    "not an address",
		Cc:      []string{"ok@example.com", "x@example.com\r\nBcc: victim@example.org"},
		ReplyTo: []string{"a@@b"},
		To:      []string{strings.Repeat("x", 950) + " <long@example.com>"},
		Subject: "hello\r\nBcc: victim@example.org",
		HTML:    `<img src="cid:logo@x">`,
		Attachments: []Attachment{
			{Filename: "../etc/passwd", Content: "x"},
			{Filename: "logo.png", Content: []byte("p"), Inline: true},
			{Filename: "chart.png", Content: []byte("p"), Inline: true, ContentID: "other@x"},
			{Filename: "a.txt\nX-Evil: 1", Content: 42},
			{Filename: "b.bin", ContentType: "multipart/mixed", Content: []byte("x")},
		},
		Headers:  map[string]string{"X-Ok": "fine", "X-Bad": "v\nX-Injected: 1", "Content-Type": "text/plain", "Bad Name": "v", "x-ok": "again"},
		Metadata: map[string]string{"campaign": "spring", "Campaign": "x", "bad key": "v", "k": "a\rb"},
	}
	err := m.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate returned %v", err)
	}
	want := []string{
		"From", "To[0]", "Cc[1]", "Reply-To[0]", "Subject",
		"Attachments[0].Filename", "Attachments[1].ContentID", "Attachments[2].ContentID",
		"Attachments[3].Filename", "Attachments[3].Content", "Attachments[4].ContentType",
		"Headers[Bad Name]", "Headers[Content-Type]", "Headers[X-Bad]", "Headers[x-ok]",
		"Metadata[bad key]", "Metadata[campaign]", "Metadata[k]",
	}
	got := map[string]bool{}
	for _, p := range ve.Problems {
		got[p.Field] = true
	}
	for _, f := range want {
		if !got[f] {
			t.Errorf("no problem reported for %s", f)
		}
	}
	if len(ve.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(ve.Problems), len(want), strings.ReplaceAll(err.Error(), "; ", "\n"))
	}
	if _, err := m.Bytes(); !errors.As(err, &ve) {
		t.Errorf("Bytes built an invalid message: %v", err)
	}
}

// TestHeaderInjectionRefused tries CR and LF in every field that reaches
// the header.
func TestHeaderInjectionRefused(t *testing.T) {
	for _, bad := range []string{"\r\nBcc: v@example.org", "\nBcc: v@example.org", "\rBcc: v@example.org"} {
		edits := map[string]func(m *Message){
			"From":     func(m *Message) { m.From = "a@example.com" + bad },
			"To":       func(m *Message) { m.To = []string{"Name" + bad + " <b@example.com>"} },
			"Subject":  func(m *Message) { m.Subject = "s" + bad },
			"Header":   func(m *Message) { m.Headers = map[string]string{"X-A": "v" + bad} },
			"Metadata": func(m *Message) { m.Metadata = map[string]string{"k": "v" + bad} },
			"Filename": func(m *Message) { m.Attachments = []Attachment{{Filename: "f" + bad, Content: "x"}} },
			"CID": func(m *Message) {
				m.HTML = `<img src="cid:x">`
				m.Attachments = []Attachment{{Filename: "f.png", Content: "x", Inline: true, ContentID: "x" + bad}}
			},
		}
		for name, edit := range edits {
			m := &Message{From: "a@example.com", To: []string{"b@example.com"}, Text: "x"}
			edit(m)
			raw, err := m.Bytes()
			if err == nil {
				t.Errorf("%s with %q: built\n%s", name, bad, raw)
			}
		}
	}
}

func TestValidateAcceptsGoodMessage(t *testing.T) {
	if err := chinese(t).Validate(); err != nil {
		t.Fatal(err)
	}
	m := &Message{From: "a@example.com", Bcc: []string{"hidden@example.com"}}
	if err := m.Validate(); err != nil {
		t.Errorf("Bcc alone is a recipient: %v", err)
	}
}

func TestRecipients(t *testing.T) {
	m := &Message{To: []string{"A <a@example.com>", "b@example.com"}, Cc: []string{"B@example.com"}, Bcc: []string{"c@example.com"}}
	got, err := m.Recipients()
	if err != nil || strings.Join(got, " ") != "a@example.com b@example.com c@example.com" {
		t.Errorf("%v, %v", got, err)
	}
}
