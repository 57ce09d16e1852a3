package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"
)

// ProbeReport is what `outbox test-upstream` shows the operator.
type ProbeReport struct {
	Addr         string
	TLSVersion   string // e.g. "TLS 1.3"; "" without TLS
	Cipher       string
	CertSubject  string
	CertIssuer   string
	CertNotAfter time.Time
	AuthMech     string
	AuthOK       bool
	AuthError    string
	RcptResult   string // reply to RCPT TO when a recipient was given
	Extensions   []string

	// OAuth2: the access token's expiry, scopes and (Microsoft app-only)
	// roles; only for upstreams with an oauth2 block.
	OAuth       bool
	TokenExpiry time.Time
	TokenScopes []string
	TokenRoles  []string
}

// probeExtensions are the ESMTP extensions worth showing. go-smtp does not
// expose the raw EHLO reply, so we ask for the ones we know.
var probeExtensions = []string{"STARTTLS", "AUTH", "SIZE", "8BITMIME", "SMTPUTF8", "DSN",
	"PIPELINING", "ENHANCEDSTATUSCODES", "CHUNKING", "BINARYMIME", "REQUIRETLS"}

func (p *ProbeReport) fill(cn *conn) {
	if st := cn.tls; st != nil {
		p.TLSVersion = tls.VersionName(st.Version)
		p.Cipher = tls.CipherSuiteName(st.CipherSuite)
		if len(st.PeerCertificates) > 0 {
			leaf := st.PeerCertificates[0]
			p.CertSubject = leaf.Subject.String()
			p.CertIssuer = leaf.Issuer.String()
			p.CertNotAfter = leaf.NotAfter
		}
	}
	for _, e := range probeExtensions {
		if ok, param := cn.c.Extension(e); ok {
			p.Extensions = append(p.Extensions, strings.TrimSpace(e+" "+param))
		}
	}
}

// Probe connects, negotiates TLS and authenticates as a delivery would, and
// when rcpt is not empty asks the server whether it would take mail for
// rcpt. It never sends a message. The returned error is a verdict for the
// operator; the report holds whatever was learnt before it.
func (s *SMTP) Probe(ctx context.Context, rcpt string) (*ProbeReport, error) {
	p := &ProbeReport{Addr: s.addr}
	if s.cfg.OAuth != nil {
		defer func() {
			p.OAuth = true
			p.TokenExpiry, p.TokenScopes, p.TokenRoles = s.cfg.OAuth.TokenInfo()
		}()
	}
	cn, _, err := s.get(ctx, p)
	if err != nil {
		return p, err
	}
	defer cn.quit()
	if rcpt == "" {
		return p, nil
	}
	from := ""
	if strings.Contains(s.cfg.Username, "@") {
		from = s.cfg.Username
	}
	if err := cn.c.Mail(from, nil); err != nil {
		return p, fmt.Errorf("MAIL FROM:<%s> refused by %s: %w", from, s.addr, err)
	}
	err = cn.c.Rcpt(rcpt, nil)
	if err != nil {
		p.RcptResult = err.Error()
	} else {
		p.RcptResult = "250 accepted"
	}
	cn.c.Reset()
	if err != nil {
		return p, fmt.Errorf("RCPT TO:<%s> refused by %s: %w", rcpt, s.addr, err)
	}
	return p, nil
}
