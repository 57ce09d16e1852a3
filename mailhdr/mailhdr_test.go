package mailhdr

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const dom = "host.example"

func TestQualify(t *testing.T) {
	tests := []struct {
		name, in, want string // want "" means unchanged
	}{
		{"bare", "To: root\r\n", "To: root@host.example\r\n"},
		{"bare LF", "To: root\n", "To: root@host.example\r\n"},
		{"cron from", "From: root (Cron Daemon)\r\n", "From: root@host.example (Cron Daemon)\r\n"},
		{"cron angle", "From: Cron Daemon <root>\r\n", "From: Cron Daemon <root@host.example>\r\n"},
		{"mixed list", "To: alice, bob@x.org\r\n", "To: alice@host.example, bob@x.org\r\n"},
		{"php qualified", "To: user@example.com\r\n", ""},
		{"already qualified angle", "From: \"WordPress\" <wordpress@example.com>\r\n", ""},
		{"quoted name with comma", "To: \"Doe, John\" <jdoe>, x@y.z\r\n", "To: \"Doe, John\" <jdoe@host.example>, x@y.z\r\n"},
		{"quoted name with angle", "To: \"a <b> c\" <ops>\r\n", "To: \"a <b> c\" <ops@host.example>\r\n"},
		{"comment with comma", "To: root (the, admin), ops\r\n", "To: root@host.example (the, admin), ops@host.example\r\n"},
		{"nested comment", "Cc: root (a (b) c)\r\n", "Cc: root@host.example (a (b) c)\r\n"},
		{"empty group", "To: undisclosed-recipients:;\r\n", ""},
		{"empty group no semicolon", "To: undisclosed-recipients:\r\n", ""},
		{"group members", "To: Team: alice, bob@x.org;\r\n", "To: Team: alice@host.example, bob@x.org;\r\n"},
		{"group then address", "To: G:;, root\r\n", "To: G:;, root@host.example\r\n"},
		{"empty", "To:\r\n", ""},
		{"blank", "To:   \r\n", ""},
		{"null address", "From: <>\r\n", ""},
		{"encoded word name", "From: =?UTF-8?B?5byg5LiJ?= <zhang>\r\n", "From: =?UTF-8?B?5byg5LiJ?= <zhang@host.example>\r\n"},
		{"encoded word alone", "To: =?UTF-8?B?5byg5LiJ?=\r\n", ""},
		{"utf8 name", "From: Jörg <joerg>\r\n", "From: Jörg <joerg@host.example>\r\n"},
		{"folded", "To: alice,\r\n\tbob,\r\n carol@x.org\r\n", "To: alice@host.example,\r\n\tbob@host.example,\r\n carol@x.org\r\n"},
		{"folded LF", "To: alice,\n bob\n", "To: alice@host.example,\r\n bob@host.example\r\n"},
		{"dotted local", "To: first.last\r\n", "To: first.last@host.example\r\n"},
		{"quoted local", "To: \"john doe\"\r\n", "To: \"john doe\"@host.example\r\n"},
		{"phrase without angle", "To: John Smith\r\n", ""},
		{"unterminated quote", "To: \"root\r\n", ""},
		{"unterminated angle", "To: Root <root\r\n", ""},
		{"unbalanced comment", "To: root (x\r\n", ""},
		{"stray close paren", "To: root)\r\n", ""},
		{"trailing comma", "To: root,\r\n", "To: root@host.example,\r\n"},
		{"double comma", "To: a,,b\r\n", "To: a@host.example,,b@host.example\r\n"},
		{"source route", "To: <@relay.example:bob@x.org>\r\n", ""},
		{"literal domain", "To: bob@[192.0.2.1], root\r\n", "To: bob@[192.0.2.1], root@host.example\r\n"},
		{"case of name kept", "TO: root\r\n", "TO: root@host.example\r\n"},
		{"space before colon", "To : root\r\n", "To : root@host.example\r\n"},
		{"no space", "To:root\r\n", "To:root@host.example\r\n"},
		{"no line end", "To: root", "To: root@host.example\r\n"},
		{"sender", "Sender: www-data\r\n", "Sender: www-data@host.example\r\n"},
		{"reply-to", "Reply-To: nobody\r\n", "Reply-To: nobody@host.example\r\n"},
		{"resent", "Resent-From: root\r\nResent-To: ops\r\nResent-Cc: a\r\nResent-Sender: b\r\n",
			"Resent-From: root@host.example\r\nResent-To: ops@host.example\r\nResent-Cc: a@host.example\r\nResent-Sender: b@host.example\r\n"},
		{"bcc", "Bcc: audit\r\n", "Bcc: audit@host.example\r\n"},
		{"other fields untouched", "Subject: root\r\nX-To: root\r\nDelivered-To: root\r\n", ""},
		{"empty local", "To: @x.org\r\n", ""},
		{"empty domain", "To: bob@\r\n", ""},
		{"mailx", "To: ops\nSubject: disk full\nUser-Agent: Heirloom mailx 12.5\nMIME-Version: 1.0\n",
			"To: ops@host.example\r\nSubject: disk full\nUser-Agent: Heirloom mailx 12.5\nMIME-Version: 1.0\n"},
		{"untouched around rewrite",
			"Received: from x\r\n\tby y\r\nsubject: Hi\nTo: root\nX-Folded: a\n  b\n\nbody To: root\n",
			"Received: from x\r\n\tby y\r\nsubject: Hi\nTo: root@host.example\r\nX-Folded: a\n  b\n\nbody To: root\n"},
		{"malformed lines carried", "garbage line\r\nTo: root\r\n", "garbage line\r\nTo: root@host.example\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := Qualify([]byte(tt.in), dom)
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if string(got) != want {
				t.Errorf("Qualify(%q)\n got %q\nwant %q", tt.in, got, want)
			}
			if changed != (tt.want != "") {
				t.Errorf("changed = %v, want %v", changed, tt.want != "")
			}
		})
	}
}

