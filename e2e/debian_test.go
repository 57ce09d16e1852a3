package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestDebianPackage installs the .deb that `make dist` builds into a
// Debian 12 root made with debootstrap, where exim4 is the MTA it must
// replace, and drives it as a system MTA: mailx, sendmail -t and PHP's
// mail() from ordinary users reach an SMTP sink on loopback with the
// daemon running and while it is stopped (maildrop); one user cannot read
// another's queued message; /etc/aliases is honoured and a SIGHUP applies
// a change; purge keeps undelivered mail. There is no systemd in the
// root, so the daemon is started as the unit would start it.
func TestDebianPackage(t *testing.T) {
	ci := os.Getenv("CI") == "true"
	if os.Geteuid() != 0 {
		if ci {
			t.Fatal("the package test needs root (chroot, debootstrap)")
		}
		t.Skip("not root")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		if ci {
			t.Fatal("debootstrap is not installed (.ci/run installs it)")
		}
		t.Skip("debootstrap is not installed")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	deb := buildDeb(t, repo)
	t.Logf("make dist: %v", time.Since(start).Round(time.Second))

	mark := time.Now()
	r := newDebianRoot(t, filepath.Join(repo, "e2e", "debian", "mkroot.sh"))
	t.Logf("Debian root: %v", time.Since(mark).Round(time.Second))

	// Install over exim4, noninteractively: apt must remove exim4 (both
	// provide mail-transport-agent) and the postinst must leave the
	// placeholders in place and say what to edit.
	if err := os.WriteFile(filepath.Join(r.dir, "tmp", "outbox.deb"), deb, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := r.run("apt-get", "install", "-y", "--no-install-recommends", "/tmp/outbox.deb")
	if code != 0 {
		t.Fatalf("apt-get install outbox: exit %d\n%s", code, out)
	}
	if st, _ := r.run("dpkg-query", "-W", "-f=${Status}", "exim4-daemon-light"); strings.Contains(st, "install ok installed") {
		t.Errorf("exim4-daemon-light is still installed: %s", st)
	}
	r.checkInstalled(t)
	t.Run("noninteractive install keeps the placeholders", func(t *testing.T) {
		if !strings.Contains(out, "not ready yet") {
			t.Errorf("the postinst did not say what to edit:\n%s", out)
		}
		if o, code := r.run("outbox", "check"); code == 0 {
			t.Errorf("outbox check accepts the packaged relay.hcl as it is:\n%s", o)
		}
	})
	t.Run("debconf answers", func(t *testing.T) { r.checkDebconf(t) })
	t.Run("an upgrade keeps the admin's disable", func(t *testing.T) {
		// What `systemctl disable` does: the [Install] symlinks go.
		links := []string{
			"etc/systemd/system/multi-user.target.wants/outbox.service",
			"etc/systemd/system/sockets.target.wants/outbox.socket",
		}
		for _, l := range links {
			if err := os.Remove(filepath.Join(r.dir, l)); err != nil {
				t.Fatal(err)
			}
		}
		if o, code := r.run("dpkg", "-i", "/tmp/outbox.deb"); code != 0 {
			t.Fatalf("dpkg -i over the installed package: exit %d\n%s", code, o)
		}
		for _, l := range links {
			if _, err := os.Lstat(filepath.Join(r.dir, l)); err == nil {
				t.Errorf("the upgrade enabled the unit again: /%s", l)
			}
		}
		// The admin enables it again (as systemctl enable would), for the
		// purge check below.
		for _, l := range links {
			if err := os.Symlink("/lib/systemd/system/"+filepath.Base(l), filepath.Join(r.dir, l)); err != nil {
				t.Fatal(err)
			}
		}
	})

	// The configuration of the rest of the test: the sink on loopback as
	// the upstream, a TCP listener on a free port (not 25: the root
	// shares the host's network), /etc/aliases.
	s := newDebSink(t)
	r.writeFile(t, "/etc/aliases", "postmaster: root\nteam: team-a@sink.test\n", 0o644)
	r.writeFile(t, "/etc/outbox/relay.hcl", fmt.Sprintf(`hostname = "debian.test"
aliases_file = "/etc/aliases"

listen {
  address = "127.0.0.1:%d"
}
listen {
  address = "unix:/run/outbox/submit.sock"
}

queue {
  retry_initial = "1h"
}

aliases {
  root = "root-dest@sink.test"
}

upstream "sink" {
  host = "127.0.0.1"
  port = %d
  tls  = "none"
}
`, freePort(t), s.port), 0o644)
	if o, code := r.run("outbox", "check"); code != 0 {
		t.Fatalf("outbox check on the test configuration: exit %d\n%s", code, o)
	}
	for _, u := range []string{"alice", "bob"} {
		if o, code := r.run("useradd", "--create-home", u); code != 0 {
			t.Fatalf("useradd %s: %s", u, o)
		}
	}

	d := r.startDaemon(t)

	t.Run("mailx, sendmail -t and PHP mail() reach the upstream", func(t *testing.T) {
		if o, code := r.runAs("alice", "", "sh", "-c", "echo 'sent with mailx' | mail -s 'via mailx' mailx@sink.test"); code != 0 {
			t.Fatalf("mail as alice: exit %d\n%s", code, o)
		}
		if o, code := r.runAs("alice", "To: sendmail@sink.test\nSubject: via sendmail -t\n\nbody\n", "sendmail", "-t", "-i"); code != 0 {
			t.Fatalf("sendmail -t as alice: exit %d\n%s", code, o)
		}
		if o, code := r.runAs("www-data", "", "php", "-r", `exit(mail("php@sink.test", "via php", "body") ? 0 : 1);`); code != 0 {
			t.Fatalf("PHP mail() as www-data: exit %d\n%s", code, o)
		}
		for rcpt, from := range map[string]string{
			"mailx@sink.test":    "alice@debian.test",
			"sendmail@sink.test": "alice@debian.test",
			"php@sink.test":      "www-data@debian.test",
		} {
			m := s.wait(t, rcpt, 20*time.Second)
			if m.from != from {
				t.Errorf("mail to %s: envelope sender %q, want %q", rcpt, m.from, from)
			}
		}
		// All three went through /usr/sbin/sendmail, the C program, to
		// the daemon's sendmail socket, not through the whole shim.
		if n := d.log.count("via=sendmail"); n != 3 {
			t.Errorf("%d messages accepted through the sendmail socket, want 3:\n%s", n, tail(d.log.String(), 20))
		}
	})

	t.Run("maildrop while the daemon is stopped", func(t *testing.T) {
		d.stop(t)
		// Errors, not fatal: the daemon must be running again for the rest.
		dropped := 0
		if o, code := r.runAs("alice", "To: down@sink.test\nSubject: while down\n\nbody\n", "sendmail", "-t", "-i"); code != 0 {
			t.Errorf("sendmail -t as alice, daemon stopped: exit %d\n%s", code, o)
		} else {
			dropped++
		}
		if o, code := r.runAs("www-data", "", "php", "-r", `exit(mail("php-down@sink.test", "via php", "body") ? 0 : 1);`); code != 0 {
			t.Errorf("PHP mail() as www-data, daemon stopped: exit %d\n%s", code, o)
		} else {
			dropped++
		}
		d = r.startDaemon(t)
		if dropped < 2 {
			return
		}
		s.wait(t, "down@sink.test", 30*time.Second)
		s.wait(t, "php-down@sink.test", 30*time.Second)
	})

	// A message the sink defers stays queued: alice's, which bob must not
	// be able to read.
	if o, code := r.runAs("alice", "To: defer@sink.test\nSubject: alice's secret\n\nbody\n", "sendmail", "-t", "-i"); code != 0 {
		t.Fatalf("sendmail as alice: exit %d\n%s", code, o)
	}
	var id string
	waitFor(t, "the deferred message in the queue", 30*time.Second, func() bool {
		id = r.queuedID(t, "defer@sink.test")
		return id != ""
	})
	t.Run("queue show only for the submitter", func(t *testing.T) {
		if st, _ := r.run("stat", "-c", "%a %U %G", "/var/spool/outbox/spool.db"); strings.TrimSpace(st) != "600 outbox outbox" {
			t.Errorf("/var/spool/outbox/spool.db: %q, want 600 outbox outbox", strings.TrimSpace(st))
		}
		if o, code := r.runAs("bob", "", "outbox", "queue", "show", id); code == 0 || strings.Contains(o, "secret") {
			t.Errorf("bob read alice's queued message (exit %d):\n%s", code, o)
		}
		if o, code := r.runAs("alice", "", "outbox", "queue", "show", id); code != 0 || !strings.Contains(o, "alice's secret") {
			t.Errorf("alice cannot read her own queued message (exit %d):\n%s", code, o)
		}
	})

	t.Run("aliases and reload", func(t *testing.T) {
		if o, code := r.runAs("alice", "Subject: to the team\n\nbody\n", "sendmail", "team"); code != 0 {
			t.Fatalf("sendmail team: exit %d\n%s", code, o)
		}
		s.wait(t, "team-a@sink.test", 20*time.Second)

		r.writeFile(t, "/etc/aliases", "postmaster: root\nteam: team-b@sink.test\n", 0o644)
		pid := d.cmd.Process.Pid
		d.signal(t, syscall.SIGHUP)
		// The reload is done when mail to the alias reaches the new
		// address; a daemon that exited on SIGHUP fails at once.
		deadline := time.Now().Add(20 * time.Second)
		for n := 0; !s.has("team-b@sink.test"); n++ {
			if d.exited() {
				t.Fatalf("the daemon exited on SIGHUP (%v)\n%s", d.err, tail(d.log.String(), 20))
			}
			if time.Now().After(deadline) {
				t.Fatal("mail to the alias did not reach its new address after SIGHUP")
			}
			r.runAs("alice", fmt.Sprintf("Subject: to the team %d\n\nbody\n", n), "sendmail", "team")
			s.waitAny(2 * time.Second)
		}
		// The chroot shares the host's process table, where other outbox
		// daemons may run: the proof of "same PID" is that the process
		// the test started is still the one serving.
		if d.exited() || d.cmd.Process.Pid != pid {
			t.Errorf("the daemon (pid %d) did not survive SIGHUP (%v)", pid, d.err)
		}
	})

	t.Run("purge keeps undelivered mail", func(t *testing.T) {
		if !d.exited() {
			d.stop(t)
		}
		// bsd-mailx depends on mail-transport-agent: force past it, as
		// replacing the MTA would.
		o, code := r.run("dpkg", "--purge", "--force-depends", "outbox")
		if code != 0 {
			t.Fatalf("dpkg --purge: exit %d\n%s", code, o)
		}
		t.Logf("dpkg --purge outbox:\n%s", o)
		if !strings.Contains(o, "NOT deleted") {
			t.Errorf("purge did not say the spool was kept:\n%s", o)
		}
		kept, _ := filepath.Glob(filepath.Join(r.dir, "var/spool/outbox.purged-*/spool.db"))
		if len(kept) != 1 {
			t.Errorf("kept spool: %v, want one", kept)
		}
		for _, p := range []string{"/var/spool/outbox", "/etc/outbox", "/usr/bin/outbox",
			"/etc/systemd/system/multi-user.target.wants/outbox.service",
			"/etc/systemd/system/sockets.target.wants/outbox.socket"} {
			if _, err := os.Lstat(filepath.Join(r.dir, p)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s remains after purge (%v)", p, err)
			}
		}
		if o, code := r.run("getent", "passwd", "outbox"); code != 0 {
			t.Errorf("the outbox user was removed (Debian keeps system users): %s", o)
		}
		if o, _ := r.run("debconf-show", "outbox"); strings.TrimSpace(o) != "" {
			t.Errorf("debconf still holds answers after purge:\n%s", o)
		}
	})
	t.Logf("package test: %v in all", time.Since(start).Round(time.Second))
}

// builtDeb is the .deb made once for the package tests.
var builtDeb struct {
	sync.Mutex
	deb []byte
}

// buildDeb runs `make dist` in the repository, checks the .deb with
// lintian and returns it; later calls return the same package.
func buildDeb(t *testing.T, repo string) []byte {
	t.Helper()
	builtDeb.Lock()
	defer builtDeb.Unlock()
	if builtDeb.deb != nil {
		return builtDeb.deb
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "dist")
	cmd.Dir = repo
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make dist: %v\n%s", err, tail(string(out), 30))
	}
	debs, _ := filepath.Glob(filepath.Join(repo, "dist", "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("make dist made %v, want one .deb", debs)
	}
	if lintian, err := exec.LookPath("lintian"); err == nil {
		// Errors fail the test; warnings are the package's known ones.
		cmd := exec.CommandContext(ctx, lintian, "--tag-display-limit", "0", debs[0])
		out, _ := cmd.CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "E: ") {
				t.Errorf("lintian: %s", l)
			}
		}
		t.Logf("lintian:\n%s", out)
	} else if os.Getenv("CI") == "true" {
		t.Error("lintian is not installed (.ci/run installs it)")
	}
	deb, err := os.ReadFile(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	builtDeb.deb = deb
	return deb
}

// debianRoot is a Debian root with /proc mounted.
type debianRoot struct {
	dir string
	top *testing.T // the whole test: daemons started in subtests outlive them
}

func newDebianRoot(t *testing.T, mkroot string) *debianRoot {
	t.Helper()
	base, err := os.MkdirTemp("", "outbox-debian-")
	if err != nil {
		t.Fatal(err)
	}
	r := &debianRoot{dir: filepath.Join(base, "root"), top: t}
	if err := os.Mkdir(r.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Never remove a tree with something still mounted inside it.
		exec.Command("umount", "-R", "-l", filepath.Join(r.dir, "proc")).Run()
		mounts, _ := os.ReadFile("/proc/self/mounts")
		if strings.Contains(string(mounts), " "+r.dir+"/") {
			t.Errorf("%s still has mounts; left in place", r.dir)
			return
		}
		if t.Failed() {
			t.Logf("Debian root kept for inspection: %s", r.dir)
			return
		}
		os.RemoveAll(base)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mkroot, r.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mkroot, err, tail(string(out), 30))
	}
	if out, err := exec.Command("mount", "-t", "proc", "proc", filepath.Join(r.dir, "proc")).CombinedOutput(); err != nil {
		t.Fatalf("mount proc: %v %s", err, out)
	}
	return r
}

