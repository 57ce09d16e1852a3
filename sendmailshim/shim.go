// Package sendmailshim gives Outbox the command line of sendmail, mailq and
// newaliases: the options of Sendmail and Postfix's sendmail, "-t" header
// recipients, the completion of missing header fields, submission to the
// daemon over its unix socket (or into the maildrop folder while the daemon
// is down), and exit codes from sysexits.h. It never exits the process:
// Main returns the exit status.
package sendmailshim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/config"
)

// Exit statuses, from sysexits.h.
const (
	ExitOK          = 0
	ExitUsage       = 64 // EX_USAGE: bad command line
	ExitDataErr     = 65 // EX_DATAERR: bad message data
	ExitNoUser      = 67 // EX_NOUSER: unknown recipient
	ExitUnavailable = 69 // EX_UNAVAILABLE: refused for good
	ExitSoftware    = 70 // EX_SOFTWARE: internal error
	ExitNoPerm      = 77 // EX_NOPERM: the operator restricted this to privileged users
	ExitTempFail    = 75 // EX_TEMPFAIL: nothing stored, try again
	ExitConfig      = 78 // EX_CONFIG: configuration error
)

// FullProgram is the name this shim (cmd/sendmail) is installed under,
// beside sendmail, the small C program (cmd/sendmail-c) that hands it every
// call the daemon's sendmail socket does not take.
const FullProgram = "outbox-sendmail"

// exitError is a failure with its exit status; its message is the one
// line printed on stderr after the program name.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, args ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, args...)}
}

// shim is one invocation, with everything it takes from the process
// passed in so that tests can replace it.
type shim struct {
	prog   string // sendmail, mailq or newaliases
	opts   *Options
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	uid      int
	user     string // login name of uid
	fullName string // from the password database
	now      func() time.Time

	cfgPath string
	cfg     *shimConfig
	queue   queueAdmin // mailq and -q; nil: the admin API
	// reload asks the daemon to reload for newaliases; nil: signalDaemon.
	reload func(adminSocket string) (pid int, err error)
	// store, when set, takes the message in place of the daemon's
	// socket and the maildrop folder: the daemon itself runs the shim
	// for the sendmail protocol (Serve) and stores through its session.
	store func(*envelope, *content) error
}

// Main runs the shim with the process's arguments (args[0] included:
// its base name picks sendmail, mailq or newaliases), standard streams and
// environment (as os.Environ gives it), and returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, env []string) int {
	s := &shim{
		prog:   "sendmail",
		stdin:  stdin,
		stdout: stdout,
		stderr: stderr,
		getenv: envLookup(env),
		uid:    os.Getuid(),
		now:    time.Now,
	}
	if len(args) > 0 {
		s.prog = filepath.Base(args[0])
		args = args[1:]
	}
	return s.run(args)
}

func envLookup(env []string) func(string) string {
	m := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		}
	}
	return func(k string) string { return m[k] }
}

func (s *shim) run(args []string) int {
	mode := ModeDeliver
	switch s.prog {
	case "mailq":
		mode = ModeQueue
	case "newaliases":
		mode = ModeNewAliases
	}
	opts, err := ParseArgs(mode, args)
	if err != nil {
		fmt.Fprintf(s.stderr, "%s: %v\n", s.prog, err)
		fmt.Fprintf(s.stderr, "usage: %s [options] [recipient ...]\n", s.prog)
		return ExitUsage
	}
	s.opts = opts
	return s.exit(s.dispatch())
}

// exit prints err on stderr, one line after the program name, and returns
// its exit status.
func (s *shim) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintf(s.stderr, "%s: %s\n", s.prog, oneLine(ee.msg))
		}
		return ee.code
	}
	fmt.Fprintf(s.stderr, "%s: %s\n", s.prog, oneLine(err.Error()))
	return ExitSoftware
}

// oneLine keeps a message on one line, as scripts and cron read stderr
// line by line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// identify finds the invoking user's login and full name, as Postfix does
// from the password database, falling back on LOGNAME and USER for
// user IDs the database does not know (containers run with arbitrary
// IDs).
func (s *shim) identify() error {
	if s.user != "" {
		return nil
	}
	if u, err := user.LookupId(strconv.Itoa(s.uid)); err == nil {
		s.user = u.Username
		s.fullName = u.Name
	} else if n := s.getenv("LOGNAME"); n != "" {
		s.user = n
	} else if n := s.getenv("USER"); n != "" {
		s.user = n
	} else {
		return fail(ExitTempFail, "no login name found for user ID %d", s.uid)
	}
	if !config.ValidLocalName(s.user) {
		return fail(ExitDataErr, "the login name %q cannot be a mail address; pass a sender with -f", s.user)
	}
	return nil
}

// sender returns the envelope sender: -f, qualified with the hostname
// when it has no domain, or the invoking user at the hostname.
func (s *shim) sender() (string, error) {
	if !s.opts.SenderSet {
		return s.user + "@" + s.hostname(), nil
	}
	v := strings.TrimSpace(s.opts.Sender)
	if v == "" || v == "<>" {
		return "", nil
	}
	addrs, err := parseAddressList(v)
	if err != nil || len(addrs) == 0 {
		return "", fail(ExitUsage, "-f %q is not a mail address", s.opts.Sender)
	}
	a := addrs[0]
	if !strings.Contains(a, "@") {
		a += "@" + s.hostname()
	}
	if !config.ValidAddress(a) {
		return "", fail(ExitUsage, "-f %q is not a mail address", s.opts.Sender)
	}
	return a, nil
}

// displayName is the full name of the From field the shim adds: -F, else
// NAME from the environment, else the password database's.
func (s *shim) displayName() string {
	if s.opts.FullName != "" {
		return s.opts.FullName
	}
	if n := s.getenv("NAME"); n != "" {
		return n
	}
	return s.fullName
}

func (s *shim) verbosef(format string, args ...any) {
	if s.opts.Verbose {
		fmt.Fprintf(s.stderr, "%s: "+format+"\n", append([]any{s.prog}, args...)...)
	}
}

// context bounds admin calls.
func (s *shim) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
