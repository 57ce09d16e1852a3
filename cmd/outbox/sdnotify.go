package main

import (
	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify sends a state line to systemd when it is listening; outside
// systemd it does nothing.
func sdNotify(state string) {
	daemon.SdNotify(false, state)
}
