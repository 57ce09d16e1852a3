package relay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
)

// TestAdminFloodHelper is the client side of TestAdminConnectionCap, run
// as an ordinary user in a child process; it does nothing otherwise. It
// holds n idle connections, then reports what a further one gets, how
// long the server takes to close the idle ones, and what a request gets
// after that.
func TestAdminFloodHelper(t *testing.T) {
	spec := os.Getenv("OUTBOX_ADMIN_FLOOD")
	if spec == "" {
		t.Skip("run by TestAdminConnectionCap")
	}
	sock, ns, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(ns)
	request := func() string {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /stats HTTP/1.0\r\nHost: outbox\r\n\r\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "read: " + err.Error()
		}
		return strings.TrimSpace(line)
	}
	var idle []net.Conn
	for range n {
		c, err := net.Dial("unix", sock)
		if err != nil {
			fmt.Println("dial:", err)
			return
		}
		idle = append(idle, c)
	}
	start := time.Now()
	fmt.Println("extra:", request())
	var slowest time.Duration
	closed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
		slowest = max(slowest, time.Since(start))
	}
	fmt.Printf("closed: %d after %d ms\n", closed, slowest.Milliseconds())
	fmt.Println("after:", request())
}

// TestAdminConnectionCap: an ordinary user cannot pin the admin socket.
// Beyond the cap its connections get 503 at once, idle ones are closed
// after the header timeout, root's requests are served meanwhile, and the
// user is served again once its idle connections are gone.
func TestAdminConnectionCap(t *testing.T) {
	if os.Getuid() != 0 {
		// Under CI a skip would hide the test: say what is missing.
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run the client as another user")
		}
		t.Skip("needs root to run the client as another user")
	}
	saved := adminLimits
	t.Cleanup(func() { adminLimits = saved })
	adminLimits.maxConns = 4
	adminLimits.readHeader = 1500 * time.Millisecond

	// A folder the ordinary user can reach: the admin socket and a copy
	// of this test binary, which plays the client.
	dir, err := os.MkdirTemp("", "outbox-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, filepath.Join(dir, "var")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "relay.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := dlvConfig(t, dir, schedHCL("", ""))
	cfg.Listen[0].Addr = fmt.Sprintf("127.0.0.1:%d", dlvFreePort(t))
	dlvStartRelay(t, cfg, Options{})

	cmd := exec.Command(bin, "-test.run=^TestAdminFloodHelper$", "-test.count=1")
	cmd.Dir = "/"
	cmd.Env = []string{"OUTBOX_ADMIN_FLOOD=" + cfg.Admin.Socket + ",4"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	lines := bufio.NewScanner(out)
	next := func(prefix string) string {
		for lines.Scan() {
			if l := lines.Text(); strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			} else {
				t.Logf("helper: %s", l)
			}
		}
		t.Fatalf("the helper never printed %q", prefix)
		return ""
	}

	if got := next("extra: "); !strings.HasPrefix(got, "HTTP/1.0 503") {
		t.Errorf("a connection beyond the cap got %q, want 503 at once", got)
	}
	// The cap is full of the ordinary user's idle connections: root is
	// still served.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := adminapi.NewClient(cfg.Admin.Socket).Stats(ctx); err != nil {
		t.Errorf("root during the flood: %v", err)
	}
	var closed, ms int
	if _, err := fmt.Sscanf(next("closed: "), "%d after %d ms", &closed, &ms); err != nil {
		t.Fatal(err)
	}
	if closed != 4 || ms > 1500+3000 {
		t.Errorf("%d of 4 idle connections closed by the server, the last after %d ms; want all within the 1.5 s header timeout (+3 s slack)", closed, ms)
	}
	if got := next("after: "); !strings.HasPrefix(got, "HTTP/1.0 200") {
		t.Errorf("after the idle connections were closed, a request got %q, want 200", got)
	}
}