func TestQualifyNoDomain(t *testing.T) {
	if got, changed := Qualify([]byte("To: root\r\n"), ""); changed || string(got) != "To: root\r\n" {
		t.Errorf("got %q, %v", got, changed)
	}
}

func TestAddresses(t *testing.T) {
	raw := []byte("From: root (Cron Daemon)\r\n" +
		"To: alice, \"Doe, John\" <jdoe@x.org>\r\n" +
		"Subject: hi\r\n" +
		"Cc: Team: bob@x.org, carol;\r\n" +
		"Bcc: undisclosed-recipients:;\r\n" +
		"To: \"john doe\"@x.org,\r\n <>, dave@x.org (Dave)\r\n" +
		"Resent-To: eve@x.org\r\n" +
		"\r\n" +
		"To: not@header.example\r\n")
	got, err := Addresses(raw, "to", "CC", "Bcc")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alice", "jdoe@x.org", "bob@x.org", "carol", "\"john doe\"@x.org", "dave@x.org"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	got, err = Addresses(raw, "Resent-To")
	if err != nil || !reflect.DeepEqual(got, []string{"eve@x.org"}) {
		t.Errorf("Resent-To: got %q, %v", got, err)
	}
	if _, err := Addresses([]byte("To: John Smith\r\n"), "To"); err == nil {
		t.Error("no error for an unparseable list")
	}
	if got, err := Addresses([]byte("To:\r\nCc: \r\n"), "To", "Cc"); err != nil || len(got) != 0 {
		t.Errorf("empty fields: got %q, %v", got, err)
	}
}

func TestGetHasRemovePrepend(t *testing.T) {
	raw := []byte("Received: from a\r\n\tby b\r\nSubject: a\r\n long\r\n\tsubject  \r\nsubject: second\r\nX-Empty:\r\n\r\nSubject: body\r\n")
	if got := Get(raw, "SUBJECT"); got != "a long\tsubject" {
		t.Errorf("Get = %q", got)
	}
	if got := Get(raw, "X-Empty"); got != "" || !Has(raw, "x-empty") {
		t.Errorf("X-Empty: %q %v", got, Has(raw, "x-empty"))
	}
	if Has(raw, "Date") || Get(raw, "Date") != "" {
		t.Error("Date found")
	}
	want := "Received: from a\r\n\tby b\r\nX-Empty:\r\n\r\nSubject: body\r\n"
	if got := Remove(raw, "subject"); string(got) != want {
		t.Errorf("Remove = %q", got)
	}
	if got := Remove([]byte("Bcc: a,\n b\nTo: c\n"), "Bcc"); string(got) != "To: c\n" {
		t.Errorf("Remove folded = %q", got)
	}
	if got := Prepend([]byte("To: a\r\n"), "Received: x\r\n"); string(got) != "Received: x\r\nTo: a\r\n" {
		t.Errorf("Prepend = %q", got)
	}
	if got := Prepend([]byte("To: a\r\n"), "Received: x"); string(got) != "Received: x\r\nTo: a\r\n" {
		t.Errorf("Prepend unterminated = %q", got)
	}
}

