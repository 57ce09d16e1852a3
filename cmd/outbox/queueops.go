package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/spool"
)

// queueBody prints whole stored messages: through the daemon, which lets
// root, the outbox user and the submitting user read them, else from the
// spool file (whose mode leaves it to root and the outbox user).
func queueBody(a *app, args []string) int {
	return forEachID(a, "body", args, 60*time.Second, func(ctx context.Context, cfg *config.Config, c *adminapi.Client, id string) error {
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
		return err
	})
}

// queueBounce fails messages now through the daemon, which sends their
// senders the notices; it needs the daemon running.
func queueBounce(a *app, args []string) int {
	return forEachID(a, "bounce", args, 60*time.Second, func(ctx context.Context, _ *config.Config, c *adminapi.Client, id string) error {
		err := c.Bounce(ctx, id)
		if err == nil {
			fmt.Fprintf(a.stdout, "%s: bounced\n", id)
		}
		return err
	})
}
