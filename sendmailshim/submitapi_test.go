package sendmailshim

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/maildrop"
)

func loadTestConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSubmitAPI hands a message to the daemon through Submit: the bytes
// arrive as given (no field added or removed), with the envelope given.
func TestSubmitAPI(t *testing.T) {
	dir := testDir(t)
	path := writeConfig(t, dir, "")
	d := startDaemon(t, filepath.Join(dir, "var", "submit.sock"))
	msg := "From: a@example.com\r\nTo: b@example.org\r\nBcc: c@example.org\r\nSubject: api\r\n\r\nbody\r\n"
	err := Submit(loadTestConfig(t, path), path, "a@example.com", []string{"b@example.org", "c@example.org", "B@example.org"}, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	got := d.wait(t, 1)
	if got.From != "a@example.com" || strings.Join(got.Rcpts, " ") != "b@example.org c@example.org" {
		t.Errorf("envelope %q %v", got.From, got.Rcpts)
	}
	if string(got.Data) != msg {
		t.Errorf("data changed:\n%q\nwant\n%q", got.Data, msg)
	}

	d.setDataErr(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "disk busy"})
	err = Submit(loadTestConfig(t, path), path, "a@example.com", []string{"b@example.org"}, strings.NewReader(msg))
	if ExitStatus(err) != ExitTempFail {
		t.Errorf("451: status %d (%v)", ExitStatus(err), err)
	}
	d.setDataErr(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "bad content"})
	err = Submit(loadTestConfig(t, path), path, "a@example.com", []string{"b@example.org"}, strings.NewReader(msg))
	if ExitStatus(err) != ExitDataErr {
		t.Errorf("554 5.6.0: status %d (%v)", ExitStatus(err), err)
	}
	for _, bad := range [][]string{nil, {"no-at-sign"}} {
		if err := Submit(loadTestConfig(t, path), path, "a@example.com", bad, strings.NewReader(msg)); ExitStatus(err) == ExitOK || ExitStatus(err) == ExitTempFail {
			t.Errorf("recipients %q: status %d", bad, ExitStatus(err))
		}
	}
	if ExitStatus(nil) != 0 || ExitStatus(errors.New("x")) != ExitSoftware {
		t.Error("ExitStatus of nil or a plain error")
	}
}

// TestSubmitAPIDaemonDown stores the message in the maildrop folder, with
// the submitting user recorded, as the sendmail command does.
func TestSubmitAPIDaemonDown(t *testing.T) {
	dir := testDir(t)
	path := writeConfig(t, dir, "")
	msg := "Subject: down\r\n\r\nbody\r\n"
	if err := Submit(loadTestConfig(t, path), path, "a@example.com", []string{"b@example.org"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "var", "maildrop")
	names, err := maildrop.List(md)
	if err != nil || len(names) != 1 {
		t.Fatalf("maildrop %v, %v", names, err)
	}
	env, body, err := maildrop.Read(filepath.Join(md, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	data, _ := io.ReadAll(body)
	if string(data) != msg || env.From != "a@example.com" || env.User == "" {
		t.Errorf("maildrop file %+v %q", env, data)
	}
}
