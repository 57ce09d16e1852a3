package adminapi

import (
	"context"
	"time"
)

// Status is the daemon's one-screen summary (`outbox status`).
type Status struct {
	Version   string           `json:"version"`
	Started   time.Time        `json:"started"`
	Uptime    float64          `json:"uptime_seconds"`
	Listeners []string         `json:"listeners"`
	Upstreams []UpstreamStatus `json:"upstreams"`
	Queue     QueueStatus      `json:"queue"`
	SpoolSize int64            `json:"spool_size_bytes"`
}

// UpstreamStatus is one upstream's health as the daemon sees it.
type UpstreamStatus struct {
	Name        string     `json:"name"`
	Address     string     `json:"address"` // host:port, or maildir:PATH
	State       string     `json:"state"`   // ok, failing, paused, or unknown before any attempt
	Paused      bool       `json:"paused"`
	PausedUntil *time.Time `json:"paused_until,omitempty"`
	PauseReason string     `json:"pause_reason,omitempty"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	TokenExpiry *time.Time `json:"token_expiry,omitempty"`
}

// QueueStatus sums up the queue.
type QueueStatus struct {
	Messages  int     `json:"messages"`
	Pending   int     `json:"pending"`
	Deferred  int     `json:"deferred"`
	Held      int     `json:"held"`
	OldestAge float64 `json:"oldest_age_seconds"`
}

// Status returns the daemon's summary.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, "GET", "/status", nil, &out)
	return out, err
}
