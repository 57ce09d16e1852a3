package relay

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/outbox-mta/outbox/config"
)

// TestInheritedSocketMode: a unix socket that systemd passes gets the
// listen block's socket_mode, as one the daemon opens itself does.
func TestInheritedSocketMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "submit.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	// systemd's default SocketMode.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	s := sockets{"unix " + path: ul, "tcp " + tl.Addr().String(): tl}

	got, err := s.take(config.Listen{Address: "unix:" + path, Network: "unix", Addr: path, SocketMode: 0o660})
	if err != nil || got != ul {
		t.Fatalf("take: %v, %v", got, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o660 {
		t.Errorf("inherited socket has mode %04o, want socket_mode 0660", m)
	}

	got, err = s.take(config.Listen{Address: tl.Addr().String(), Network: "tcp", Addr: tl.Addr().String()})
	if err != nil || got != tl {
		t.Errorf("take of the TCP socket: %v, %v", got, err)
	}
	if got, err := s.take(config.Listen{Address: "unix:/nonexistent.sock", Network: "unix", Addr: "/nonexistent.sock", SocketMode: 0o666}); got != nil || err != nil {
		t.Errorf("take of a socket systemd did not pass: %v, %v", got, err)
	}
}
