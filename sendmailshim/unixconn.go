package sendmailshim

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"
)

// unixConn is the shim's connection to the daemon's submission socket: a
// blocking socket driven with plain system calls, its time limits kept by
// the kernel (SO_SNDTIMEO, SO_RCVTIMEO). A call to sendmail lives a few
// milliseconds and has one conversation; package net would first set up
// its poller (epoll and an eventfd), and every wait for the daemon would go
// through it and the runtime's scheduler, each a wake-up more on a busy
// machine. See the README's Benchmarks for the figures.
//
// A time limit applies to each read or write, not to the whole exchange:
// a daemon that answers nothing for that long fails the call.
type unixConn struct {
	fd   int
	path string
}

// connError is a failure of the connection itself, as opposed to a reply
// of the daemon. It satisfies net.Error, so that isNetError knows it.
type connError struct {
	op      string // dial, read, write
	path    string
	err     error
	timeout bool
}

func (e *connError) Error() string {
	return e.op + " unix " + e.path + ": " + e.err.Error()
}

func (e *connError) Unwrap() error   { return e.err }
func (e *connError) Timeout() bool   { return e.timeout }
func (e *connError) Temporary() bool { return e.timeout }

// errClosed is what a read or write on a closed unixConn returns.
var errClosed = errors.New("use of closed connection")

// dialUnix connects to the socket at path, waiting at most timeout for
// room in the daemon's queue of connections.
func dialUnix(path string, timeout time.Duration) (*unixConn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &connError{op: "dial", path: path, err: os.NewSyscallError("socket", err)}
	}
	c := &unixConn{fd: fd, path: path}
	c.setTimeout(timeout)
	for {
		err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		c.Close()
		return nil, &connError{op: "dial", path: path, err: os.NewSyscallError("connect", err), timeout: err == syscall.EAGAIN}
	}
	return c, nil
}

// setTimeout limits each later read and write to d.
func (c *unixConn) setTimeout(d time.Duration) {
	tv := syscall.NsecToTimeval(d.Nanoseconds())
	syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	syscall.SetsockoptTimeval(c.fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv)
}

func (c *unixConn) Read(p []byte) (int, error) {
	if c.fd < 0 {
		return 0, errClosed
	}
	for {
		n, err := syscall.Read(c.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, &connError{op: "read", path: c.path, err: os.NewSyscallError("read", err), timeout: err == syscall.EAGAIN}
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of p. MSG_NOSIGNAL: a daemon gone away is an error
// (EPIPE), not a signal.
func (c *unixConn) Write(p []byte) (int, error) {
	if c.fd < 0 {
		return 0, errClosed
	}
	done := 0
	for done < len(p) {
		n, err := syscall.SendmsgN(c.fd, p[done:], nil, nil, syscall.MSG_NOSIGNAL)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return done, &connError{op: "write", path: c.path, err: os.NewSyscallError("write", err), timeout: err == syscall.EAGAIN}
		}
		done += n
	}
	return done, nil
}

func (c *unixConn) Close() error {
	if c.fd < 0 {
		return errClosed
	}
	err := syscall.Close(c.fd)
	c.fd = -1
	return err
}