// command is a command inside the root, as root, or as user (setpriv
// with the user's groups and environment) when user is set.
func (r *debianRoot) command(ctx context.Context, user, stdin string, args ...string) *exec.Cmd {
	full := []string{r.dir}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	if user != "" {
		// A strict umask: what the user leaves must still reach the daemon.
		full = append(full, "sh", "-c", `umask 077; exec "$@"`, "sh",
			"setpriv", "--reuid="+user, "--regid="+user, "--init-groups", "--reset-env",
			"env", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
	}
	cmd := exec.CommandContext(ctx, "chroot", append(full, args...)...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	return cmd
}

// run runs a command in the root as root and returns its combined output
// and exit code.
func (r *debianRoot) run(args ...string) (string, int) {
	return r.runAs("", "", args...)
}

func (r *debianRoot) runAs(user, stdin string, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := r.command(ctx, user, stdin, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return string(out) + err.Error(), -1
	}
	return string(out), 0
}

func (r *debianRoot) writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(r.dir, path)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// checkInstalled checks the privilege model of the installed files.
func (r *debianRoot) checkInstalled(t *testing.T) {
	t.Helper()
	want := map[string]string{
		"/usr/sbin/sendmail":         "755 root root",
		"/usr/sbin/outbox-sendmail":  "755 root root",
		"/usr/bin/outbox":            "755 root root",
		"/etc/outbox":                "755 root root",
		"/etc/outbox/relay.hcl":      "644 root root",
		"/var/spool/outbox":          "751 outbox outbox",
		"/var/spool/outbox/maildrop": "1733 outbox outbox",
	}
	for p, w := range want {
		o, code := r.run("stat", "-c", "%a %U %G", p)
		if code != 0 || strings.TrimSpace(o) != w {
			t.Errorf("%s: %q, want %q", p, strings.TrimSpace(o), w)
		}
	}
	for link, target := range map[string]string{
		"/usr/bin/mailq":      "../sbin/sendmail",
		"/usr/bin/newaliases": "../sbin/sendmail",
		"/usr/lib/sendmail":   "../sbin/sendmail",
		// deb-systemd-helper enables the units without a running systemd.
		"/etc/systemd/system/multi-user.target.wants/outbox.service": "/lib/systemd/system/outbox.service",
		"/etc/systemd/system/sockets.target.wants/outbox.socket":     "/lib/systemd/system/outbox.socket",
	} {
		got, err := os.Readlink(filepath.Join(r.dir, link))
		if err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, target)
		}
	}
	for _, m := range []string{"/usr/share/man/man8/sendmail.8.gz", "/usr/share/man/man1/mailq.1.gz", "/usr/share/man/man8/newaliases.8.gz"} {
		if _, err := os.Stat(filepath.Join(r.dir, m)); err != nil {
			t.Error(err)
		}
	}
}

