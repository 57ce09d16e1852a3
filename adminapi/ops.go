package adminapi

import (
	"context"
	"net/url"
)

// Body returns a whole stored message, headers and body, exactly as
// queued.
func (c *Client) Body(ctx context.Context, id string) ([]byte, error) {
	var out struct {
		Body []byte `json:"body"`
	}
	err := c.do(ctx, "GET", "/body", url.Values{"id": {id}}, &out)
	return out.Body, err
}

// Bounce fails every pending recipient of a message now, with notices to
// its sender.
func (c *Client) Bounce(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/bounce", url.Values{"id": {id}}, nil)
}
