package main

import (
	"fmt"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// sdNotify sends a state line to systemd when it is listening; outside
// systemd it does nothing.
func sdNotify(state string) {
	daemon.SdNotify(false, state)
}

// sdReloading tells systemd a reload has begun. systemd 253 and later
// (Type=notify-reload) match RELOADING=1 to the reload request by the
// CLOCK_MONOTONIC time sent with it, which go-systemd's daemon package
// does not add; older versions ignore the extra line.
func sdReloading() {
	var ts unix.Timespec
	state := daemon.SdNotifyReloading
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		state += fmt.Sprintf("\nMONOTONIC_USEC=%d", ts.Nano()/1000)
	}
	sdNotify(state)
}
