package email

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	gomail "github.com/emersion/go-message/mail"
)

// FuzzMessage builds messages from arbitrary subjects, display names, file
// names and header values: each is either refused by Validate or written
// with lines of at most 998 bytes, no field the caller did not ask for,
// and every value decoded by go-message as it was given.
func FuzzMessage(f *testing.F) {
	f.Add(cnSubject, cnName, cnFile, "v")
	f.Add("a\r\nBcc: x@example.org", "Name\nX: y", "a\"b.pdf", "1\r\n2")
	f.Add(strings.Repeat("x", 1000), strings.Repeat("名", 100), strings.Repeat("é", 120), "=?utf-8?q?x?=")
	f.Fuzz(func(t *testing.T, subject, name, filename, value string) {
		m := &Message{
			From:        "a@example.com",
			To:          []string{(&gomail.Address{Name: name, Address: "b@example.org"}).String()},
			Subject:     subject,
			Text:        "x",
			Attachments: []Attachment{{Filename: filename, Content: []byte("data")}},
			Headers:     map[string]string{"X-Value": value},
		}
		raw, err := m.Bytes()
		var ve *ValidationError
		if errors.As(err, &ve) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		checkLines(t, raw)
		r, err := gomail.CreateReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		fields := 0
		for fi := r.Header.Fields(); fi.Next(); {
			fields++
		}
		// Date, From, To, Message-Id, MIME-Version, Content-Type, and
		// Subject and X-Value when not empty.
		want := 6
		if subject != "" {
			want++
		}
		if value != "" {
			want++
		}
		if fields != want {
			t.Errorf("%d header fields, want %d:\n%s", fields, want, raw)
		}
		// go-message's reader turns the whitespace around a fold into
		// one space (Python keeps it, as RFC 5322 unfolding says) and
		// trims the value.
		norm := func(s string) string { return strings.Join(strings.Fields(s), " ") }
		if got, _ := r.Header.Subject(); norm(got) != norm(subject) {
			t.Errorf("subject %q came back as %q", subject, got)
		}
		for {
			p, err := r.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := p.Header.(*gomail.AttachmentHeader); ok {
				if got, err := h.Filename(); err != nil || got != filename {
					t.Errorf("file name %q came back as %q (%v)", filename, got, err)
				}
			}
		}
	})
}
