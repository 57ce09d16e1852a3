// Package loopback decides whether a configured host name means this
// machine, for the rules that allow plain text only there (upstream
// tls = "none", http token and webhook addresses) and for the listeners
// trusted by default. The configuration and the SMTP client share it so
// that what `outbox check` accepts is what the client then allows.
package loopback

import (
	"net/netip"
	"strings"
)

// Host reports whether host names this machine: "localhost" (with or
// without the root's trailing dot, any case), or a loopback address,
// bracketed or not, with or without an IPv6 zone ("::1%lo").
func Host(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") || strings.EqualFold(host, "localhost.") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
