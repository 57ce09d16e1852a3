package upstream

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
)

// loginClient implements the LOGIN mechanism without an initial response
// and answers the server's prompts by what they ask for, since servers word
// them differently ("Username:", "User Name", "Password:", "password").
// go-sasl's LOGIN client expects the exact text "Password:".
type loginClient struct {
	user, pass string
	step       int
}

func (c *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	ch := strings.ToLower(string(challenge))
	switch {
	case strings.Contains(ch, "pass"):
		return []byte(c.pass), nil
	case strings.Contains(ch, "user"):
		return []byte(c.user), nil
	case c.step == 1:
		return []byte(c.user), nil
	case c.step == 2:
		return []byte(c.pass), nil
	}
	return nil, errors.New("unexpected LOGIN challenge from server")
}

// cramMD5Client implements CRAM-MD5 (RFC 2195).
type cramMD5Client struct {
	user, pass string
}

func (c *cramMD5Client) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (c *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	h := hmac.New(md5.New, []byte(c.pass))
	h.Write(challenge)
	return []byte(c.user + " " + hex.EncodeToString(h.Sum(nil))), nil
}

// xoauth2Client implements Google's and Microsoft's XOAUTH2 mechanism. On
// failure the server sends a JSON error as a challenge and expects an
// empty response before its final reply.
type xoauth2Client struct {
	user, token string
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + c.user + "\x01auth=Bearer " + c.token + "\x01\x01"), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return []byte{}, nil
}

var (
	_ sasl.Client = (*loginClient)(nil)
	_ sasl.Client = (*cramMD5Client)(nil)
	_ sasl.Client = (*xoauth2Client)(nil)
)
