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

func (adminAPI) List(ctx context.Context, cfg *config.Config) ([]queuedMessage, error) {
	list, err := adminapi.ListQueue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	out := make([]queuedMessage, 0, len(list))
	for _, m := range list {
		q := queuedMessage{ID: m.ID, From: m.From, Size: m.Size, Arrived: m.Arrived, Held: m.Held}
		for _, r := range m.Recipients {
			q.Recipients = append(q.Recipients, queuedRecipient{Address: r.Address, Status: r.Status, LastError: r.LastError})
		}
		out = append(out, q)
	}
	return out, nil
}

func (adminAPI) Flush(ctx context.Context, cfg *config.Config) error {
	_, err := adminapi.NewClient(cfg.Admin.Socket).Flush(ctx)
	if errors.Is(err, adminapi.ErrNotRunning) {
		return fmt.Errorf("%w: %w", errDaemonDown, err)
	}
	return err
}
