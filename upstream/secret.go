package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SecretFunc returns a password or token when a connection needs it. It is
// called for every new connection, so a rotated secret is picked up without
// a restart.
type SecretFunc func(ctx context.Context) (string, error)

// trimNewline removes one trailing "\n" or "\r\n", the way editors and
// `echo` leave secrets in files, and nothing else: spaces may be part of a
// password.
func trimNewline(s string) string {
	if strings.HasSuffix(s, "\r\n") {
		return s[:len(s)-2]
	}
	return strings.TrimSuffix(s, "\n")
}

// SecretFromFile reads the secret from path on every call. It warns once
// through logger when the file is readable by group or others. Errors name
// the file, never its content.
func SecretFromFile(path string, logger *slog.Logger) SecretFunc {
	if logger == nil {
		logger = slog.Default()
	}
	var warn sync.Once
	return func(ctx context.Context) (string, error) {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("reading secret file: %w", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && exposed(fi) {
			warn.Do(func() {
				logger.Warn("secret file is readable by other users; run chmod 600 on it (or 640 with the daemon's group, as the package installs it)",
					"file", path, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()), "fix", "chmod 600 "+path)
			})
		}
		// A secret is small; a bound keeps a misconfigured path (a log
		// file, a device) from being read whole.
		b := make([]byte, 64<<10)
		n, err := readFull(f, b)
		if err != nil {
			return "", fmt.Errorf("reading secret file %s: %w", path, err)
		}
		if n == len(b) {
			return "", fmt.Errorf("secret file %s is larger than 64 KiB: wrong file?", path)
		}
		s := trimNewline(string(b[:n]))
		if s == "" {
			return "", fmt.Errorf("secret file %s is empty", path)
		}
		return s, nil
	}
}

// daemonGroup is the group the package runs the daemon as.
var daemonGroup = "outbox"

// exposed reports whether users other than the file's owner and the
// daemon can read a secret file. Group access is fine when the group is the
// daemon's own (the package installs /etc/outbox/password 0640
// root:outbox), whether the daemon or root (test-upstream, oauth login)
// reads it; any other group, or others, is a leak.
func exposed(fi os.FileInfo) bool {
	perm := fi.Mode().Perm()
	if perm&0o007 != 0 {
		return true
	}
	if perm&0o070 == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	if int(st.Gid) == os.Getegid() {
		return false
	}
	g, err := user.LookupGroup(daemonGroup)
	return err != nil || g.Gid != strconv.Itoa(int(st.Gid))
}

func readFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := f.Read(b[n:])
		n += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// SecretFromEnv reads the secret from the environment variable name on every
// call.
func SecretFromEnv(name string) SecretFunc {
	return func(ctx context.Context) (string, error) {
		v := os.Getenv(name)
		if v == "" {
			return "", fmt.Errorf("environment variable %s is unset or empty", name)
		}
		return v, nil
	}
}

// commandTimeout bounds a password_command, so a hung helper (a locked
// keyring waiting for input) cannot stall deliveries forever.
var commandTimeout = 30 * time.Second

// maxCommandStderr bounds how much of a helper's stderr reaches the log.
const maxCommandStderr = 512

// SecretFromCommand runs cmd with /bin/sh -c on every call and uses its
// standard output, minus one trailing newline. key names the setting
// ("password_command" or "token_command") in messages.
//
// The error names neither the command nor anything it printed: it becomes
// a recipient's last_error, which every local user can list with mailq,
// and a command line or a helper's complaint may hold a secret. The
// helper's stderr goes to logger instead, at WARN, bounded and with its
// stdout (the secret, or part of it) blanked out.
func SecretFromCommand(key, cmd string, logger *slog.Logger) SecretFunc {
	if logger == nil {
		logger = slog.Default()
	}
	return func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		defer cancel()
		c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
		var stdout, stderr bytes.Buffer
		c.Stdout = &limitedBuffer{buf: &stdout, max: 64 << 10}
		c.Stderr = &limitedBuffer{buf: &stderr, max: maxCommandStderr}
		c.WaitDelay = time.Second
		err := c.Run()
		if ctx.Err() != nil && err != nil {
			err = fmt.Errorf("%w (timeout %v)", err, commandTimeout)
		}
		logged := false
		if s := strings.TrimSpace(stderr.String()); s != "" {
			logger.Warn(key+" wrote to stderr", "stderr", redactOutput(s, stdout.String()), "failed", err != nil)
			logged = true
		}
		if err != nil {
			if logged {
				return "", fmt.Errorf("%s failed: %v (its stderr is in the log)", key, err)
			}
			return "", fmt.Errorf("%s failed: %v", key, err)
		}
		s := trimNewline(stdout.String())
		if s == "" {
			return "", fmt.Errorf("%s printed nothing", key)
		}
		return s, nil
	}
}

// redactOutput blanks out of a helper's stderr every line of its stdout
// of four characters or more: a helper may echo the secret in a
// complaint.
func redactOutput(stderr, stdout string) string {
	for _, line := range strings.Split(stdout, "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= 4 {
			stderr = strings.ReplaceAll(stderr, line, "[redacted]")
		}
	}
	return stderr
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		if len(p) > room {
			l.buf.Write(p[:room])
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

// secretFrom is the SecretFunc for the one source of an upstream's
// password or token that is set (the configuration refuses several), nil
// when none is. key names the command's setting in its errors.
func secretFrom(key, file, env, cmd string, logger *slog.Logger) SecretFunc {
	switch {
	case file != "":
		return SecretFromFile(file, logger)
	case env != "":
		return SecretFromEnv(env)
	case cmd != "":
		return SecretFromCommand(key, cmd, logger)
	}
	return nil
}
