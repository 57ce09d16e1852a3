package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"

	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/upstream"
)

func cmdHashPassword(a *app, args []string) int {
	fs := a.flags("hash-password")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintln(a.stderr, "outbox hash-password:", err)
		return exitError
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(a.stderr, "outbox hash-password: give the password on stdin")
		return exitUsage
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox hash-password:", err)
		return exitError
	}
	fmt.Fprintln(a.stdout, string(h))
	return exitOK
}

func cmdTestUpstream(a *app, args []string) int {
	fs := a.flags("test-upstream")
	rcpt := fs.String("rcpt", "", "also try MAIL FROM and RCPT TO this address (then RSET; nothing is sent)")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after this long")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	if fs.NArg() != 1 {
		var names []string
		for _, u := range cfg.Upstreams {
			names = append(names, u.Name)
		}
		fmt.Fprintf(a.stderr, "outbox test-upstream: name one upstream (%s)\n", strings.Join(names, ", "))
		return exitUsage
	}
	u := cfg.Upstream(fs.Arg(0))
	if u == nil {
		fmt.Fprintf(a.stderr, "outbox test-upstream: no upstream %q in %s\n", fs.Arg(0), cfg.Path)
		return exitUsage
	}
	if u.Type == "maildir" {
		fmt.Fprintf(a.stdout, "upstream %s is a maildir (%s): nothing to connect to\n", u.Name, u.Path)
		return exitOK
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t, err := relay.BuildTarget(cfg, u, log)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox test-upstream:", err)
		return exitConfig
	}
	defer t.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep, err := t.(*upstream.SMTP).Probe(ctx, *rcpt)
	if rep != nil {
		printProbe(a, u.Name, rep)
	}
	if err != nil {
		fmt.Fprintf(a.stdout, "FAIL: %v\n", err)
		if h := upstream.Hint(err.Error()); h != "" {
			fmt.Fprintf(a.stdout, "HINT: %s\n", h)
		}
		return exitUnavailable
	}
	fmt.Fprintf(a.stdout, "OK: upstream %s is ready to take mail\n", u.Name)
	return exitOK
}

func printProbe(a *app, name string, r *upstream.ProbeReport) {
	fmt.Fprintf(a.stdout, "upstream %s at %s\n", name, r.Addr)
	if r.TLSVersion != "" {
		fmt.Fprintf(a.stdout, "  TLS:         %s, %s\n", r.TLSVersion, r.Cipher)
		fmt.Fprintf(a.stdout, "  certificate: %s (issuer %s), expires %s (in %d days)\n", r.CertSubject, r.CertIssuer,
			r.CertNotAfter.Format("2006-01-02"), int(time.Until(r.CertNotAfter).Hours()/24))
	}
	if len(r.Extensions) > 0 {
		fmt.Fprintf(a.stdout, "  extensions:  %s\n", strings.Join(r.Extensions, ", "))
	}
	switch {
	case r.AuthOK:
		fmt.Fprintf(a.stdout, "  AUTH:        %s accepted\n", r.AuthMech)
	case r.AuthError != "":
		fmt.Fprintf(a.stdout, "  AUTH:        %s refused: %s\n", r.AuthMech, r.AuthError)
	}
	if r.OAuth {
		if r.TokenExpiry.IsZero() {
			fmt.Fprintf(a.stdout, "  OAuth2:      no token\n")
		} else {
			fmt.Fprintf(a.stdout, "  OAuth2:      token expires %s (in %s)\n", r.TokenExpiry.Format(time.RFC3339), time.Until(r.TokenExpiry).Round(time.Second))
		}
		if len(r.TokenScopes) > 0 {
			fmt.Fprintf(a.stdout, "  scopes:      %s\n", strings.Join(r.TokenScopes, " "))
		}
		if len(r.TokenRoles) > 0 {
			fmt.Fprintf(a.stdout, "  roles:       %s\n", strings.Join(r.TokenRoles, " "))
		}
	}
	if r.RcptResult != "" {
		fmt.Fprintf(a.stdout, "  RCPT:        %s\n", r.RcptResult)
	}
}
