//go:build shimlean

package sendmailshim

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/outbox-mta/outbox/config/lite"
)

// This is the shim as /usr/sbin/sendmail is built (go build -tags
// shimlean): it submits a message to a running daemon, the call nearly
// every sendmail invocation makes, reading relay.hcl with package lite and
// linking none of HCL, cty, bbolt, TLS or the go-smtp server. Everything
// else — mailq, newaliases, -bs, -bv, -q, the maildrop folder when the
// daemon is down, a relay.hcl that lite leaves to package config — it
// hands over to the whole shim, installed beside it as outbox-sendmail,
// with the same arguments, environment and input. Measured side by side
// (300 calls each, in turn, on a loaded 2-core VM), a `sendmail -t -i`
// call of a 4 KiB message took 0.82 of the whole shim's time and 0.73 of
// its CPU (see the README's Benchmarks).

// shimConfig is the configuration as this build holds it: the settings
// package lite reads.
type shimConfig = lite.Settings

// queueAdmin is not used here: queue commands are handed over.
type queueAdmin interface{}

// leanState is what a hand-over needs: the call as it came, and the input
// read so far, to be given again to the whole shim.
type leanState struct {
	args []string // argv[0] included
	env  []string
	in   io.Reader // the caller's standard input
	seen *recorder
}

func (s *shim) begin(args, env []string) {
	if len(args) == 0 {
		args = []string{"sendmail"}
	}
	s.args, s.env, s.in = args, env, s.stdin
	s.seen = &recorder{r: s.stdin}
	s.stdin = s.seen
}

func (s *shim) hostname() string      { return s.cfg.Hostname }
func (s *shim) submitSocket() string  { return s.cfg.SubmitSocket }
func (s *shim) maxMessageSize() int64 { return s.cfg.MaxMessageSize }

func (s *shim) dispatch() error {
	if s.opts.Mode != ModeDeliver || s.opts.QueueIntvl != "" {
		return s.handOver()
	}
	path := s.opts.Config
	if path == "" {
		path = s.getenv("OUTBOX_CONFIG")
	}
	if path == "" {
		path = lite.DefaultPath
	}
	cfg, err := lite.Read(path)
	if err != nil {
		// Unreadable, or beyond lite: the whole shim reads it and says
		// what is wrong, if anything.
		return s.handOver()
	}
	s.cfgPath, s.cfg = path, cfg
	if err := s.identify(); err != nil {
		return err
	}
	return s.deliver()
}

// drop is where the whole shim would write the maildrop folder: it does so
// once handed the call.
func (s *shim) drop(env *envelope, msg *content, why error) error {
	return s.handOver()
}

// handOver runs the whole shim with this call's arguments, environment and
// input, and returns its exit status. Before any input was read it takes
// this process's place.
func (s *shim) handOver() error {
	exe, err := os.Executable()
	if err != nil {
		// Without /proc: the program the caller named, links followed
		// (mailq is a link to sendmail).
		exe, err = exec.LookPath(s.args[0])
		if err == nil {
			exe, err = filepath.EvalSymlinks(exe)
		}
	}
	if err != nil {
		return fail(ExitTempFail, "cannot find the shim's own program (%v) to run %s; nothing was sent", err, FullProgram)
	}
	full := filepath.Join(filepath.Dir(exe), FullProgram)
	if s.seen.n == 0 && s.in == os.Stdin && s.stdout == os.Stdout && s.stderr == os.Stderr {
		err := syscall.Exec(full, s.args, s.env)
		return fail(ExitTempFail, "cannot run %s: %v; nothing was sent", full, err)
	}
	if s.seen.overflow {
		return fail(ExitSoftware, "cannot hand the message over to %s: more input was read than kept; nothing was sent", full)
	}
	cmd := exec.Command(full, s.args[1:]...)
	cmd.Args[0] = s.args[0]
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	// The input goes through a pipe fed by a goroutine that Wait does not
	// wait for: the whole shim may stop reading before the caller closes
	// its end (a "." line without -i), and its exit status is the call's
	// then, not when the caller hangs up.
	in, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		return fail(ExitTempFail, "cannot run %s: %v; nothing was sent", full, err)
	}
	go func() {
		io.Copy(in, io.MultiReader(bytes.NewReader(s.seen.buf.Bytes()), s.in))
		in.Close()
	}()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return &exitError{code: ee.ExitCode()}
	case err != nil:
		return fail(ExitTempFail, "cannot run %s: %v; nothing was sent", full, err)
	}
	return nil
}

// keepLimit bounds what a recorder keeps: the header section and what the
// readers before the body buffer. The body itself is read only once the
// daemon takes the message, when no hand-over can follow.
const keepLimit = maxHeader + 1<<20

// recorder keeps what is read through it, up to keepLimit, or until the
// body streams to the daemon (stopped), after which no hand-over can
// follow: what it reads then is not kept.
type recorder struct {
	r        io.Reader
	buf      bytes.Buffer
	n        int64
	stopped  bool
	overflow bool // input was read that is not kept: no hand-over
}

// bodyStreaming stops the recording: the message's body now goes to the
// daemon, and a DATA or BDAT path that hands over does so before.
func (s *shim) bodyStreaming() { s.seen.stopped = true }

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.stopped && n > 0 {
		r.overflow, r.buf = true, bytes.Buffer{}
	}
	if !r.overflow {
		if r.buf.Len()+n > keepLimit {
			r.overflow = true
			r.buf = bytes.Buffer{}
		} else {
			r.buf.Write(p[:n])
		}
	}
	return n, err
}
