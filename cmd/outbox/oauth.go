package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/upstream/oauth"
)

// cmdOAuth runs `outbox oauth login NAME`: it signs a mailbox in once and
// stores the refresh token the daemon then uses.
func cmdOAuth(a *app, args []string) int {
	if len(args) == 0 || args[0] != "login" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			a.flags("oauth").Usage()
			return exitOK
		}
		fmt.Fprintln(a.stderr, "outbox oauth: the subcommand is login: outbox oauth login [--device|--browser] NAME")
		return exitUsage
	}
	fs := a.flags("oauth")
	device := fs.Bool("device", false, "use the device code flow (the default for Microsoft)")
	browser := fs.Bool("browser", false, "use a browser and a loopback redirect (the default for Google, which allows no device code for mail)")
	port := fs.Int("port", 0, "loopback port for --browser (0: any free port); useful with ssh -L")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	cfg, code := a.parseAndLoad(fs, args[1:])
	if cfg == nil {
		return code
	}
	if fs.NArg() != 1 {
		var names []string
		for _, u := range cfg.Upstreams {
			if u.OAuth2 != nil && u.OAuth2.Flow == oauth.RefreshToken {
				names = append(names, u.Name)
			}
		}
		fmt.Fprintf(a.stderr, "outbox oauth login: name one upstream with oauth2 flow = \"refresh_token\" (%s)\n", strings.Join(names, ", "))
		return exitUsage
	}
	u := cfg.Upstream(fs.Arg(0))
	switch {
	case u == nil:
		fmt.Fprintf(a.stderr, "outbox oauth login: no upstream %q in %s\n", fs.Arg(0), cfg.Path)
		return exitUsage
	case u.OAuth2 == nil:
		fmt.Fprintf(a.stderr, "outbox oauth login: upstream %s has no oauth2 block\n", u.Name)
		return exitConfig
	case u.OAuth2.Flow != oauth.RefreshToken:
		fmt.Fprintf(a.stderr, "outbox oauth login: upstream %s uses flow %s, which needs no sign-in: run `outbox test-upstream %s` to check it\n", u.Name, u.OAuth2.Flow, u.Name)
		return exitUsage
	case *device && *browser:
		fmt.Fprintln(a.stderr, "outbox oauth login: choose one of --device and --browser")
		return exitUsage
	}
	useDevice := u.OAuth2.DeviceLogin
	if *device {
		useDevice = true
	}
	if *browser {
		useDevice = false
	}
	if dir := filepath.Dir(u.OAuth2.TokenFile); !dirExists(dir) {
		fmt.Fprintf(a.stderr, "outbox oauth login: folder %s does not exist: create it (it is the spool's; starting outbox once does) or set token_file in the oauth2 block\n", dir)
		return exitConfig
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src, err := relay.NewOAuthSource(u, log)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox oauth login:", err)
		return exitConfig
	}
	ctx, cancel := signalContext()
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, *timeout)
	defer cancelT()
	opts := oauth.LoginOptions{Out: a.stdout, Port: *port, In: a.stdin}
	if strings.Contains(u.OAuth2.AuthURL, "login.microsoftonline.com") {
		// Microsoft registers loopback redirects as http://localhost.
		opts.Host = "localhost"
	}
	if useDevice {
		err = src.DeviceLogin(ctx, opts)
	} else {
		err = src.LoopbackLogin(ctx, opts)
	}
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox oauth login:", err)
		return exitUnavailable
	}
	exp, scopes, _ := src.TokenInfo()
	fmt.Fprintf(a.stdout, "OK: signed in; tokens saved to %s (access token expires %s; scopes: %s)\n",
		u.OAuth2.TokenFile, exp.Format(time.RFC3339), strings.Join(scopes, " "))
	fmt.Fprintf(a.stdout, "The running daemon picks them up at its next delivery; check with `outbox test-upstream %s`.\n", u.Name)
	return exitOK
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
