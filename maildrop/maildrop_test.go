package maildrop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/internal/durable"
)

func testEnvelope() *Envelope {
	return &Envelope{
		From:       "alice@host.example",
		Recipients: []string{"root", "bob@example.com"},
		Notify:     "failure,delay",
		Ret:        "hdrs",
		EnvID:      "env-1",
		BodyType:   "8BITMIME",
		SMTPUTF8:   true,
		UID:        os.Getuid(),
		User:       "alice",
		Time:       time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	msg := "Subject: hi\r\n\r\nbody\r\n.\r\nmore\x00binary\xff\r\n"
	name, err := Write(dir, testEnvelope(), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if !validName(name) {
		t.Fatalf("name %q does not have the final shape", name)
	}
	env, body, err := Read(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	got, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Errorf("body = %q, want %q", got, msg)
	}
	if want := testEnvelope(); !reflect.DeepEqual(env, want) {
		t.Errorf("envelope = %+v, want %+v", env, want)
	}
	names, err := List(dir)
	if err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("List = %v, %v; want [%s]", names, err, name)
	}
	if err := Remove(filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	if names, _ := List(dir); len(names) != 0 {
		t.Errorf("List after Remove = %v", names)
	}
}

func TestReadTakesUIDFromOwner(t *testing.T) {
	dir := t.TempDir()
	env := testEnvelope()
	env.UID = os.Getuid() + 1
	name, err := Write(dir, env, strings.NewReader("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, body, err := Read(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	if got.UID != os.Getuid() || got.User != "" {
		t.Errorf("UID, User = %d, %q; want %d, \"\"", got.UID, got.User, os.Getuid())
	}
}

func TestListOrderAndSkips(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := 0; i < 3; i++ {
		name, err := Write(dir, testEnvelope(), strings.NewReader("m\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	for _, junk := range []string{".tmp-0123", "tmp.x", "README", "0000000000000000-zz"} {
		if err := os.WriteFile(filepath.Join(dir, junk), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
}

func TestReadRejectsDamage(t *testing.T) {
	dir := t.TempDir()
	name, err := Write(dir, testEnvelope(), strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated body":   good[:len(good)-3],
		"trailing bytes":   append(append([]byte(nil), good...), "extra"...),
		"truncated header": good[:10],
		"empty":            nil,
		"bad magic":        append([]byte("outbox-maildrop 2"), good[17:]...),
		"bad json":         bytes.Replace(good, []byte(`"from"`), []byte(`"from`), 1),
		"unknown field":    bytes.Replace(good, []byte(`"from"`), []byte(`"fromm"`), 1),
		"no recipients":    bytes.Replace(good, []byte(`"recipients":["root","bob@example.com"]`), []byte(`"recipients":[]`), 1),
	}
	for label, content := range cases {
		t.Run(label, func(t *testing.T) {
			p := filepath.Join(dir, "case")
			if err := os.WriteFile(p, content, 0o644); err != nil {
				t.Fatal(err)
			}
			_, body, err := Read(p)
			if err == nil {
				body.Close()
				t.Fatal("Read accepted a damaged file")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

// failingReader gives some bytes, then an error, as a stdin that breaks.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		r.n = 0
		return copy(p, "partial"), nil
	}
	return 0, errors.New("read failed")
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, testEnvelope(), &failingReader{n: 1}); err == nil {
		t.Fatal("Write succeeded with a failing body")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}

func TestWriteUnwritableFolder(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root can write anywhere")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o755)
	if _, err := Write(dir, testEnvelope(), strings.NewReader("x")); err == nil {
		t.Fatal("Write succeeded in a read-only folder")
	}
}

func TestSetup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "maildrop")
	if err := Setup(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&os.ModeSticky == 0 || st.Mode().Perm() != 0o733 {
		t.Errorf("mode = %v, want sticky and 0733", st.Mode())
	}
}

func FuzzRead(f *testing.F) {
	dir := f.TempDir()
	name, err := Write(dir, testEnvelope(), strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if err != nil {
		f.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(magic + "00000000000000000000\n{}\n"))
	f.Add([]byte(magic + "00000000000000000005\n{\"recipients\":[\"a\"]}\nabcde"))
	f.Fuzz(func(t *testing.T, content []byte) {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		env, body, err := Read(p)
		if err != nil {
			return
		}
		defer body.Close()
		if len(env.Recipients) == 0 {
			t.Fatal("accepted an envelope without recipients")
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			t.Fatal(err)
		}
	})
}

// BenchmarkCommit compares the two ways Write makes a new name durable:
// fsync of the folder (root and the daemon's user) and syncfs(2) (every
// other user, who may not open the folder).
func BenchmarkCommit(b *testing.B) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		name string
		fn   func() error
	}{
		{"dir-fsync", func() error { return durable.SyncDir(dir) }},
		{"syncfs", func() error { return syncFS(f) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				// A new entry each time, so there is something to commit.
				p := filepath.Join(dir, fmt.Sprintf("n%d", i))
				if err := os.WriteFile(p, nil, 0o644); err != nil {
					b.Fatal(err)
				}
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReadRefusesUnsafeEntries: what a user can put in the folder besides
// a file of their own is refused at once, never followed or waited on,
// and Discard removes the entry alone.
func TestReadRefusesUnsafeEntries(t *testing.T) {
	dir := t.TempDir()
	// A complete maildrop file outside the folder, as the target of links.
	outside := filepath.Join(t.TempDir(), "secret")
	content, err := os.ReadFile(filepath.Join(mustWriteDir(t), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(outside, content, 0o644); err != nil {
		t.Fatal(err)
	}
	name := func(i int) string { return fmt.Sprintf("%016x-%032x", i, i) }
	entries := map[string]func(p string) error{
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o644) },
		"symlink":   func(p string) error { return os.Symlink(outside, p) },
		"hard link": func(p string) error { return os.Link(outside, p) },
		"folder":    func(p string) error { return os.MkdirAll(filepath.Join(p, "sub"), 0o755) },
	}
	i := 0
	for label, mk := range entries {
		i++
		t.Run(label, func(t *testing.T) {
			p := filepath.Join(dir, name(i))
			if err := mk(p); err != nil {
				t.Fatal(err)
			}
			names, _ := List(dir)
			found := false
			for _, n := range names {
				found = found || n == name(i)
			}
			if !found {
				t.Fatalf("List = %v, does not show %s for the importer to deal with", names, name(i))
			}
			done := make(chan error, 1)
			go func() {
				_, body, err := Read(p)
				if err == nil {
					body.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrUnsafe) {
					t.Fatalf("Read = %v, want ErrUnsafe", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Read blocked")
			}
			if err := Discard(p); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("entry still there: %v", err)
			}
			if b, err := os.ReadFile(outside); err != nil || !bytes.Equal(b, content) {
				t.Errorf("the link target was touched: %v", err)
			}
		})
	}
}

// mustWriteDir writes one maildrop file named "f" in a new folder and
// returns the folder.
func mustWriteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	name, err := Write(dir, testEnvelope(), strings.NewReader("Subject: x\r\n\r\nsecret\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, "f")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestWriteModeIgnoresUmask: the file is 0644 under umask 077, so that
// the daemon's user can read it.
func TestWriteModeIgnoresUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	name, err := Write(dir, testEnvelope(), strings.NewReader("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o644 {
		t.Errorf("mode = %v, want -rw-r--r--", st.Mode())
	}
}

func TestPrivateDir(t *testing.T) {
	base := t.TempDir()
	other := filepath.Join(base, "elsewhere")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(p string) error{
		"missing":         func(string) error { return nil },
		"wide open":       func(p string) error { return os.Mkdir(p, 0o777) },
		"file":            func(p string) error { return os.WriteFile(p, nil, 0o600) },
		"symlink":         func(p string) error { return os.Symlink(other, p) },
		"other owner":     func(p string) error { return mkdirOwned(p, 65534) },
		"already private": func(p string) error { return os.Mkdir(p, 0o700) },
	}
	for label, mk := range cases {
		t.Run(label, func(t *testing.T) {
			p := filepath.Join(base, strings.ReplaceAll(label, " ", "-"))
			if err := mk(p); err != nil {
				t.Fatal(err)
			}
			if label == "wide open" {
				// Mkdir's mode went through the umask.
				if err := os.Chmod(p, 0o777); err != nil {
					t.Fatal(err)
				}
			}
			moved, err := PrivateDir(p)
			if err != nil {
				t.Fatal(err)
			}
			if (moved != "") != (label != "missing" && label != "already private") {
				t.Errorf("moved = %q", moved)
			}
			st, err := os.Lstat(p)
			if err != nil || !privateDir(st) {
				t.Fatalf("after PrivateDir: %v %v", st.Mode(), err)
			}
			if st, err := os.Stat(other); err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("the symlink's target was changed: %v", err)
			}
		})
	}
}

func mkdirOwned(p string, uid int) error {
	if os.Geteuid() != 0 {
		return os.Mkdir(p, 0o755) // stands in: wrong mode instead of owner
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		return err
	}
	return os.Chown(p, uid, uid)
}
