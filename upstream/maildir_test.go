package upstream

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestMaildirDeliver(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "Maildir")
	m, err := NewMaildir("capture", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"tmp", "new", "cur"} {
		fi, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", sub, fi, err)
		}
	}
	env := envelope(testMessage, "b@example.net", "c@example.net")
	out := m.Deliver(context.Background(), env)
	if out.Remote != "maildir:"+dir || !out.Local {
		t.Errorf("remote %q", out.Remote)
	}
	wantClass(t, out, Sent, Sent)
	wantClass(t, m.Deliver(context.Background(), env), Sent, Sent)

	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	if len(files) != 2 || files[0].Name() == files[1].Name() {
		t.Fatalf("new/ holds %v", files)
	}
	if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
	got, err := os.ReadFile(filepath.Join(dir, "new", files[0].Name()))
	if err != nil {
		t.Fatal(err)
	}
	want := "Return-Path: <a@example.com>\r\nX-Envelope-To: <b@example.net>\r\nX-Envelope-To: <c@example.net>\r\n" + testMessage
	if string(got) != want {
		t.Errorf("file:\n%q\nwant\n%q", got, want)
	}

	// An I/O problem defers.
	if err := os.RemoveAll(filepath.Join(dir, "tmp")); err != nil {
		t.Fatal(err)
	}
	out = m.Deliver(context.Background(), env)
	wantClass(t, out, Deferred, Deferred)
	if out.Results[0].Message == "" {
		t.Errorf("no reason given")
	}

	m.Close()
	wantClass(t, m.Deliver(context.Background(), env), Deferred, Deferred)
}

func TestMaildirHeaderInjection(t *testing.T) {
	dir := t.TempDir()
	m, err := NewMaildir("capture", dir)
	if err != nil {
		t.Fatal(err)
	}
	env := envelope(testMessage, "b@example.net\r\nBcc: x@example.org")
	wantClass(t, m.Deliver(context.Background(), env), Sent)
	files, _ := os.ReadDir(filepath.Join(dir, "new"))
	got, _ := os.ReadFile(filepath.Join(dir, "new", files[0].Name()))
	want := "Return-Path: <a@example.com>\r\nX-Envelope-To: <b@example.netBcc: x@example.org>\r\n" + testMessage
	if string(got) != want {
		t.Errorf("file %q", got)
	}
}
