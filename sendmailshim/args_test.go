package sendmailshim

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	cases := []struct {
		args []string
		mode Mode
		want Options // fields compared: the ones set here
		err  bool
	}{
		{args: []string{"root"}, want: Options{Recipients: []string{"root"}}},
		{args: []string{"-ti"}, want: Options{ExtractRcpt: true, IgnoreDots: true}},
		{args: []string{"-t", "-oi", "a@b"}, want: Options{ExtractRcpt: true, IgnoreDots: true, Recipients: []string{"a@b"}}},
		{args: []string{"-fme@x", "a@b"}, want: Options{Sender: "me@x", SenderSet: true, Recipients: []string{"a@b"}}},
		{args: []string{"-f", "me@x", "a@b"}, want: Options{Sender: "me@x", SenderSet: true, Recipients: []string{"a@b"}}},
		{args: []string{"-r", "me@x", "a@b"}, want: Options{Sender: "me@x", SenderSet: true, Recipients: []string{"a@b"}}},
		{args: []string{"-f", "", "a@b"}, want: Options{SenderSet: true, Recipients: []string{"a@b"}}},
		{args: []string{"-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"},
			want: Options{FullName: "CronDaemon", IgnoreDots: true, BodyType: "8BITMIME", Ignored: []string{"-oem"}, Recipients: []string{"root"}}},
		{args: []string{"-itf", "me@x", "a@b"}, want: Options{IgnoreDots: true, ExtractRcpt: true, Sender: "me@x", SenderSet: true, Recipients: []string{"a@b"}}},
		{args: []string{"--", "-notanoption"}, want: Options{Recipients: []string{"-notanoption"}}},
		{args: []string{"a@b", "-t"}, want: Options{Recipients: []string{"a@b", "-t"}}},
		{args: []string{"-bs"}, want: Options{Mode: ModeSMTP}},
		{args: []string{"-bp"}, want: Options{Mode: ModeQueue}},
		{args: []string{"-bi"}, want: Options{Mode: ModeNewAliases}},
		{args: []string{"-I"}, want: Options{Mode: ModeNewAliases}},
		{args: []string{"-bv", "root"}, want: Options{Mode: ModeVerify, Recipients: []string{"root"}}},
		{args: []string{"-bm", "root"}, want: Options{Recipients: []string{"root"}}},
		{args: []string{"-q"}, want: Options{Mode: ModeFlush}},
		{args: []string{"-q30m"}, want: Options{QueueIntvl: "30m"}},
		{args: []string{"-qRexample.com"}, want: Options{Mode: ModeFlush}},
		{args: []string{"-v", "-N", "Failure,DELAY", "-R", "HDRS", "-V", "id1", "x@y"},
			want: Options{Verbose: true, Notify: "failure,delay", Ret: "hdrs", EnvID: "id1", Recipients: []string{"x@y"}}},
		{args: []string{"-Nnever", "x@y"}, want: Options{Notify: "never", Recipients: []string{"x@y"}}},
		{args: []string{"-C", "/etc/x.hcl", "x@y"}, want: Options{Config: "/etc/x.hcl", ConfigSet: true, Recipients: []string{"x@y"}}},
		{args: []string{"-odi", "-odb", "-odq", "-oee", "-om", "-L", "tag", "-X", "/tmp/log", "-h", "10", "-n", "-U", "-G", "-Am", "-Ac", "x@y"},
			want: Options{Ignored: []string{"-odi", "-odb", "-odq", "-oee", "-om", "-Ltag", "-X/tmp/log", "-h10", "-n", "-U", "-G", "-Am", "-Ac"}, Recipients: []string{"x@y"}}},
		{mode: ModeQueue, want: Options{Mode: ModeQueue}},
		{mode: ModeNewAliases, want: Options{Mode: ModeNewAliases}},
		{args: []string{"-z"}, err: true},
		{args: []string{"-f"}, err: true},
		{args: []string{"-B", "9BIT"}, err: true},
		{args: []string{"-R", "body"}, err: true},
		{args: []string{"-N", "sometimes"}, err: true},
		{args: []string{"-bd"}, err: true},
		{args: []string{"-bx"}, err: true},
		{args: []string{"-qX"}, err: true},
		{args: []string{"-bp", "root"}, err: true},
		{args: []string{"-bs", "-t"}, err: true},
		{args: []string{"-oA"}, err: true},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			got, err := ParseArgs(c.mode, c.args)
			if c.err {
				var ue *UsageError
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v, want a UsageError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			if want.Mode == 0 {
				want.Mode = c.mode
			}
			if !reflect.DeepEqual(*got, want) {
				t.Errorf("got  %+v\nwant %+v", *got, want)
			}
		})
	}
}