// checkDebconf preseeds answers and reconfigures: relay.hcl gets them in
// place of the placeholders, the password only /etc/outbox/password.
func (r *debianRoot) checkDebconf(t *testing.T) {
	const secret = "s3cret-PW-7f3a"
	sel := "outbox outbox/provider select smarthost\n" +
		"outbox outbox/smarthost string smtp.example.org:2525\n" +
		"outbox outbox/username string relay@example.org\n" +
		"outbox outbox/password password " + secret + "\n" +
		"outbox outbox/root_address string ops@example.org\n"
	if o, code := r.runAs("", sel, "debconf-set-selections"); code != 0 {
		t.Fatalf("debconf-set-selections: %s", o)
	}
	// The admin has already replaced one placeholder by hand: it stays.
	confPath := filepath.Join(r.dir, "etc/outbox/relay.hcl")
	conf, err := os.ReadFile(confPath)
	if err != nil {
		t.Fatal(err)
	}
	const handEdit = `envelope_from = "by-hand@example.net"`
	edited := regexp.MustCompile(`envelope_from\s*=\s*"CHANGE-ME[^"]*"`).ReplaceAllLiteral(conf, []byte(handEdit))
	if err := os.WriteFile(confPath, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	o, code := r.run("dpkg-reconfigure", "-fnoninteractive", "outbox")
	if code != 0 {
		t.Fatalf("dpkg-reconfigure: exit %d\n%s", code, o)
	}
	if strings.Contains(o, secret) {
		t.Errorf("dpkg-reconfigure printed the password")
	}
	if st, _ := r.run("stat", "-c", "%a %U %G", "/etc/outbox/password"); strings.TrimSpace(st) != "640 root outbox" {
		t.Errorf("/etc/outbox/password: %q, want 640 root outbox", strings.TrimSpace(st))
	}
	if pw, err := os.ReadFile(filepath.Join(r.dir, "etc/outbox/password")); err != nil || string(pw) != secret+"\n" {
		t.Errorf("/etc/outbox/password holds %q (%v)", pw, err)
	}
	for _, f := range []string{"etc/outbox/relay.hcl", "var/cache/debconf/passwords.dat", "var/cache/debconf/config.dat"} {
		if b, _ := os.ReadFile(filepath.Join(r.dir, f)); strings.Contains(string(b), secret) {
			t.Errorf("the password is in /%s", f)
		}
	}
	conf, _ = os.ReadFile(confPath)
	for _, w := range []string{`host = "smtp.example.org"`, `port = 2525`, `username = "relay@example.org"`, `"ops@example.org"`, handEdit} {
		if !strings.Contains(string(conf), w) {
			t.Errorf("relay.hcl lacks %s after dpkg-reconfigure:\n%s", w, conf)
		}
	}
}

// queuedID returns the ID of the queued message for rcpt, or "".
func (r *debianRoot) queuedID(t *testing.T, rcpt string) string {
	t.Helper()
	o, code := r.run("outbox", "queue", "ls", "--json")
	if code != 0 {
		t.Fatalf("outbox queue ls: exit %d\n%s", code, o)
	}
	var q []struct {
		ID         string `json:"id"`
		Recipients []struct {
			Address string `json:"address"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(o), &q); err != nil {
		t.Fatalf("queue ls --json: %v\n%s", err, o)
	}
	for _, m := range q {
		for _, rc := range m.Recipients {
			if rc.Address == rcpt {
				return m.ID
			}
		}
	}
	return ""
}

// debDaemon is `outbox serve` in the root.
type debDaemon struct {
	cmd  *exec.Cmd
	log  *logBuf
	done chan struct{}
	err  error
}

// startDaemon starts the daemon as outbox.service would, without systemd:
// the runtime directory, the user, the umask.
func (r *debianRoot) startDaemon(t *testing.T) *debDaemon {
	t.Helper()
	if o, code := r.run("install", "-d", "-m", "0755", "-o", "outbox", "-g", "outbox", "/run/outbox"); code != 0 {
		t.Fatalf("creating /run/outbox: %s", o)
	}
	d := &debDaemon{log: &logBuf{}, done: make(chan struct{})}
	d.cmd = r.command(context.Background(), "", "", "sh", "-c",
		"umask 0027; exec setpriv --reuid=outbox --regid=outbox --init-groups /usr/bin/outbox serve --config /etc/outbox/relay.hcl")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	r.top.Cleanup(func() {
		if !d.exited() {
			d.cmd.Process.Kill()
			<-d.done
		}
		if r.top.Failed() {
			r.top.Logf("daemon log:\n%s", tail(d.log.String(), 40))
		}
	})
	waitFor(t, "the daemon to start", 20*time.Second, func() bool {
		if d.exited() {
			t.Fatalf("the daemon exited: %v\n%s", d.err, tail(d.log.String(), 20))
		}
		return d.log.count("outbox started") > 0
	})
	return d
}

func (d *debDaemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *debDaemon) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *debDaemon) stop(t *testing.T) {
	t.Helper()
	d.signal(t, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the daemon did not stop within 30s of SIGTERM")
	}
	if d.err != nil {
		t.Fatalf("the daemon exited with %v\n%s", d.err, tail(d.log.String(), 20))
	}
}

// debSink is the upstream: it records each message's envelope and
// answers 451 for defer@sink.test, so that message stays queued.
type debSink struct {
	port int
	mu   sync.Mutex
	msgs []sunkMessage
	news chan struct{}
}

type sunkMessage struct {
	from  string
	rcpts []string
	data  string
}

func newDebSink(t *testing.T) *debSink {
	t.Helper()
	s := &debSink{news: make(chan struct{}, 1)}
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *debSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &debSession{s: s}, nil }

// has reports whether a message for rcpt has arrived.
func (s *debSink) has(rcpt string) bool {
	_, ok := s.find(rcpt)
	return ok
}

func (s *debSink) find(rcpt string) (sunkMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs {
		for _, r := range m.rcpts {
			if r == rcpt {
				return m, true
			}
		}
	}
	return sunkMessage{}, false
}

// waitAny waits up to timeout for the next message to arrive.
func (s *debSink) waitAny(timeout time.Duration) {
	select {
	case <-s.news:
	case <-time.After(timeout):
	}
}

func (s *debSink) wait(t *testing.T, rcpt string, timeout time.Duration) sunkMessage {
	t.Helper()
	var m sunkMessage
	waitFor(t, "mail for "+rcpt+" at the upstream", timeout, func() bool {
		var ok bool
		m, ok = s.find(rcpt)
		return ok
	})
	return m
}

type debSession struct {
	s   *debSink
	msg sunkMessage
}

func (ss *debSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.msg = sunkMessage{from: from}
	return nil
}

func (ss *debSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to == "defer@sink.test" {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	}
	ss.msg.rcpts = append(ss.msg.rcpts, to)
	return nil
}

func (ss *debSession) Data(r io.Reader) error {
	var b strings.Builder
	if _, err := io.Copy(&b, bufio.NewReader(r)); err != nil {
		return err
	}
	ss.msg.data = b.String()
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.msg)
	ss.s.mu.Unlock()
	select {
	case ss.s.news <- struct{}{}:
	default:
	}
	return nil
}

func (ss *debSession) Reset()        { ss.msg = sunkMessage{} }
func (ss *debSession) Logout() error { return nil }
