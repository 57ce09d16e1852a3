// Command outbox is the Outbox daemon and its admin tool: serve, check,
// queue, send, test-upstream, service and version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/sendmailshim"
)

// Exit codes: sysexits.h as the shim's table has it, so that `outbox send`
// and sendmail answer alike, plus a plain 1.
const (
	exitOK          = sendmailshim.ExitOK
	exitError       = 1
	exitUsage       = sendmailshim.ExitUsage
	exitUnavailable = sendmailshim.ExitUnavailable
	exitSoftware    = sendmailshim.ExitSoftware
	exitTempFail    = sendmailshim.ExitTempFail
	exitNoPerm      = sendmailshim.ExitNoPerm // the caller's uid may not do this
	exitConfig      = sendmailshim.ExitConfig
)

// version is set at build time with -ldflags "-X main.version=…".
var version = ""

type command struct {
	name    string
	summary string
	usage   string
	run     func(a *app, args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"serve", "run the daemon in the foreground (logs to stderr; SIGTERM stops it cleanly, SIGHUP reloads the configuration)", "outbox serve [--config FILE]", cmdServe},
		{"check", "validate the configuration; exit 0 when valid, 78 when not", "outbox check [--config FILE]", cmdCheck},
		{"queue", "list and manage queued mail: ls [--json], show ID, body ID, hold ID, release ID, retry ID, bounce ID, delete ID, flush, stats, backup FILE, compact", "outbox queue SUBCOMMAND [ARGS] [--config FILE]", cmdQueue},
		{"send", "compose a message (text, HTML, attachments) and submit it as sendmail does, or submit a whole message read from stdin", "outbox send --from A --to B [--to …] [--cc …] [--bcc …] --subject S [--text FILE|-] [--html FILE] [--attach FILE]… [--inline FILE]… [--header \"K: V\"]… [--tag k=v]…\n       outbox send [--from A] [--subject S] RCPT… < message", cmdSend},
		{"test-upstream", "connect to an upstream, report TLS and AUTH, and with --rcpt try MAIL/RCPT without sending", "outbox test-upstream [--rcpt ADDR] NAME", cmdTestUpstream},
		{"oauth", "sign a mailbox in once for an upstream with oauth2 flow = \"refresh_token\" and store its refresh token", "outbox oauth login [--device|--browser] [--port N] NAME", cmdOAuth},
		{"service", "install, uninstall, start, stop or show the system service", "outbox service install|uninstall|start|stop|restart|status [--config FILE]", cmdService},
		{"hash-password", "print a bcrypt hash of a password read from stdin, for listen { auth = {...} }", "outbox hash-password < password", cmdHashPassword},
		{"status", "one screen: version, uptime, listeners, upstreams, queue and spool size", "outbox status [--json] [--config FILE]", cmdStatus},
		{"version", "print the version", "outbox version", cmdVersion},
	}
}

type app struct {
	configFlag string
	stdout     io.Writer
	stderr     io.Writer
	stdin      io.Reader
}

func main() {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	os.Exit(a.main(os.Args[1:]))
}

