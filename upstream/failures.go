package upstream

import (
	"errors"
	"sync/atomic"
)

// failures counts the connection set-ups to an upstream that failed for
// causes an operator must fix rather than wait out: a refused or
// impossible authentication, and TLS that could not be had.
type failures struct {
	auth, tls atomic.Uint64
}

// tlsFailure marks a failed TLS handshake.
type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return e.err.Error() }
func (e *tlsFailure) Unwrap() error { return e.err }

func (f *failures) count(err error) {
	var ae *authError
	var tf *tlsFailure
	switch {
	case errors.As(err, &ae):
		f.auth.Add(1)
	case errors.As(err, &tf), errors.Is(err, errNoStartTLS):
		f.tls.Add(1)
	}
}

// Failures is how many connection set-ups failed since start, by cause.
type Failures struct {
	Auth uint64 // AUTH refused, not offered, or its secret unreadable
	TLS  uint64 // STARTTLS missing or a TLS handshake that failed
}

// Failures returns the upstream's failure counts since it was built.
func (s *SMTP) Failures() Failures {
	return Failures{Auth: s.fails.auth.Load(), TLS: s.fails.tls.Load()}
}
