package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDebianPackageSystemd boots the Debian 12 root with systemd-nspawn
// (its own network namespace) with the package installed, and checks the
// unit as shipped: the socket and the service start at boot under the
// sandbox, an ordinary user's mail goes through, `systemd-analyze
// security` rates the service at most 2.0, `systemctl reload` keeps the
// daemon's PID, and socket activation starts a stopped service.
func TestDebianPackageSystemd(t *testing.T) {
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("the package test needs root")
		}
		t.Skip("not root")
	}
	for _, tool := range []string{"debootstrap", "systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			if ci {
				t.Fatalf("%s is not installed (.ci/run installs it)", tool)
			}
			t.Skip(tool + " is not installed")
		}
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deb := buildDeb(t, repo)
	r := newDebianRoot(t, filepath.Join(repo, "e2e", "debian", "mkroot.sh"))
	// Not in /tmp: the booted container has a tmpfs there.
	if err := os.WriteFile(filepath.Join(r.dir, "root", "outbox.deb"), deb, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := r.run("apt-get", "install", "-y", "--no-install-recommends", "/root/outbox.deb"); code != 0 {
		t.Fatalf("apt-get install outbox: exit %d\n%s", code, out)
	}
	r.writeFile(t, "/etc/outbox/relay.hcl", `hostname = "nspawn.test"

listen {
  address = "127.0.0.1:25"
}
listen {
  address = "[::1]:25"
}
listen {
  address = "unix:/run/outbox/submit.sock"
}

aliases {
  root = "admin@example.com"
}

upstream "capture" {
  type = "maildir"
  path = "/var/spool/outbox/maildir"
}
`, 0o644)
	// The root boots: services may start now.
	os.Remove(filepath.Join(r.dir, "usr/sbin/policy-rc.d"))
	r.writeFile(t, "/etc/hostname", "nspawn\n", 0o644)
	// nspawn mounts its own /proc.
	if out, err := exec.Command("umount", filepath.Join(r.dir, "proc")).CombinedOutput(); err != nil {
		t.Fatalf("umount proc: %v %s", err, out)
	}

	c := bootContainer(t, r.dir)
	waitFor(t, "outbox.service active after boot", 90*time.Second, func() bool {
		o, _ := c.run("systemctl", "is-active", "outbox.service")
		return strings.TrimSpace(o) == "active"
	})
	t.Logf("booted with outbox.service active in %v", time.Since(start).Round(time.Second))

	t.Run("mail from nobody under the sandbox", func(t *testing.T) {
		if o, code := c.run("sh", "-c", `printf 'Subject: boot\n\nbody\n' | setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/sbin/sendmail -t root`); code != 0 {
			t.Fatalf("sendmail as nobody: exit %d\n%s", code, o)
		}
		waitFor(t, "the message in the Maildir", 20*time.Second, func() bool {
			m, _ := filepath.Glob(filepath.Join(r.dir, "var/spool/outbox/maildir/new/*"))
			return len(m) == 1
		})
	})

	t.Run("systemd-analyze security", func(t *testing.T) {
		o, _ := c.run("systemd-analyze", "security", "--no-pager", "outbox.service")
		m := regexp.MustCompile(`Overall exposure level for outbox.service: ([0-9.]+)`).FindStringSubmatch(o)
		if m == nil {
			t.Fatalf("no score in:\n%s", o)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("systemd-analyze security outbox.service: %v", score)
		if score > 2.0 {
			t.Errorf("exposure %v, want at most 2.0:\n%s", score, o)
		}
	})

	t.Run("reload keeps the PID", func(t *testing.T) {
		before := c.mainPID(t)
		if o, code := c.run("systemctl", "reload", "outbox.service"); code != 0 {
			t.Fatalf("systemctl reload: exit %d\n%s", code, o)
		}
		// The reload is done when the process that got SIGHUP logs it; a
		// daemon that died on the signal never does, and one restarted by
		// systemd has another PID.
		samePID := func() {
			if pid := c.mainPID(t); pid != before {
				o, _ := c.run("journalctl", "-u", "outbox", "--no-pager", "-n", "20")
				t.Fatalf("MainPID %d became %d after reload\n%s", before, pid, o)
			}
		}
		waitFor(t, "the daemon to log its reload", 20*time.Second, func() bool {
			samePID()
			o, _ := c.run("journalctl", "-u", "outbox", "_PID="+strconv.Itoa(before), "-o", "cat", "--no-pager")
			return strings.Contains(o, "configuration reloaded")
		})
		waitFor(t, "outbox.service active after the reload", 20*time.Second, func() bool {
			samePID()
			o, _ := c.run("systemctl", "is-active", "outbox.service")
			return strings.TrimSpace(o) == "active"
		})
	})

	t.Run("socket activation starts a stopped service", func(t *testing.T) {
		if o, code := c.run("systemctl", "stop", "outbox.service"); code != 0 {
			t.Fatalf("systemctl stop: %s", o)
		}
		if o, _ := c.run("systemctl", "is-active", "outbox.socket"); strings.TrimSpace(o) != "active" {
			t.Fatalf("outbox.socket is %q after stopping the service", o)
		}
		if o, code := c.run("sh", "-c", `printf 'Subject: activation\n\nbody\n' | setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/sbin/sendmail -t root`); code != 0 {
			t.Fatalf("sendmail as nobody: exit %d\n%s", code, o)
		}
		waitFor(t, "the second message in the Maildir", 20*time.Second, func() bool {
			m, _ := filepath.Glob(filepath.Join(r.dir, "var/spool/outbox/maildir/new/*"))
			return len(m) == 2
		})
		// Both went through the sendmail socket, the second one held by
		// systemd while the service was stopped.
		o, _ := c.run("journalctl", "-u", "outbox.service", "--no-pager", "-o", "cat")
		if n, smtp := strings.Count(o, "via=sendmail"), strings.Count(o, "via=smtp"); n != 2 || smtp != 0 {
			t.Errorf("%d messages accepted through the sendmail socket and %d over SMTP, want 2 and 0:\n%s", n, smtp, tail(o, 20))
		}
	})
	t.Run("an upgrade restarts the service, the socket stays", func(t *testing.T) {
		before := c.mainPID(t)
		if o, code := c.run("dpkg", "-i", "/root/outbox.deb"); code != 0 {
			t.Fatalf("dpkg -i (upgrade) under systemd: exit %d\n%s", code, o)
		}
		waitFor(t, "outbox.service active again", 30*time.Second, func() bool {
			o, _ := c.run("systemctl", "is-active", "outbox.service")
			return strings.TrimSpace(o) == "active"
		})
		if after := c.mainPID(t); after == before {
			t.Errorf("MainPID %d unchanged: the upgrade did not restart the service", after)
		}
		if o, _ := c.run("systemctl", "is-active", "outbox.socket"); strings.TrimSpace(o) != "active" {
			t.Errorf("outbox.socket is %q after the upgrade", strings.TrimSpace(o))
		}
		if o, code := c.run("sh", "-c", `printf 'Subject: upgraded\n\nbody\n' | setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/sbin/sendmail -t root`); code != 0 {
			t.Fatalf("sendmail as nobody after the upgrade: exit %d\n%s", code, o)
		}
	})
	if t.Failed() {
		o, _ := c.run("journalctl", "-u", "outbox", "--no-pager", "-n", "40")
		t.Logf("journal of outbox:\n%s", o)
	}
}

// container is a root booted with systemd-nspawn.
type container struct {
	nspawn *exec.Cmd
	done   chan struct{}
	init   int // the container's systemd, as seen from here
	log    *logBuf
}

func bootContainer(t *testing.T, root string) *container {
	t.Helper()
	c := &container{done: make(chan struct{}), log: &logBuf{}}
	// --register=no --keep-unit: nothing asks a systemd outside, which
	// need not run here; --private-network: port 25 and the rest stay in
	// the container.
	c.nspawn = exec.Command("systemd-nspawn", "--register=no", "--keep-unit", "--quiet",
		"--private-network", "-D", root, "--boot")
	c.nspawn.Stdout, c.nspawn.Stderr = c.log, c.log
	c.nspawn.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.nspawn.Wait(); close(c.done) }()
	t.Cleanup(func() {
		if c.init != 0 {
			c.run("systemctl", "poweroff")
		}
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			// Killing nspawn alone would leave the container running:
			// SIGKILL to its init ends every process in its PID namespace.
			if c.init != 0 {
				syscall.Kill(c.init, syscall.SIGKILL)
			}
			c.nspawn.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("nspawn output:\n%s", tail(c.log.String(), 40))
		}
	})
	waitFor(t, "the container's init", 30*time.Second, func() bool {
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited:\n%s", tail(c.log.String(), 30))
		default:
		}
		c.init = childOf(c.nspawn.Process.Pid, "systemd")
		return c.init != 0
	})
	waitFor(t, "systemd in the container to answer", 60*time.Second, func() bool {
		o, _ := c.run("systemctl", "is-system-running")
		switch strings.TrimSpace(o) {
		case "running", "degraded":
			return true
		}
		return false
	})
	return c
}

// childOf returns the PID of a child of pid named comm, or 0. nspawn's
// first child is a helper that forks the container's init and exits.
func childOf(pid int, comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		// pid (comm) state ppid …; comm may hold spaces: split after ')'.
		i := strings.LastIndexByte(line, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(line[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) && line[strings.IndexByte(line, '(')+1:i] == comm {
			return n
		}
	}
	return 0
}

// run runs a command inside the container and returns its combined
// output and exit code.
func (c *container) run(args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.init), "-a"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return string(out) + err.Error(), -1
	}
	return string(out), 0
}

func (c *container) mainPID(t *testing.T) int {
	t.Helper()
	o, code := c.run("systemctl", "show", "--property=MainPID", "--value", "outbox.service")
	pid, err := strconv.Atoi(strings.TrimSpace(o))
	if code != 0 || err != nil || pid == 0 {
		t.Fatalf("outbox.service MainPID: %q (exit %d)", o, code)
	}
	return pid
}