// extractConfig removes --config FILE / --config=FILE (or -config) from
// anywhere in args, so it works before or after the subcommand.
func extractConfig(args []string) (string, []string, error) {
	var rest []string
	cfg := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		switch {
		case a == "--config" || a == "-config" || a == "-c":
			if i+1 >= len(args) {
				return "", nil, errors.New("--config needs a file name")
			}
			cfg = args[i+1]
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			cfg = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return cfg, rest, nil
}

func (a *app) main(args []string) int {
	cfg, rest, err := extractConfig(args)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox:", err)
		return exitUsage
	}
	a.configFlag = cfg
	if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "help" {
		a.usage(a.stdout)
		if len(rest) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if rest[0] == "--version" || rest[0] == "-v" {
		return cmdVersion(a, nil)
	}
	for _, c := range commands {
		if c.name == rest[0] {
			return c.run(a, rest[1:])
		}
	}
	fmt.Fprintf(a.stderr, "outbox: unknown command %q; run `outbox --help` for the list\n", rest[0])
	return exitUsage
}

func (a *app) usage(w io.Writer) {
	fmt.Fprintln(w, "Outbox: a sendmail-compatible local mail relay.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: outbox COMMAND [ARGS] [--config FILE]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "The configuration is --config FILE, else $OUTBOX_CONFIG, else %s.\n", config.DefaultPath)
	fmt.Fprintln(w, "Run `outbox COMMAND --help` for a command's options.")
}

// flags returns a FlagSet that prints the command's usage on --help.
func (a *app) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	for _, c := range commands {
		if c.name == name {
			fs.Usage = func() {
				fmt.Fprintf(a.stderr, "Usage: %s\n\n%s\n", c.usage, c.summary)
				fs.PrintDefaults()
			}
		}
	}
	return fs
}

// parse parses flags; ok is false when the command should exit with code.
// Flags may come before or after the arguments (`test-upstream NAME --rcpt
// ADDR`, `queue hold ID --config FILE`); "--" ends the flags.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK, false
			}
			return exitUsage, false
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// Leave the arguments in fs.Args(); the flags keep their values.
	fs.Parse(append([]string{"--"}, pos...))
	return 0, true
}

// parseAndLoad parses a command's flags, then loads the configuration;
// cfg is nil when the command should exit with code (--help, a bad flag,
// a bad configuration).
func (a *app) parseAndLoad(fs *flag.FlagSet, args []string) (cfg *config.Config, code int) {
	if code, ok := parse(fs, args); !ok {
		return nil, code
	}
	return a.loadConfig()
}

// loadConfig loads the configuration, printing diagnostics on failure.
func (a *app) loadConfig() (*config.Config, int) {
	path := config.Locate(a.configFlag)
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox:", err)
		return nil, exitConfig
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(a.stderr, "outbox: warning:", w)
	}
	return cfg, exitOK
}

// newLogger builds the daemon's logger; level is set from log.level here
// and again by each reload.
func newLogger(cfg *config.Config, w io.Writer, level *slog.LevelVar) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(cfg.Log.Level))
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if toJournal(w) {
		// The journal stamps every line itself; a second time stamp only
		// widens the lines.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// toJournal reports whether w is the stream systemd connected to the
// journal: JOURNAL_STREAM holds that stream's device and inode numbers
// (systemd.exec(5)), which are compared so that a child whose stderr was
// redirected elsewhere keeps its time stamps.
func toJournal(w io.Writer) bool {
	js := os.Getenv("JOURNAL_STREAM")
	f, ok := w.(*os.File)
	if js == "" || !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return js == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func cmdVersion(a *app, args []string) int {
	if args != nil {
		fs := a.flags("version")
		if code, ok := parse(fs, args); !ok {
			return code
		}
	}
	fmt.Fprintln(a.stdout, "outbox", versionString())
	return exitOK
}

// versionString is the version set at link time, else the module's.
func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return v
}

func cmdCheck(a *app, args []string) int {
	fs := a.flags("check")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	fmt.Fprintf(a.stdout, "%s: configuration is valid\n", cfg.Path)
	for _, l := range cfg.Listen {
		fmt.Fprintf(a.stdout, "  listen   %s\n", l.Address)
	}
	for i, u := range cfg.Upstreams {
		mark := ""
		if i == 0 {
			mark = " (default)"
		}
		if u.Type == "maildir" {
			fmt.Fprintf(a.stdout, "  upstream %s: maildir %s%s\n", u.Name, u.Path, mark)
		} else {
			fmt.Fprintf(a.stdout, "  upstream %s: %s:%d tls=%s%s\n", u.Name, u.Host, u.Port, u.TLS, mark)
			if o := u.OAuth2; o != nil {
				fmt.Fprintf(a.stdout, "           oauth2 %s, token_url %s, scopes %s, tokens in %s\n", o.Flow, o.TokenURL, strings.Join(o.Scopes, " "), o.TokenFile)
			}
		}
	}
	fmt.Fprintf(a.stdout, "  spool    %s\n", cfg.Spool.Path)
	return exitOK
}

// signalContext ends on SIGTERM or SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}