func TestRewriteFrom(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"display name", "From: Cron Daemon <root@host>\r\nTo: x\r\n\r\n",
			"From: Cron Daemon <relay@example.com>\r\nReply-To: Cron Daemon <root@host>\r\nTo: x\r\n\r\n"},
		{"comment", "From: root (Cron Daemon)\n\n",
			"From: relay@example.com (Cron Daemon)\r\nReply-To: root (Cron Daemon)\r\n\n"},
		{"has reply-to", "Reply-To: a@b.c\r\nFrom: \"A\" <a@host>\r\n",
			"Reply-To: a@b.c\r\nFrom: \"A\" <relay@example.com>\r\n"},
		{"encoded name kept", "From: =?UTF-8?Q?J=C3=B6rg?= <joerg@host>\r\n",
			"From: =?UTF-8?Q?J=C3=B6rg?= <relay@example.com>\r\nReply-To: =?UTF-8?Q?J=C3=B6rg?= <joerg@host>\r\n"},
		{"unchanged", "From: Relay <Relay@Example.com>\r\n", "From: Relay <Relay@Example.com>\r\n"},
		{"two mailboxes", "From: a@x, b@y\r\n", "From: relay@example.com\r\nReply-To: a@x, b@y\r\n"},
		{"unparseable", "From: John Smith\r\n", "From: relay@example.com\r\nReply-To: John Smith\r\n"},
		{"missing", "Subject: x\r\n\r\nbody\r\n", "Subject: x\r\nFrom: relay@example.com\r\n\r\nbody\r\n"},
		{"missing, unterminated", "Subject: x", "Subject: x\r\nFrom: relay@example.com\r\n"},
		{"empty from", "From:\r\n", "From: relay@example.com\r\n"},
		{"folded", "From: Someone\r\n <s@host>\r\nTo: x\r\n",
			"From: Someone\r\n <relay@example.com>\r\nReply-To: Someone\r\n <s@host>\r\nTo: x\r\n"},
		{"no line end", "From: A <a@host>", "From: A <relay@example.com>\r\nReply-To: A <a@host>\r\n"},
		{"null", "From: <>\r\n", "From: relay@example.com\r\n"},
		{"group", "From: G: a@host;\r\n", "From: relay@example.com\r\nReply-To: G: a@host;\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RewriteFrom([]byte(tt.in), "relay@example.com")
			if string(got) != tt.want {
				t.Errorf("RewriteFrom(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name, in, want, rest string
		max                  int
		err                  error
	}{
		{"crlf", "A: b\r\nC: d\r\n\r\nbody\r\n", "A: b\r\nC: d\r\n\r\n", "body\r\n", 100, nil},
		{"lf", "A: b\n c\n\nbody\n", "A: b\n c\n\n", "body\n", 100, nil},
		{"no body", "A: b\r\n", "A: b\r\n", "", 100, nil},
		{"no final newline", "A: b", "A: b", "", 100, nil},
		{"empty", "", "", "", 100, nil},
		{"empty header", "\r\nbody", "\r\n", "body", 100, nil},
		{"exact limit", "A: b\r\n\r\nx", "A: b\r\n\r\n", "x", 8, nil},
		{"over limit", "A: b\r\n\r\nx", "", "", 7, ErrHeaderTooLarge},
		{"long line over limit", "A: " + strings.Repeat("x", 100000) + "\r\n\r\n", "", "", 50000, ErrHeaderTooLarge},
		{"long line", "A: " + strings.Repeat("x", 100000) + "\r\n\r\nb", "A: " + strings.Repeat("x", 100000) + "\r\n\r\n", "b", 1 << 20, nil},
		{"blank-ish line is continuation", "A: b\r\n \r\n\r\nc", "A: b\r\n \r\n\r\n", "c", 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReaderSize(iotest.HalfReader(strings.NewReader(tt.in)), 16)
			got, err := ReadHeader(br, tt.max)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			rest, _ := io.ReadAll(br)
			if string(rest) != tt.rest {
				t.Errorf("rest %q, want %q", rest, tt.rest)
			}
		})
	}
}

