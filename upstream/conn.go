package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/outbox-mta/outbox/internal/gosmtp"
	"github.com/outbox-mta/outbox/internal/loopback"
	"github.com/outbox-mta/outbox/upstream/settings"
)

// conn is one SMTP session. It is used by one goroutine at a time.
type conn struct {
	raw       net.Conn // the TCP connection under any TLS layer
	c         *smtp.Client
	tls       *tls.ConnectionState
	mech      string // SASL mechanism used, "" if none
	lastUsed  time.Time
	needHello bool // EHLO again before the next transaction (after RSET)
}

// close drops the connection without a goodbye.
func (cn *conn) close() {
	cn.c.Close()
}

// quit says goodbye politely but briefly, then closes.
func (cn *conn) quit() {
	cn.raw.SetDeadline(time.Now().Add(quitTimeout))
	cn.c.CommandTimeout = quitTimeout
	if err := cn.c.Quit(); err != nil {
		cn.c.Close()
	}
}

// connect dials the upstream and runs the greeting, TLS, EHLO and AUTH.
// Every error it returns is a temporary problem with the upstream as a
// whole; its text is safe to show and to log.
func (s *SMTP) connect(ctx context.Context, probe *ProbeReport) (cn *conn, err error) {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	raw, err := s.cfg.Dial(dctx, "tcp", s.addr)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connecting to %s: %w", s.addr, ctx.Err())
		}
		return nil, fmt.Errorf("connecting to %s: %w", s.addr, err)
	}
	// A cancelled context interrupts whatever step is blocked.
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer func() {
		stop()
		if err != nil {
			raw.Close()
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", err, ctx.Err())
			}
		}
	}()
	cn = &conn{raw: raw}

	switch s.cfg.TLS {
	case settings.ImplicitTLS:
		raw.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
		tc := tls.Client(raw, s.tlsConf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, s.tlsError(err)
		}
		raw.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		cn.tls = &st
		cn.c = smtp.NewClient(tc)
	case settings.StartTLS:
		tc, err := s.startTLS(ctx, raw)
		if err != nil {
			return nil, err
		}
		st := tc.ConnectionState()
		cn.tls = &st
		cn.c = gosmtp.NewClientAfterStartTLS(tc, s.cfg.Host)
	default:
		cn.c = smtp.NewClient(raw)
	}
	cn.c.CommandTimeout = s.cfg.CommandTimeout
	cn.c.SubmissionTimeout = s.cfg.DataTimeout
	if err := cn.c.Hello(s.cfg.Hostname); err != nil {
		cn.c.Close()
		return nil, fmt.Errorf("greeting %s: %w", s.addr, err)
	}
	if probe != nil {
		probe.fill(cn)
	}
	if err := s.authenticate(ctx, cn, probe); err != nil {
		cn.c.Close()
		return nil, err
	}
	s.log.Debug("connected", "addr", s.addr, "tls", tlsVersion(cn.tls), "auth", cn.mech)
	return cn, nil
}

// startTLS reads the greeting, sends EHLO with our name and STARTTLS, and
// runs the TLS handshake, where go-smtp's client cannot (see
// gosmtp.NewClientAfterStartTLS).
func (s *SMTP) startTLS(ctx context.Context, raw net.Conn) (*tls.Conn, error) {
	raw.SetDeadline(time.Now().Add(s.cfg.CommandTimeout))
	br := bufio.NewReader(raw)
	tr := textproto.NewReader(br)
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("greeting from %s: %w", s.addr, protoError(err))
	}
	if _, err := fmt.Fprintf(raw, "EHLO %s\r\n", s.cfg.Hostname); err != nil {
		return nil, fmt.Errorf("EHLO to %s: %w", s.addr, err)
	}
	_, msg, err := tr.ReadResponse(250)
	offered := false
	if err == nil {
		lines := strings.Split(msg, "\n")
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "STARTTLS") {
				offered = true
			}
		}
	} else if c := replyCode(protoError(err)); c != 500 && c != 502 {
		// 500/502: the server does not speak ESMTP, hence no STARTTLS.
		return nil, fmt.Errorf("EHLO to %s: %w", s.addr, protoError(err))
	}
	if !offered {
		if s.wantsAuth() {
			return nil, fmt.Errorf("%w by %s: refusing to send credentials", errNoStartTLS, s.addr)
		}
		return nil, fmt.Errorf("%w by %s: refusing to send mail in clear (tls = \"starttls\")", errNoStartTLS, s.addr)
	}
	if _, err := fmt.Fprintf(raw, "STARTTLS\r\n"); err != nil {
		return nil, fmt.Errorf("STARTTLS to %s: %w", s.addr, err)
	}
	if _, _, err := tr.ReadResponse(220); err != nil {
		return nil, fmt.Errorf("STARTTLS refused by %s: %w", s.addr, protoError(err))
	}
	if br.Buffered() > 0 {
		// Bytes sent before the handshake would be read as if they came
		// over TLS: the STARTTLS command injection attack.
		return nil, fmt.Errorf("STARTTLS reply from %s followed by unexpected data", s.addr)
	}
	tc := tls.Client(raw, s.tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, s.tlsError(err)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// tlsError words a handshake failure so the operator sees what to fix.
func (s *SMTP) tlsError(err error) error {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) {
		return &tlsFailure{fmt.Errorf("TLS handshake with %s failed: certificate for %s not trusted: %w (add its CA with ca_file)", s.addr, s.cfg.Host, err)}
	}
	return &tlsFailure{fmt.Errorf("TLS handshake with %s failed: %w", s.addr, err)}
}

