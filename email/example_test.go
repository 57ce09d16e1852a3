package email_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/outbox-mta/outbox/email"
)

// A message with a Chinese subject and sender name, text and HTML bodies,
// an image shown in the HTML and a PDF attached. Everything non-ASCII is
// encoded for the header; the bodies are quoted-printable and base64.
func ExampleMessage_WriteTo() {
	pdf := []byte("%PDF-1.4 …")
	png := []byte("\x89PNG…")
	m := &email.Message{
		From:    "张伟 <zhang.wei@example.com>",
		To:      []string{"李娜 <li.na@example.org>"},
		Subject: "测试邮件：季度报告",
		Text:    "报告见附件。",
		HTML:    `<p>报告见附件。</p><img src="cid:chart">`,
		Attachments: []email.Attachment{
			{Filename: "chart.png", Content: png, Inline: true, ContentID: "chart"},
			{Filename: "季度报告.pdf", ContentType: "application/pdf", Content: pdf},
		},
		Metadata: map[string]string{"campaign": "q3"},
	}
	var b bytes.Buffer
	if _, err := m.WriteTo(&b); err != nil {
		fmt.Println(err)
		return
	}
	// Print the fields that do not change from run to run, with their
	// continuation lines.
	sc := bufio.NewScanner(&b)
	show := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			show = false
			for _, p := range []string{"From:", "To:", "Subject:", "X-Outbox-Tag-", "Content-Disposition: attachment"} {
				show = show || strings.HasPrefix(line, p)
			}
		}
		if show {
			fmt.Println(line)
		}
	}
	// Output:
	// From: =?utf-8?q?=E5=BC=A0=E4=BC=9F?= <zhang.wei@example.com>
	// To: =?utf-8?q?=E6=9D=8E=E5=A8=9C?= <li.na@example.org>
	// Subject: =?utf-8?q?=E6=B5=8B=E8=AF=95=E9=82=AE=E4=BB=B6=EF=BC=9A?=
	//  =?utf-8?q?=E5=AD=A3=E5=BA=A6=E6=8A=A5=E5=91=8A?=
	// X-Outbox-Tag-Campaign: q3
	// Content-Disposition: attachment;
	//  filename*=utf-8''%E5%AD%A3%E5%BA%A6%E6%8A%A5%E5%91%8A.pdf
}

// Validate reports every problem at once, so a form can show them all.
func ExampleMessage_Validate() {
	m := &email.Message{
		From:    "me@example.com",
		Subject: "Hello\r\nBcc: everyone@example.org",
	}
	err := m.Validate()
	for _, p := range err.(*email.ValidationError).Problems {
		fmt.Println(p)
	}
	// Output:
	// To: no recipient: give at least one To, Cc or Bcc address
	// Subject: contains a line break (CR or LF)
}

// Send through the local daemon, as the sendmail command does, and tell a
// failure worth retrying from one that is not.
func ExampleOutbox() {
	sender, err := email.NewOutbox("") // $OUTBOX_CONFIG, else /etc/outbox/relay.hcl
	if err != nil {
		fmt.Println("configuration:", err)
		return
	}
	err = sender.Send(context.Background(), &email.Message{
		From:     "app@example.com",
		To:       []string{"王芳 <wang.fang@example.org>"},
		Subject:  "您的验证码",
		Text:     "验证码：482913",
		Metadata: map[string]string{"kind": "otp"},
	})
	switch {
	case err == nil:
		// Stored on disk; Outbox relays it and retries as needed.
	case email.IsTemporary(err):
		// Nothing was stored: try again later.
	default:
		fmt.Println("refused:", err)
	}
}
