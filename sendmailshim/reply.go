package sendmailshim

import (
	"errors"
	"fmt"
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
