package upstream

import (
	"context"
	"errors"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/outbox-mta/outbox/internal/gosmtp"
)

// OAuthSource provides the access tokens of an upstream whose OAuth2 flow
// Outbox runs itself (package upstream/oauth implements it).
type OAuthSource interface {
	// Token returns a token that is not about to expire.
	Token(ctx context.Context) (string, error)
	// Invalidate forgets a token the server refused.
	Invalidate(token string)
	// Changed reports whether the stored tokens changed on disk since
	// they were read (`outbox oauth login` ran).
	Changed() bool
	// TokenInfo describes the current token for test-upstream.
	TokenInfo() (expiry time.Time, scopes, roles []string)
	// Refreshes counts the token requests that succeeded and failed.
	Refreshes() (ok, failed uint64)
}

// TokenRefreshes reports the upstream's token requests; oauth is false
// when the upstream has no oauth2 block (nothing to report).
func (s *SMTP) TokenRefreshes() (ok, failed uint64, oauth bool) {
	if s.cfg.OAuth == nil {
		return 0, 0, false
	}
	ok, failed = s.cfg.OAuth.Refreshes()
	return ok, failed, true
}

// TokenExpiry is when the current OAuth2 access token expires; zero when
// there is none (or no oauth2 block).
func (s *SMTP) TokenExpiry() time.Time {
	if s.cfg.OAuth == nil {
		return time.Time{}
	}
	exp, _, _ := s.cfg.OAuth.TokenInfo()
	return exp
}

// configProblem is implemented by errors that only the operator can fix
// (an OAuth2 invalid_grant, for instance): the upstream pauses on them
// instead of hammering the provider.
type configProblem interface {
	ConfigProblem() bool
}

func isConfigProblem(err error) bool {
	var cp configProblem
	return errors.As(err, &cp) && cp.ConfigProblem()
}

// tokenRefused reports whether an AUTH failure says the bearer token is
// bad, so that one fresh token is worth a try: a reply such as 535 (Gmail
// 5.7.8, Microsoft 5.7.3) after XOAUTH2's 334 error challenge, or
// OAUTHBEARER's error challenge. A lost connection is not one.
func tokenRefused(err error) bool {
	var be *sasl.OAuthBearerError
	return gosmtp.Reply(err) != nil || errors.As(err, &be)
}
