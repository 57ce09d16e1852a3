package e2e

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSocketActivation: the daemon serves the sockets systemd passes it
// (outbox.socket), does not remove them when it stops, and a client that
// connects while the daemon is down is served once it is back.
func TestSocketActivation(t *testing.T) {
	e := newEnv(t, `upstream "hold" {
  host = "127.0.0.1"
  port = 9
  tls  = "none"
}`, `listen {
  address     = "unix:submit.sock"
  socket_mode = "0660"
}
queue {
  retry_initial = "1h"
}`)
	tl, err := net.Listen("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	sock := filepath.Join(e.dir, "submit.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ul.(*net.UnixListener).SetUnlinkOnClose(false)
	defer ul.Close()
	if err := os.Chmod(sock, 0o666); err != nil { // systemd's default SocketMode
		t.Fatal(err)
	}
	tf, err := tl.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	uf, err := ul.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	e.sockets = []*os.File{tf, uf}

	d := e.start()
	d.waitLog("using the socket systemd passed", 2, 10*time.Second)
	// socket_mode applies to a socket systemd made too.
	if fi, err := os.Stat(sock); err != nil {
		t.Error(err)
	} else if m := fi.Mode().Perm(); m != 0o660 {
		t.Errorf("systemd's socket has mode %04o; want socket_mode 0660 applied", m)
	}
	l := newLedger()
	for i, addr := range []string{e.addr, "unix:" + sock} {
		m := newMessage("act", i, 2048)
		l.attempt(m)
		c, err := dialSMTP(addr, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if err := send(c, m); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		c.Close()
		l.accept(m)
	}

	// Down: a client connects (the kernel queues it) and waits.
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the daemon removed systemd's socket: %v", err)
	}
	late := newMessage("act", 99, 2048)
	l.attempt(late)
	done := make(chan error, 1)
	go func() {
		c, err := dialSMTP(e.addr, 30*time.Second)
		if err == nil {
			err = send(c, late)
			c.Close()
		}
		done <- err
	}()
	// Back up, with the same sockets: the waiting client is served.
	d = e.start()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("client that connected during the restart: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("client that connected during the restart was never served")
	}
	l.accept(late)
	d.signal(syscall.SIGTERM)
	if code := d.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
	l.check(t, readSpool(t, e.spoolPath()))
}
