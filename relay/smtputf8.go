package relay

import "github.com/emersion/go-smtp"

// errNeedsUTF8 refuses a non-ASCII address in a transaction that did not
// declare SMTPUTF8 (RFC 6531 §3.4): relayed on, it could not be told apart
// from mail that an upstream without SMTPUTF8 may take.
var errNeedsUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
	Message: "Non-ASCII address without SMTPUTF8 in MAIL FROM"}
