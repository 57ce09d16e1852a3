//go:build !shimlean

package sendmailshim

import (
	"errors"

	"github.com/emersion/go-smtp"
)

// clientReply reads the replies of the go-smtp client, which -bs uses to
// relay its client's commands to the daemon.
func clientReply(err error) (*replyError, bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &replyError{Code: se.Code, EnhancedCode: se.EnhancedCode, Message: se.Message}, true
	}
	return nil, false
}
