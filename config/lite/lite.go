// Package lite holds the defaults and value checks (addresses, domains,
// host names, sizes) that package config and the sendmail shim share. It
// is a leaf: it imports only the standard library.
package lite

import "os"

// DefaultPath is where relay.hcl lives when neither --config (-C) nor
// OUTBOX_CONFIG says otherwise; config.DefaultPath is the same.
const DefaultPath = "/etc/outbox/relay.hcl"

// DefaultSubmitSocket is the submission socket when relay.hcl has no
// listen block.
const DefaultSubmitSocket = "/run/outbox/submit.sock"

// DefaultMaxMessageSize is limits.max_message_size when unset.
const DefaultMaxMessageSize = 25 << 20

// DefaultHostname is the hostname when relay.hcl sets none: the machine's
// host name, else "localhost".
func DefaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "localhost"
	}
	return h
}
