package sendmailshim

import (
	"errors"
	"fmt"

	"github.com/emersion/go-smtp"
)

// replyError is the daemon's refusal of a command: its reply code,
// enhanced status code (zeros when the reply had none) and text.
type replyError struct {
	Code         int
	EnhancedCode [3]int
	Message      string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("SMTP error %d: %s", e.Code, e.Message)
}

// daemonReply returns the daemon's reply err carries, if it carries one.
func daemonReply(err error) (*replyError, bool) {
	var re *replyError
	if errors.As(err, &re) {
		return re, true
	}
	return clientReply(err)
}

// clientReply reads the replies of the go-smtp client, which -bs uses to
// relay its client's commands to the daemon.
func clientReply(err error) (*replyError, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &replyError{Code: se.Code, EnhancedCode: se.EnhancedCode, Message: se.Message}, true
	}
	return nil, false
}
