package config

import "github.com/outbox-mta/outbox/config/lite"

// The address and name checks live in package lite, which the sendmail
// shim reads relay.hcl with: one copy for both.

// ValidAddress reports whether s is a mailbox local@domain as RFC 5321
// allows it (dot-atom or quoted local part, UTF-8 permitted for SMTPUTF8).
func ValidAddress(s string) bool { return lite.ValidAddress(s) }

// ValidLocalName reports whether s is a plausible local user name without a
// domain ("root", "www-data").
func ValidLocalName(s string) bool { return lite.ValidLocalName(s) }

func validDomain(d string) bool { return lite.ValidDomain(d) }

// validHostname reports whether h can be our EHLO name: a domain as
// validDomain takes it, but in ASCII and without an address literal.
func validHostname(h string) bool { return lite.ValidHostname(h) }
