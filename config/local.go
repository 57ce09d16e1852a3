package config

import (
	"errors"
	"strings"
)

// Errors of ResolveRecipient. The daemon turns them into SMTP replies
// (501 5.1.3 and 550 5.1.1), the sendmail shim into exit codes.
var (
	ErrBadRecipient = errors.New("bad recipient address syntax")
	ErrUnknownLocal = errors.New("local name with no alias, and no local_catchall")
)

// Resolution says where mail for one recipient goes.
type Resolution struct {
	Addrs []string // the addresses the message is queued for
	Local string   // the local name (lower case) when the recipient is a user of this machine, else ""
	Via   string   // "alias", "local_catchall", or "" for an address relayed as it is
}

// LocalName returns the local part of addr, lower case, when addr means a
// user of this machine: no domain, or this host's name, localhost or
// localhost.localdomain as its domain (as Postfix's mydestination does by
// default).
func (c *Config) LocalName(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return strings.ToLower(addr), true
	}
	if isLocalDomain(addr[i+1:], c.Hostname) {
		return strings.ToLower(addr[:i]), true
	}
	return "", false
}

func isLocalDomain(d, hostname string) bool {
	d = strings.ToLower(d)
	return d == strings.ToLower(hostname) || d == "localhost" || d == "localhost.localdomain"
}

// ResolveRecipient is the one decision about a recipient: the daemon's
// policy, the sendmail shim while the daemon is down and `sendmail -bv`
// all call it, so they cannot disagree. An address at another domain is
// relayed as it is; a local name goes to its alias, else to
// local_catchall, else it is ErrUnknownLocal: mail to root never vanishes.
func (c *Config) ResolveRecipient(to string) (Resolution, error) {
	if strings.Contains(to, "@") {
		if !ValidAddress(to) {
			return Resolution{}, ErrBadRecipient
		}
	} else if !ValidLocalName(to) {
		return Resolution{}, ErrBadRecipient
	}
	name, local := c.LocalName(to)
	if !local {
		return Resolution{Addrs: []string{to}}, nil
	}
	if addrs, ok := c.Aliases[name]; ok {
		return Resolution{Addrs: addrs, Local: name, Via: "alias"}, nil
	}
	if len(c.LocalCatchall) > 0 {
		return Resolution{Addrs: c.LocalCatchall, Local: name, Via: "local_catchall"}, nil
	}
	return Resolution{Local: name}, ErrUnknownLocal
}