// protoError turns a textproto reply error into go-smtp's error type, so
// classification sees one type for every reply.
func protoError(err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	return gosmtp.ReplyError(te.Code, te.Msg)
}

func (s *SMTP) wantsAuth() bool {
	return s.cfg.Auth != settings.AuthNone && (s.cfg.Username != "" || s.cfg.Token != nil)
}

// authenticate runs AUTH when credentials are configured. It never sends
// them without TLS, except to a loopback host with tls = "none".
func (s *SMTP) authenticate(ctx context.Context, cn *conn, probe *ProbeReport) error {
	if !s.wantsAuth() {
		return nil
	}
	if cn.tls == nil && !(s.cfg.TLS == settings.NoTLS && loopback.Host(s.cfg.Host)) {
		return fmt.Errorf("connection to %s is not encrypted: refusing to send credentials", s.addr)
	}
	ok, mechs := cn.c.Extension("AUTH")
	if !ok {
		where := ""
		if s.cfg.TLS == settings.StartTLS {
			where = " (after STARTTLS)"
		}
		return s.authFailed(probe, "", fmt.Errorf("AUTH not offered by %s%s", s.addr, where))
	}
	offered := map[string]bool{}
	for _, m := range strings.Fields(strings.ToUpper(mechs)) {
		offered[m] = true
	}
	var mech string
	if s.cfg.Auth == settings.AuthAuto {
		var prefs []string
		if s.cfg.Token != nil {
			prefs = append(prefs, "OAUTHBEARER", "XOAUTH2")
		}
		if s.cfg.Password != nil {
			prefs = append(prefs, "PLAIN", "LOGIN", "CRAM-MD5")
		}
		for _, m := range prefs {
			if offered[m] {
				mech = m
				break
			}
		}
		if mech == "" {
			return s.authFailed(probe, "", fmt.Errorf("no usable AUTH mechanism at %s (offered: %s; we can do: %s)",
				s.addr, mechs, strings.Join(prefs, " ")))
		}
	} else if mech = s.cfg.Auth.Mechanism(); !offered[mech] {
		return s.authFailed(probe, mech, fmt.Errorf("AUTH %s not offered by %s (offered: %s)", mech, s.addr, mechs))
	}

	bearer := mech == "OAUTHBEARER" || mech == "XOAUTH2"
	var secret string
	var err error
	if bearer {
		secret, err = s.cfg.Token(ctx)
	} else {
		secret, err = s.cfg.Password(ctx)
	}
	if err != nil {
		return s.secretError(probe, mech, bearer, err)
	}
	newClient := func() sasl.Client {
		switch mech {
		case "PLAIN":
			return sasl.NewPlainClient("", s.cfg.Username, secret)
		case "LOGIN":
			return &loginClient{user: s.cfg.Username, pass: secret}
		case "CRAM-MD5":
			return &cramMD5Client{user: s.cfg.Username, pass: secret}
		case "XOAUTH2":
			return &xoauth2Client{user: s.cfg.Username, token: secret}
		}
		return sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: s.cfg.Username, Host: s.cfg.Host, Port: s.cfg.Port, Token: secret})
	}
	err = cn.c.Auth(newClient())
	if err != nil && bearer && s.cfg.OAuth != nil && tokenRefused(err) {
		// The token may have been revoked or have expired early: one
		// fresh token is worth a second try on the same session.
		s.log.Info("AUTH refused the OAuth2 token; fetching a new one", "mechanism", mech, "reply", replyCode(err))
		s.cfg.OAuth.Invalidate(secret)
		fresh, terr := s.cfg.Token(ctx)
		if terr != nil {
			return s.secretError(probe, mech, true, terr)
		}
		if fresh != secret {
			secret = fresh
			err = cn.c.Auth(newClient())
		}
	}
	if err != nil {
		// A server may quote what it got: the base64 of the secret (LOGIN)
		// or of the initial response, which holds it (PLAIN, XOAUTH2).
		hidden := []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))}
		if _, ir, err := newClient().Start(); err == nil && len(ir) > 0 {
			hidden = append(hidden, base64.StdEncoding.EncodeToString(ir))
		}
		for _, h := range hidden {
			err = redact(err, h)
		}
		if gosmtp.Reply(err) != nil {
			err = fmt.Errorf("AUTH %s rejected by %s: %w", mech, s.addr, err)
		} else {
			err = fmt.Errorf("AUTH %s with %s: %w", mech, s.addr, err)
		}
		return s.authFailed(probe, mech, err)
	}
	cn.mech = mech
	if probe != nil {
		probe.AuthMech, probe.AuthOK = mech, true
	}
	return nil
}

