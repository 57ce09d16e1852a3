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
	"strings"
	"sync"
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
		if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			warn.Do(func() {
				logger.Warn("secret file is readable by other users; run chmod 600 on it",
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

// SecretFromCommand runs cmd with /bin/sh -c on every call and uses its
// standard output, minus one trailing newline. Errors name the command and
// its exit status, never its output.
func SecretFromCommand(cmd string) SecretFunc {
	return func(ctx context.Context) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, commandTimeout)
		defer cancel()
		c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
		var stdout, stderr bytes.Buffer
		c.Stdout = &stdout
		c.Stderr = &limitedBuffer{buf: &stderr, max: 512}
		c.WaitDelay = time.Second
		if err := c.Run(); err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (timeout %v)", err, commandTimeout)
			}
			msg := fmt.Sprintf("password command %q failed: %v", cmd, err)
			if s := strings.TrimSpace(stderr.String()); s != "" {
				msg += ": " + s
			}
			return "", errors.New(msg)
		}
		s := trimNewline(stdout.String())
		if s == "" {
			return "", fmt.Errorf("password command %q printed nothing", cmd)
		}
		return s, nil
	}
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
