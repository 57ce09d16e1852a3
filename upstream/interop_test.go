package upstream

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/internal/testpki"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// startAiosmtpd runs Debian's aiosmtpd (python3-aiosmtpd) with STARTTLS
// required and AUTH allowed only over TLS, and returns its port and the
// folder where it writes each message it receives.
func startAiosmtpd(t *testing.T, ca *testpki.CA, user, pass string) (port int, outdir string) {
	t.Helper()
	return startAiosmtpdFlags(t, ca, user, pass, "")
}

// startAiosmtpdFlags is startAiosmtpd with the script's FLAGS argument
// ("no8bitmime", "smtputf8", comma-separated).
func startAiosmtpdFlags(t *testing.T, ca *testpki.CA, user, pass, flags string) (port int, outdir string) {
	t.Helper()
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import aiosmtpd").Run(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("python3-aiosmtpd is not installed: %v", err)
		}
		t.Skipf("python3-aiosmtpd is not installed (%v); apt install python3-aiosmtpd", err)
	}
	dir := t.TempDir()
	certFile, keyFile := testpki.WriteKeyPair(t, dir, ca.ServerCert(t))
	outdir = filepath.Join(dir, "out")
	if err := os.Mkdir(outdir, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "testdata/aiosmtpd_server.py", certFile, keyFile, user, pass, outdir, flags)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close() // the script stops when its stdin closes
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	lines := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		lines <- line
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		port, err = strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("aiosmtpd did not start: %q", line)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("aiosmtpd did not start within 30s")
	}
	return port, outdir
}

func TestInteropAiosmtpd(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	port, outdir := startAiosmtpd(t, ca, "relay@example.com", "s3cret pass")
	for i, mech := range []string{"plain", "login", "auto"} {
		t.Run(mech, func(t *testing.T) {
			var logs syncBuffer
			s := newTarget(t, SMTPConfig{
				SMTP:           settings.SMTP{Name: "aiosmtpd", Host: "127.0.0.1", Port: port, TLS: "starttls", Username: "relay@example.com", Auth: settings.Auth(mech)},
				RootCAs:        ca.Pool,
				Hostname:       "client.test",
				Password:       staticSecret("s3cret pass"),
				CommandTimeout: 20 * time.Second,
				Logger:         testLogger(&logs),
			})
			out := deliver(t, s, envelope(testMessage, "b@example.net", "c@example.net"))
			wantClass(t, out, Sent, Sent)
			path := filepath.Join(outdir, "msg"+strconv.Itoa(i+1))
			var got []byte
			waitFor(t, "aiosmtpd to write "+path, func() bool {
				var err error
				got, err = os.ReadFile(path)
				return err == nil
			})
			want := "FROM a@example.com\nTO b@example.net\nTO c@example.net\nAUTH relay@example.com\n\n" + testMessage
			if string(got) != want {
				t.Errorf("aiosmtpd got\n%q\nwant\n%q\nlogs:\n%s", got, want, logs.String())
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		var logs syncBuffer
		s := newTarget(t, SMTPConfig{
			SMTP:     settings.SMTP{Name: "aiosmtpd", Host: "127.0.0.1", Port: port, Username: "relay@example.com"},
			RootCAs:  ca.Pool,
			Password: staticSecret("nope"),
			Logger:   testLogger(&logs),
		})
		out := deliver(t, s, envelope(testMessage, "b@example.net"))
		wantClass(t, out, Deferred)
		if out.Results[0].Code != 535 {
			t.Errorf("result %+v", out.Results[0])
		}
	})
}