func TestCRLFReader(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"\n\n", "\r\n\r\n"},
		{"a\rb\r", "a\rb\r"},
		{"a\r\r\n\n", "a\r\r\n\r\n"},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 2, 3, 1024} {
			got, err := io.ReadAll(&chunkReader{r: NewCRLFReader(iotest.OneByteReader(strings.NewReader(tt.in))), n: size})
			if err != nil || string(got) != tt.want {
				t.Errorf("%q, reads of %d: got %q, %v; want %q", tt.in, size, got, err, tt.want)
			}
		}
		if got := ToCRLF([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("ToCRLF(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if err := iotest.TestReader(NewCRLFReader(strings.NewReader("x\ny\r\nz")), []byte("x\r\ny\r\nz")); err != nil {
		t.Error(err)
	}
}

// chunkReader reads from r at most n bytes at a time.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// refCRLF is the plainest possible statement of the conversion.
func refCRLF(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

func FuzzCRLF(f *testing.F) {
	f.Add([]byte("a\nb\r\nc\r"), uint8(1), uint8(3))
	f.Add([]byte("\r\n\n\r\r\n"), uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, inSize, outSize uint8) {
		want := refCRLF(in)
		if got := ToCRLF(in); !bytes.Equal(got, want) {
			t.Fatalf("ToCRLF(%q) = %q, want %q", in, got, want)
		}
		src := &chunkReader{r: bytes.NewReader(in), n: int(inSize)%7 + 1}
		got, err := io.ReadAll(&chunkReader{r: NewCRLFReader(src), n: int(outSize)%11 + 1})
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("reader(%q) = %q, %v; want %q", in, got, err, want)
		}
	})
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("A: b\r\n\r\nbody"), 100)
	f.Add([]byte("A: b\n c\n\n"), 5)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 0 {
			max = -max
		}
		max %= 1 << 16
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		got, err := ReadHeader(br, max)
		if err == ErrHeaderTooLarge {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > max {
			t.Fatalf("returned %d bytes, max %d", len(got), max)
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(append(got, rest...), in) {
			t.Fatal("header and rest do not add up to the input")
		}
	})
}

func FuzzQualify(f *testing.F) {
	for _, s := range []string{
		"To: root\r\n", "From: Cron Daemon <root>\r\n", "To: alice, bob@x.org\r\n",
		"From: root (Cron Daemon)\r\n", "To: G: a, \"b, c\" <d>;\r\n", "Cc: a,\n\tb\n\nbody",
		"To: <@r:a>\r\n", "To: \"q\"@x, [x]\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, changed := Qualify(in, dom)
		if !changed {
			if !bytes.Equal(out, in) {
				t.Fatal("unchanged but different")
			}
			return
		}
		// Qualify adds and removes no fields, so the fields of the input
		// and the output line up; every field it could parse before must
		// parse after, with every address qualified.
		fin, _ := split(in)
		fout, _ := split(out)
		if len(fin) != len(fout) {
			t.Fatalf("%d fields became %d\nin  %q\nout %q", len(fin), len(fout), in, out)
		}
		for i, f := range fin {
			if f.colon < 0 || !qualified[strings.ToLower(f.name)] {
				continue
			}
			before, ok := parseList(f.value(in))
			if !ok {
				continue
			}
			after, ok := parseList(fout[i].value(out))
			if !ok {
				t.Fatalf("rewritten %s does not parse\nin  %q\nout %q", f.name, in, out)
			}
			if len(after) != len(before) {
				t.Fatalf("address count %d -> %d\nin  %q\nout %q", len(before), len(after), in, out)
			}
			for _, m := range after {
				if !m.domain {
					t.Fatalf("unqualified %q left\nin  %q\nout %q", m.addr, in, out)
				}
			}
		}
		if again, ch := Qualify(out, dom); ch {
			t.Fatalf("not idempotent:\nout   %q\nagain %q", out, again)
		}
	})
}
