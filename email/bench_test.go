package email

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkWriteTo builds a message with text, HTML and a 10 MiB
// attachment, the size mail providers commonly accept.
func BenchmarkWriteTo(b *testing.B) {
	pdf := bytes.Repeat(pdfBytes(), 10<<20/len(pdfBytes()))
	m := &Message{
		From: cnName + " <zhang.wei@example.com>", To: []string{"li.na@example.org"},
		Subject: cnSubject, Text: cnText, HTML: "<p>x</p>",
		Attachments: []Attachment{{Filename: cnFile, Content: pdf}},
	}
	b.SetBytes(int64(len(pdf)))
	for b.Loop() {
		if _, err := m.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
