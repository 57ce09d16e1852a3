package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/spool"
)

// queueBody prints whole stored messages: through the daemon, which lets
// root, the outbox user and the submitting user read them, else from the
// spool file (whose mode leaves it to root and the outbox user).
func queueBody(a *app, args []string) int {
	fs := a.flags("queue")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(a.stderr, "outbox queue body: give one or more message IDs (see `outbox queue ls`)")
		return exitUsage
	}
	cfg, code := a.loadConfig()
	if cfg == nil {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := adminapi.NewClient(cfg.Admin.Socket)
	rc := exitOK
	for _, id := range fs.Args() {
		body, err := c.Body(ctx, id)
		if errors.Is(err, adminapi.ErrNotRunning) {
			err = withSpool(cfg, true, func(s *spool.Spool) error {
				r, err := s.Body(id)
				if err != nil {
					return err
				}
				defer r.Close()
				body, err = io.ReadAll(r)
				return err
			})
		}
		if err == nil {
			_, err = a.stdout.Write(body)
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "outbox queue body %s: %v\n", id, err)
			if errors.Is(err, adminapi.ErrForbidden) {
				rc = exitNoPerm
			} else if rc == exitOK {
				rc = exitError
			}
		}
	}
	return rc
}

// queueBounce fails messages now through the daemon, which sends their
// senders the notices; it needs the daemon running.
func queueBounce(a *app, args []string) int {
	fs := a.flags("queue")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(a.stderr, "outbox queue bounce: give one or more message IDs (see `outbox queue ls`)")
		return exitUsage
	}
	cfg, code := a.loadConfig()
	if cfg == nil {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := adminapi.NewClient(cfg.Admin.Socket)
	rc := exitOK
	for _, id := range fs.Args() {
		err := c.Bounce(ctx, id)
		if err == nil {
			fmt.Fprintf(a.stdout, "%s: bounced\n", id)
			continue
		}
		fmt.Fprintf(a.stderr, "outbox queue bounce %s: %v\n", id, err)
		switch {
		case errors.Is(err, adminapi.ErrNotRunning):
			return exitUnavailable
		case errors.Is(err, adminapi.ErrForbidden):
			rc = exitNoPerm
		case rc == exitOK:
			rc = exitError
		}
	}
	return rc
}
