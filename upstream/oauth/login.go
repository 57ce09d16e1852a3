package oauth

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// LoginOptions steers an interactive login.
type LoginOptions struct {
	Out io.Writer // where the instructions go
	// Host and Port of the loopback redirect; Host "" is 127.0.0.1, Port
	// 0 a free port. Microsoft registers "http://localhost" redirects,
	// Google accepts 127.0.0.1.
	Host string
	Port int
	// Ready, when set, is called with the URL to open once the loopback
	// listener is up (tests play the browser with it).
	Ready func(authURL string)
	// In, when set, is read for the address the browser was sent back
	// to, pasted by hand: the way through when the browser runs on
	// another machine and cannot reach the loopback listener.
	In io.Reader
}

// DeviceLogin runs the device authorization grant (RFC 8628): it prints
// a code and the page where the user enters it, waits for the user, and
// saves the tokens to the token file.
func (s *Source) DeviceLogin(ctx context.Context, o LoginOptions) error {
	if s.cfg.Flow != RefreshToken {
		return fmt.Errorf("upstream %s uses flow %s: there is nothing to log in to", s.cfg.Name, s.cfg.Flow)
	}
	if s.cfg.DeviceURL == "" {
		return fmt.Errorf("upstream %s has no device authorization endpoint (device_url)", s.cfg.Name)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	secret, err := s.secret(ctx)
	if err != nil {
		return err
	}
	oc := s.oauth2Config(secret, "")
	da, err := oc.DeviceAuth(ctx)
	if err != nil {
		return s.loginError(ctx, err, secret)
	}
	uri := da.VerificationURIComplete
	if uri == "" {
		uri = da.VerificationURI
	}
	fmt.Fprintf(o.Out, "To sign in as the mailbox of upstream %s, open\n\n    %s\n\nand enter the code %s\n\nWaiting", s.cfg.Name, uri, da.UserCode)
	if !da.Expiry.IsZero() {
		fmt.Fprintf(o.Out, " until %s", da.Expiry.Format(time.TimeOnly))
	}
	fmt.Fprintln(o.Out, "…")
	tok, err := oc.DeviceAccessToken(ctx, da)
	if err != nil {
		return s.loginError(ctx, err, secret)
	}
	return s.store(tok)
}

// LoopbackLogin runs the authorization code grant with PKCE and a
// loopback redirect (RFC 8252 §7.3), the flow for installed applications:
// it listens on the loopback interface, prints the URL to open, waits for
// the browser to come back with the code, exchanges it and saves the
// tokens.
func (s *Source) LoopbackLogin(ctx context.Context, o LoginOptions) error {
	if s.cfg.Flow != RefreshToken {
		return fmt.Errorf("upstream %s uses flow %s: there is nothing to log in to", s.cfg.Name, s.cfg.Flow)
	}
	if s.cfg.AuthURL == "" {
		return fmt.Errorf("upstream %s has no authorization endpoint (auth_url)", s.cfg.Name)
	}
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	// Listen on the loopback address only, whatever name the redirect
	// uses: the code must not be reachable from elsewhere.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)))
	if err != nil {
		return fmt.Errorf("listening for the redirect: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	redirect := "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"

	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient)
	secret, err := s.secret(ctx)
	if err != nil {
		return err
	}
	oc := s.oauth2Config(secret, redirect)
	verifier := oauth2.GenerateVerifier()
	state := randomString()
	// access_type=offline and prompt=consent make Google return a refresh
	// token even to a client that had one before; Microsoft ignores them
	// and returns one for the offline_access scope.
	opts := []oauth2.AuthCodeOption{oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"),
		oauth2.S256ChallengeOption(verifier)}
	if s.cfg.Subject != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", s.cfg.Subject))
	}
	authURL := oc.AuthCodeURL(state, opts...)

	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("state") == "" && q.Get("code") == "" && q.Get("error") == "" {
			http.NotFound(w, r) // a favicon request, say
			return
		}
		var res result
		switch {
		case q.Get("state") != state:
			res.err = errors.New("the redirect carried a wrong state: ignored (was it from an older login?)")
			http.Error(w, res.err.Error(), http.StatusBadRequest)
			return
		case q.Get("error") != "":
			res.err = fmt.Errorf("authorization refused: %s %s", q.Get("error"), firstLine(q.Get("error_description")))
		case q.Get("code") == "":
			res.err = errors.New("the redirect carried no code")
		default:
			res.code = q.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if res.err != nil {
			fmt.Fprintf(w, "<p>Outbox: %s</p>", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprint(w, "<p>Outbox received the authorization. You can close this window.</p>")
		}
		select {
		case got <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	if o.In != nil {
		go func() {
			sc := bufio.NewScanner(o.In)
			for sc.Scan() {
				u, err := url.Parse(strings.TrimSpace(sc.Text()))
				if err != nil || u.Query().Get("state") == "" {
					continue
				}
				q := u.Query()
				res := result{code: q.Get("code")}
				switch {
				case q.Get("state") != state:
					fmt.Fprintln(o.Out, "That address carries another login's state; paste the one from this login.")
					continue
				case q.Get("error") != "":
					res.err = fmt.Errorf("authorization refused: %s %s", q.Get("error"), firstLine(q.Get("error_description")))
				case res.code == "":
					res.err = errors.New("the pasted address carries no code")
				}
				select {
				case got <- res:
				default:
				}
				return
			}
		}()
	}

	fmt.Fprintf(o.Out, "To sign in as the mailbox of upstream %s, open this URL in a browser on this machine:\n\n    %s\n\n", s.cfg.Name, authURL)
	fmt.Fprintf(o.Out, "Outbox waits for the browser at %s (from another machine: ssh -L %d:127.0.0.1:%d to this one first)…\n", redirect, port, port)
	if o.In != nil {
		fmt.Fprintln(o.Out, "If the browser cannot reach it, paste here the address it was sent to (it starts with "+redirect+"?).")
	}
	if o.Ready != nil {
		o.Ready(authURL)
	}
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return fmt.Errorf("no answer from the browser: %w", ctx.Err())
	}
	if res.err != nil {
		return res.err
	}
	tok, err := oc.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return s.loginError(ctx, err, secret)
	}
	return s.store(tok)
}

func (s *Source) secret(ctx context.Context) (string, error) {
	if s.cfg.ClientSecret == nil {
		return "", nil
	}
	v, err := s.cfg.ClientSecret(ctx)
	if err != nil {
		return "", fmt.Errorf("upstream %s: oauth2 client secret: %w", s.cfg.Name, err)
	}
	return v, nil
}

// store saves the tokens a login returned.
func (s *Source) store(tok *oauth2.Token) error {
	if tok.RefreshToken == "" {
		return fmt.Errorf("upstream %s: the provider returned no refresh token (Microsoft: add the offline_access scope)", s.cfg.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setTokenLocked(tok)
	s.problem = nil
	if err := s.saveLocked(); err != nil {
		return fmt.Errorf("saving the tokens to %s: %w", s.cfg.TokenFile, err)
	}
	return nil
}

func (s *Source) loginError(ctx context.Context, err error, secret string) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode == "" {
			return fmt.Errorf("upstream %s: the endpoint answered %s", s.cfg.Name, scrub(firstLine(string(re.Body)), secret))
		}
		return fmt.Errorf("upstream %s: %s %s", s.cfg.Name, re.ErrorCode, scrub(firstLine(re.ErrorDescription), secret))
	}
	return fmt.Errorf("upstream %s: %s", s.cfg.Name, scrub(err.Error(), secret))
}

func randomString() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
