package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/kardianos/service"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/spool"
)

func cmdServe(a *app, args []string) int {
	fs := a.flags("serve")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	log := newLogger(cfg, a.stderr)
	ctx, stop := signalContext()
	defer stop()
	r, err := relay.New(cfg, log, relay.Options{Ready: notifyReady})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitCodeFor(err)
	}
	if err := r.Run(ctx); err != nil {
		return exitSoftware
	}
	return exitOK
}

// exitCodeFor maps a start-up error to an exit code: configuration
// problems are 78 so service managers do not restart in a loop.
func exitCodeFor(err error) int {
	var ce *config.Error
	if errors.As(err, &ce) || errors.Is(err, spool.ErrNotSpool) {
		return exitConfig
	}
	return exitUnavailable
}

// notifyReady tells systemd (Type=notify) that the daemon is accepting.
func notifyReady() {
	sdNotify("READY=1")
}

// program adapts the daemon to kardianos/service.
type program struct {
	a      *app
	cancel context.CancelFunc
	done   chan struct{}
}

func (p *program) Start(s service.Service) error {
	cfg, code := p.a.loadConfig()
	if cfg == nil {
		return fmt.Errorf("configuration invalid (exit %d)", code)
	}
	log := newLogger(cfg, os.Stderr)
	r, err := relay.New(cfg, log, relay.Options{Ready: notifyReady})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() { r.Run(ctx); close(p.done) }()
	return nil
}

func (p *program) Stop(s service.Service) error {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
	return nil
}
