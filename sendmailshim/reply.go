package sendmailshim

import (
	"errors"

	"github.com/emersion/go-smtp"
)

// daemonReply returns the daemon's reply err carries, if it carries one:
// read on the submission socket (gosmtp.ReplyError), by the go-smtp
// client of -bs, or from the daemon's session in process (sessionReply).
// An enhanced status code the reply lacks is zero or smtp.NoEnhancedCode.
func daemonReply(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se, true
	}
	return nil, false
}
