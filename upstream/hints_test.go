package upstream

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/testpki"
)

func TestHint(t *testing.T) {
	for _, tc := range []struct{ reply, want string }{
		{"554 DT:SPM 163 smtp14,EsCowAD3 1700000000,please see http://mail.163.com/help/help_spam_16.htm?ip=1.2.3.4", "will not help"},
		{"550 5.7.30 Basic authentication is not supported for Client Submission.", "oauth2 block"},
		{"AUTH LOGIN rejected by smtp.office365.com:587: 535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.", "SmtpClientAuthenticationDisabled"},
		{"AUTH XOAUTH2 rejected by smtp.office365.com:587: 535 5.7.3 Authentication unsuccessful", "SMTP.SendAsApp"},
		{"AUTH PLAIN rejected by smtp.gmail.com:587: 535 5.7.8 Username and Password not accepted. For more information, go to https://support.google.com/mail/?p=BadCredentials", "app password"},
		{"501 mail from address must be same as authorization user", "envelope_from"},
		{"554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message", "Send As"},
		{"250 2.0.0 OK", ""},
		{"451 4.3.0 try again later", ""},
		{"", ""},
	} {
		got := Hint(tc.reply)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("Hint(%q) = %q, want it to mention %q", tc.reply, got, tc.want)
		}
	}
}

func TestHintInLog(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	fs := startFake(t, ca, fakeOptions{})
	fs.set(func(fs *fakeServer) {
		fs.dataErr = &smtp.SMTPError{Code: 554, Message: "DT:SPM 163 smtp3,GdxpCgD3"}
	})
	var logs syncBuffer
	s := newTarget(t, clientConfig(fs, ca, &logs))
	out := deliver(t, s, envelope(testMessage, "b@example.net"))
	wantClass(t, out, Failed)
	if !strings.Contains(logs.String(), "provider reply explained") || !strings.Contains(logs.String(), "will not help") {
		t.Errorf("no hint in the log:\n%s", logs.String())
	}
}