// authFailed logs an authentication problem loudly: it will not go away by
// itself, the operator has to fix the configuration.
// secretError sorts a failure to get the password or token, the same for
// the first token and for the fresh one after a refused AUTH: a
// configuration problem (invalid_grant …) is an AUTH failure the operator
// must fix; an OAuth2 token endpoint that is down or unreachable is
// temporary, like a failed connection; an unreadable password is an AUTH
// failure.
func (s *SMTP) secretError(probe *ProbeReport, mech string, bearer bool, err error) error {
	switch {
	case isConfigProblem(err):
		return s.authFailed(probe, mech, err)
	case bearer && s.cfg.OAuth != nil:
		if probe != nil {
			probe.AuthMech, probe.AuthError = mech, err.Error()
		}
		return err
	}
	return s.authFailed(probe, mech, fmt.Errorf("upstream %s: cannot read its secret: %w", s.cfg.Name, err))
}

func (s *SMTP) authFailed(probe *ProbeReport, mech string, err error) error {
	fix := fmt.Sprintf("check username/password_file for upstream %s", s.cfg.Name)
	switch {
	case isConfigProblem(err):
		// The error names its own fix (`outbox oauth login NAME` …).
		s.log.Error("OAuth2 token for upstream unavailable: configuration problem, mail stays queued",
			"addr", s.addr, "mechanism", mech, "username", s.cfg.Username, "error", err.Error())
		if probe != nil {
			probe.AuthMech, probe.AuthOK, probe.AuthError = mech, false, err.Error()
		}
		return &authError{err: err}
	case s.cfg.OAuth != nil:
		fix = fmt.Sprintf("check that username is the mailbox the OAuth2 grant is for, and the app's SMTP permission, for upstream %s", s.cfg.Name)
	case s.cfg.Token != nil:
		fix = fmt.Sprintf("check username and token for upstream %s", s.cfg.Name)
	}
	s.log.Error("authentication with upstream failed: configuration problem, mail stays queued",
		"addr", s.addr, "mechanism", mech, "username", s.cfg.Username, "error", err.Error(), "fix", fix)
	if probe != nil {
		probe.AuthMech, probe.AuthOK, probe.AuthError = mech, false, err.Error()
	}
	return &authError{err: fmt.Errorf("%w: %s", err, fix)}
}

// authError marks a failed authentication.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// redact removes a secret from an error text, in case a server echoes what
// it was sent.
func redact(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), secret, "[redacted]")
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &smtp.SMTPError{Code: se.Code, EnhancedCode: se.EnhancedCode, Message: strings.ReplaceAll(se.Message, secret, "[redacted]")}
	}
	return errors.New(msg)
}

func tlsVersion(st *tls.ConnectionState) string {
	if st == nil {
		return "none"
	}
	return tls.VersionName(st.Version)
}
