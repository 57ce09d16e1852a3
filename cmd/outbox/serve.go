package main

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/kardianos/service"

	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/spool"
)

func cmdServe(a *app, args []string) int {
	// SIGHUP would end the process by default (exit 129): catch it before
	// anything else, so that even an early `systemctl reload` is harmless.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fs := a.flags("serve")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg, a.stderr, level)
	ctx, stop := signalContext()
	defer stop()
	r, err := relay.New(cfg, log, relay.Options{Ready: notifyReady, Level: level, Version: versionString()})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitCodeFor(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for {
		select {
		case err := <-done:
			if errors.Is(err, spool.ErrCorrupt) {
				return exitUnavailable // as at start-up
			}
			if err != nil {
				return exitSoftware
			}
			return exitOK
		case <-hup:
			reload(r)
		}
	}
}

// reload re-reads relay.hcl on SIGHUP. An invalid file is logged and the
// running configuration kept; either way systemd hears the reload is over.
func reload(r *relay.Relay) {
	sdReloading()
	r.ReloadFile()
	sdNotify(daemon.SdNotifyReady)
}

// exitCodeFor maps a start-up error to an exit code: a spool path that
// names another file is a configuration problem, 78, so service managers
// do not restart in a loop. relay.New gets a parsed configuration, so no
// *config.Error reaches here: parseAndLoad has already answered those.
func exitCodeFor(err error) int {
	if errors.Is(err, spool.ErrNotSpool) {
		return exitConfig
	}
	return exitUnavailable
}

// notifyReady tells systemd (Type=notify) that the daemon is accepting.
func notifyReady() {
	sdNotify(daemon.SdNotifyReady)
}

// program satisfies the service.Interface that service.New demands. Its
// methods would run only under Service.Run, which outbox never calls: the
// installed unit runs `outbox serve` (the Arguments given to service.New),
// and `outbox service ACTION` only asks the service manager to act.
type program struct{}

func (program) Start(service.Service) error { return nil }
func (program) Stop(service.Service) error  { return nil }