func TestInvalidOptionMessage(t *testing.T) {
	_, err := ParseArgs(ModeDeliver, []string{"-k"})
	if err == nil || err.Error() != "invalid option -- 'k'" {
		t.Errorf("err = %v, want getopt's wording", err)
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("-t\x00-i\x00-f\x00me@x\x00root")
	f.Add("-FCronDaemon\x00-i\x00-B8BITMIME\x00-oem\x00root")
	f.Add("-bs")
	f.Add("-q\x00-q1h\x00--\x00-x")
	f.Add("-N\x00never\x00-R\x00full\x00-V\x00x")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		o, err := ParseArgs(ModeDeliver, args)
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not a UsageError", err)
			}
			return
		}
		if o.Ret != "" && o.Ret != "full" && o.Ret != "hdrs" {
			t.Fatalf("Ret = %q", o.Ret)
		}
		if o.BodyType != "" && o.BodyType != "7BIT" && o.BodyType != "8BITMIME" {
			t.Fatalf("BodyType = %q", o.BodyType)
		}
		if _, err := parseNotify(o.Notify); o.Notify != "" && err != nil {
			t.Fatalf("Notify %q does not parse again", o.Notify)
		}
	})
}

func TestDotReader(t *testing.T) {
	cases := map[string]string{
		"a\n.\nb\n":     "a\n",
		"a\r\n.\r\nb":   "a\r\n",
		"a\n.":          "a\n",
		"a\n..\nb\n":    "a\n..\nb\n",
		".x\n.\n":       ".x\n",
		"a.\n":          "a.\n",
		".\n":           "",
		"no end":        "no end",
		"a\n.\r":        "a\n",
		"x\n.\ry\n.\n":  "x\n.\ry\n",
		"line\n. \nz\n": "line\n. \nz\n",
	}
	for in, want := range cases {
		got, err := io.ReadAll(newDotReader(strings.NewReader(in)))
		if err != nil || string(got) != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestReadHeader(t *testing.T) {
	cases := []struct{ in, hdr, body string }{
		{"A: 1\nB: 2\n\nbody\n", "A: 1\r\nB: 2\r\n", "body\r\n"},
		{"A: 1\r\n folded\r\n\r\nbody", "A: 1\r\n folded\r\n", "body"},
		{"From someone Mon Jan 1\nA: 1\n\nb\n", "A: 1\r\n", "b\r\n"},
		{"not a header\nA: 1\n", "", "not a header\r\nA: 1\r\n"},
		{"A: 1\nnot a header\n", "A: 1\r\n", "not a header\r\n"},
		{"A: 1", "A: 1\r\n", ""},
		{"", "", ""},
		{"\nbody\n", "", "body\r\n"},
	}
	for _, c := range cases {
		msg, err := readContent(strings.NewReader(c.in))
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		body, _ := io.ReadAll(msg.body)
		if string(msg.header) != c.hdr || string(body) != c.body {
			t.Errorf("%q: header %q body %q; want %q %q", c.in, msg.header, body, c.hdr, c.body)
		}
	}
}

func TestHeaderRecipients(t *testing.T) {
	cases := []struct {
		hdr  string
		want []string
	}{
		{"To: a@x, \"B, Q\" <b@x>\r\nCc: c@x\r\nBcc: d@x\r\nFrom: f@x\r\n", []string{"a@x", "b@x", "c@x", "d@x"}},
		{"To: root\r\nSubject: x\r\n", []string{"root"}},
		{"To: undisclosed-recipients:;\r\nBcc: z@x\r\n", []string{"z@x"}},
		{"To: a@x\r\nResent-To: r@x\r\nResent-Bcc: s@x\r\n", []string{"r@x", "s@x"}},
		{"To: group: g1@x, g2@x;\r\n", []string{"g1@x", "g2@x"}},
		{"Subject: none\r\n", nil},
	}
	for _, c := range cases {
		got, err := headerRecipients([]byte(c.hdr))
		if err != nil {
			t.Errorf("%q: %v", c.hdr, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %v, want %v", c.hdr, got, c.want)
		}
	}
}

func FuzzHeaders(f *testing.F) {
	f.Add("To: a@x, B <b@x>\nCc: root\nBcc: c@x\n\nbody\n")
	f.Add("Resent-To: r@x\r\nTo: a@x\r\n\r\n")
	f.Add("From x\nTo: (comment) \"q\"@x\n folded\n\n")
	f.Add("To: g: a@x;\n")
	f.Fuzz(func(t *testing.T, in string) {
		msg, err := readContent(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		rest, err := io.ReadAll(msg.body)
		if err != nil {
			t.Fatal(err)
		}
		checkCRLF(t, msg.header)
		if len(msg.header)+len(rest) < len(in)/2-len("From ")-1 {
			// Only a leading From_ line is ever dropped.
			if !strings.HasPrefix(in, "From ") && !strings.HasPrefix(in, ">From ") {
				t.Fatalf("lost input: %q → %q + %q", in, msg.header, rest)
			}
		}
		rcpts, err := headerRecipients(msg.header)
		if err != nil {
			return
		}
		for _, r := range rcpts {
			if strings.ContainsAny(r, "\r\n") {
				t.Fatalf("recipient with a line break: %q", r)
			}
		}
		fixed := fixup{sender: "u@h", hostname: "h", removeBcc: true}.fix(msg.header)
		if strings.Contains(strings.ToLower(string(fixed)), "\nbcc:") || strings.HasPrefix(strings.ToLower(string(fixed)), "bcc:") {
			t.Fatalf("Bcc survived: %q", fixed)
		}
	})
}
