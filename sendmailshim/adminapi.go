package sendmailshim

import (
	"context"
	"errors"
	"fmt"

	"github.com/outbox-mta/outbox/adminapi"
	"github.com/outbox-mta/outbox/config"
)

// adminAPI reaches the daemon through package adminapi.
type adminAPI struct{}

func (adminAPI) List(ctx context.Context, cfg *config.Config, fn func(queuedMessage) error) error {
	return adminapi.EachQueued(ctx, cfg, 0, func(m adminapi.Message) error {
		q := queuedMessage{ID: m.ID, From: m.From, Size: m.Size, Arrived: m.Arrived, Held: m.Held}
		for _, r := range m.Recipients {
			q.Recipients = append(q.Recipients, queuedRecipient{Address: r.Address, Status: r.Status, LastError: r.LastError})
		}
		return fn(q)
	})
}

func (adminAPI) Flush(ctx context.Context, cfg *config.Config) error {
	_, err := adminapi.NewClient(cfg.Admin.Socket).Flush(ctx)
	if errors.Is(err, adminapi.ErrNotRunning) {
		return fmt.Errorf("%w: %w", errDaemonDown, err)
	}
	return err
}
