package upstream

import (
	"strconv"
	"strings"
)

// replyHint explains one known provider reply: what it means and what to
// do. A reply matches when it holds every one of want (compared in lower
// case), so entries name the code and the words that identify it.
type replyHint struct {
	want []string
	hint string
}

// replyHints are the provider replies operators most often meet, with
// their sources. The first match wins: put the specific before the
// general.
var replyHints = []replyHint{
	// Exchange Online, since Basic authentication for SMTP AUTH is off:
	// https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission
	{[]string{"5.7.30"}, "Microsoft has turned Basic (password) authentication off: configure an oauth2 block for this upstream (README, OAuth2)"},
	{[]string{"basic authentication is not supported"}, "Microsoft has turned Basic (password) authentication off: configure an oauth2 block for this upstream (README, OAuth2)"},
	// https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365
	{[]string{"5.7.139"}, "Microsoft refuses SMTP AUTH for this tenant or mailbox (SMTP AUTH disabled, or security defaults/conditional access): enable Authenticated SMTP for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false) or use oauth2"},
	{[]string{"535", "5.7.3"}, "Microsoft refused the login: with a password, SMTP AUTH may be off or the password wrong (use oauth2); with oauth2, the app needs SMTP.SendAsApp with admin consent and its service principal needs access to the mailbox (Add-MailboxPermission)"},
	// https://learn.microsoft.com/exchange/troubleshoot/email-delivery/send-as-denied-error
	{[]string{"sendasdenied"}, "the mailbox may not send as this sender: set envelope_from (and from_header = \"rewrite\") to the mailbox, or grant it Send As rights on the address"},
	{[]string{"5.7.60"}, "the mailbox may not send as this sender: set envelope_from (and from_header = \"rewrite\") to the mailbox, or grant it Send As rights on the address"},
	// https://support.google.com/mail/?p=BadCredentials
	{[]string{"535", "5.7.8"}, "the login was refused; for Gmail use an app password (with 2-Step Verification) or oauth2, not the account password"},
	// https://service.mail.qq.com/detail/0/428 and the reply itself.
	{[]string{"mail from address must be same as authorization user"}, "the provider takes only the account as sender: set envelope_from to the account (and from_header = \"rewrite\")"},
	// 163/126 list their codes at https://help.mail.163.com/faqDetail.do?code=d7a5dc8471cd0c0e8b4b8f4f8e49998b374173cfe9171305fa1ce630d7f67ac2
	{[]string{"dt:spm"}, "163/126 classed the message as spam (content or sending volume): retrying the same message will not help; change the content, lower the rate, or ask the provider to review"},
}

// Hint returns the explanation of a known provider reply, or "". text is
// a reply as last_error and the logs show it ("550 5.7.30 Basic
// authentication is not supported …").
func Hint(text string) string {
	if text == "" {
		return ""
	}
	low := strings.ToLower(text)
	for _, h := range replyHints {
		all := true
		for _, w := range h.want {
			if !strings.Contains(low, w) {
				all = false
				break
			}
		}
		if all {
			return h.hint
		}
	}
	return ""
}

// resultText renders r as last_error does, for Hint.
func resultText(r Result) string {
	switch {
	case r.Code != 0 && r.Enhanced != "":
		return strconv.Itoa(r.Code) + " " + r.Enhanced + " " + r.Message
	case r.Code != 0:
		return strconv.Itoa(r.Code) + " " + r.Message
	}
	return r.Message
}

// logHints logs, once per distinct hint, what the provider's replies in
// out mean, so the log line beside each result says what to do.
func (s *SMTP) logHints(out Outcome) {
	seen := map[string]bool{}
	for _, r := range out.Results {
		if r.Class == Sent {
			continue
		}
		text := resultText(r)
		if h := Hint(text); h != "" && !seen[h] {
			seen[h] = true
			s.log.Warn("provider reply explained", "reply", text, "class", r.Class.String(), "hint", h)
		}
	}
}
