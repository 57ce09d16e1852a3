package relay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outbox-mta/outbox/maildrop"
	"github.com/outbox-mta/outbox/spool"
)

const mdHCL = `
hostname = "relay.test"
listen { address = "127.0.0.1:2525" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
limits {
  max_message_size = "4KiB"
  max_recipients   = 3
}
aliases {
  root = "ops@example.com"
}
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
`

// mdRelay is a relay with a real spool and scheduler, not running, for
// calling the importer directly.
func mdRelay(t *testing.T) *Relay {
	t.Helper()
	return mdRelayIn(t, t.TempDir(), mdHCL)
}

func mdRelayIn(t *testing.T, dir, hcl string) *Relay {
	t.Helper()
	cfg := dlvConfig(t, dir, hcl)
	if err := os.MkdirAll(filepath.Dir(cfg.Spool.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := maildrop.Setup(cfg.Spool.Maildrop); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(cfg.Spool.Path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	clock := newDlvClock()
	r := &Relay{cfg: cfg, log: dlvLogger(t), now: clock.Now, spool: sp,
		in: testInbound(cfg, sp, dlvLogger(t), clock.Now)}
	r.sched = NewScheduler(sp, testLive(cfg, nil), r.log, clock.Now)
	if _, err := maildrop.PrivateDir(r.rejectedDir()); err != nil {
		t.Fatal(err)
	}
	return r
}

func mdWrite(t *testing.T, r *Relay, env *maildrop.Envelope, msg string) string {
	t.Helper()
	if env.UID == 0 {
		env.UID = os.Getuid()
	}
	name, err := maildrop.Write(r.cfg.Spool.Maildrop, env, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// mdQueue returns the queued messages: the imported one (from app@) and
// the bounces (from <>).
func mdQueue(t *testing.T, r *Relay) (orig, bounces []*spool.Message) {
	t.Helper()
	list, err := r.spool.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.From == "" {
			bounces = append(bounces, m)
		} else {
			orig = append(orig, m)
		}
	}
	return orig, bounces
}

func mdBody(t *testing.T, r *Relay, id string) string {
	t.Helper()
	rc, err := r.spool.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mdGone(t *testing.T, r *Relay, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(r.cfg.Spool.Maildrop, name)); !os.IsNotExist(err) {
		t.Errorf("maildrop entry %s still there (%v)", name, err)
	}
}

// TestMaildropRefusedRecipientBounces: a recipient refused on import (a
// local name whose alias went away since the shim stored the file) fails
// with a bounce to the sender; the others are queued; the file is not set
// aside.
func TestMaildropRefusedRecipientBounces(t *testing.T) {
	r := mdRelay(t)
	name := mdWrite(t, r, &maildrop.Envelope{From: "app@example.org", Recipients: []string{"gone@relay.test", "root@relay.test"}},
		"Subject: nightly report\r\n\r\nall fine\r\n")
	if n := r.importMaildrop(context.Background()); n != 1 {
		t.Fatalf("imported %d, want 1", n)
	}
	mdGone(t, r, name)
	orig, bounces := mdQueue(t, r)
	if len(orig) != 1 || len(bounces) != 1 {
		t.Fatalf("queue: %d messages, %d bounces; want 1 and 1", len(orig), len(bounces))
	}
	rs := orig[0].Recipients
	if len(rs) != 2 || rs[0].Status != spool.Failed || rs[0].Code != "5.1.1" || rs[1].Status != spool.Pending || rs[1].Address != "ops@example.com" {
		t.Errorf("recipients = %+v", rs)
	}
	if b := bounces[0]; b.Recipients[0].Address != "app@example.org" {
		t.Errorf("bounce goes to %v", b.Recipients)
	}
	dsn := mdBody(t, r, bounces[0].ID)
	for _, want := range []string{"Final-Recipient: rfc822; gone@relay.test", "Status: 5.1.1", "Diagnostic-Code: smtp; 550", "Subject: nightly report"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("bounce lacks %q:\n%s", want, dsn)
		}
	}
	if entries, _ := os.ReadDir(r.rejectedDir()); len(entries) != 0 {
		t.Errorf("rejected folder holds %v", entries)
	}
}

// TestMaildropAllRefusedOrTooBig: when no recipient is left, or the
// message is over max_message_size now, the sender gets a bounce for all
// of them and nothing else stays queued.
func TestMaildropAllRefusedOrTooBig(t *testing.T) {
	cases := []struct {
		label, body, status string
		rcpts               []string
	}{
		{"all refused", "Subject: s\r\n\r\nx\r\n", "5.1.1", []string{"gone", "nobody-here@localhost"}},
		{"too big", "Subject: s\r\n\r\n" + strings.Repeat("0123456789\r\n", 500), "5.3.4", []string{"bob@example.com"}},
		{"too many recipients", "Subject: s\r\n\r\nx\r\n", "5.5.3", []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"}},
	}
	for _, c := range cases {
		t.Run(c.label, func(t *testing.T) {
			r := mdRelay(t)
			name := mdWrite(t, r, &maildrop.Envelope{From: "app@example.org", Recipients: c.rcpts}, c.body)
			r.importMaildrop(context.Background())
			mdGone(t, r, name)
			orig, bounces := mdQueue(t, r)
			if len(bounces) != 1 {
				t.Fatalf("%d bounces, want 1", len(bounces))
			}
			dsn := mdBody(t, r, bounces[0].ID)
			if !strings.Contains(dsn, "Status: "+c.status) || !strings.Contains(dsn, "Subject: s") {
				t.Errorf("bounce lacks Status: %s or the original's header:\n%s", c.status, dsn)
			}
			if c.label == "too many recipients" {
				if len(orig) != 1 || orig[0].Recipients[3].Status != spool.Failed || orig[0].Recipients[2].Status != spool.Pending {
					t.Errorf("queue = %+v", orig)
				}
				return
			}
			if len(orig) != 0 {
				t.Errorf("the original stays queued: %+v", orig[0])
			}
		})
	}
}

// TestMaildropUnreadableFileSetAside: a file that is no message at all
// goes to the rejected folder beside the spool, which only the daemon's
// user can enter.
func TestMaildropUnreadableFileSetAside(t *testing.T) {
	r := mdRelay(t)
	name := "0000000000000001-0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(filepath.Join(r.cfg.Spool.Maildrop, name), []byte("not a maildrop file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.importMaildrop(context.Background())
	mdGone(t, r, name)
	if _, err := os.Stat(filepath.Join(r.rejectedDir(), name)); err != nil {
		t.Errorf("not in the rejected folder: %v", err)
	}
	if st, err := os.Stat(r.rejectedDir()); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("rejected folder: %v %v", st.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(r.cfg.Spool.Maildrop, "rejected")); !os.IsNotExist(err) {
		t.Errorf("a rejected folder inside the maildrop: %v", err)
	}
}

// TestMaildropSubmitterIsFileOwner: the uid in the file is the user's own
// claim; the owner of the file is who submitted it.
func TestMaildropSubmitterIsFileOwner(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to give the file another owner")
		}
		t.Skip("needs root to give the file another owner")
	}
	r := mdRelay(t)
	name := mdWrite(t, r, &maildrop.Envelope{From: "app@example.org", Recipients: []string{"bob@example.com"}, UID: 1, User: "root"}, "Subject: s\r\n\r\nx\r\n")
	if err := os.Chown(filepath.Join(r.cfg.Spool.Maildrop, name), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	r.importMaildrop(context.Background())
	orig, _ := mdQueue(t, r)
	if len(orig) != 1 {
		t.Fatalf("%d messages queued", len(orig))
	}
	m := orig[0]
	if m.UID != 65534 || m.Submitter != "uid 65534 (nobody, maildrop)" {
		t.Errorf("UID %d, Submitter %q; want 65534 and nobody", m.UID, m.Submitter)
	}
	if body := mdBody(t, r, m.ID); !strings.Contains(body, "from userid 65534)") {
		t.Errorf("Received does not name uid 65534:\n%s", body)
	}
}

// TestMaildropFIFODoesNotBlock: a FIFO (or link, or folder) with a
// maildrop name is removed with a warning; neither the importer nor the
// daemon's shutdown waits on it.
func TestMaildropFIFODoesNotBlock(t *testing.T) {
	dir := t.TempDir()
	cfgPath, tcp := ioConfig(t, dir)
	md := filepath.Join(dir, "var", "maildrop")
	if err := maildrop.Setup(md); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(md, "0000000000000001-0123456789abcdef0123456789abcdef")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(md, "0000000000000002-0123456789abcdef0123456789abcdef")
	if err := os.Symlink("/etc/passwd", link); err != nil {
		t.Fatal(err)
	}
	ir := ioStart(t, dir, cfgPath, tcp)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, e1 := os.Lstat(fifo)
		_, e2 := os.Lstat(link)
		if os.IsNotExist(e1) && os.IsNotExist(e2) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the FIFO and the link are still in the maildrop")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	ir.cancel()
	select {
	case <-ir.done:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown hangs")
	}
}

// mdStore records what the inbound side enqueues.
type mdStore struct{ m *spool.Message }

func (s *mdStore) Enqueue(ctx context.Context, m *spool.Message, body io.Reader) error {
	s.m = m
	_, err := io.Copy(io.Discard, body)
	return err
}

// TestUnixSubmissionRecordsUID: mail over the unix socket carries the
// peer's uid from the kernel, for the reading rights on its content.
func TestUnixSubmissionRecordsUID(t *testing.T) {
	cfg := dlvConfig(t, t.TempDir(), mdHCL)
	store := &mdStore{}
	in := testInbound(cfg, store, dlvLogger(t), time.Now)
	from := "app@example.org"
	s := &session{in: in, l: newListener(nil, cfg.Listen[0], 10, cfg.Hostname), peer: peer{unix: true, uid: 65534, user: "nobody"},
		trusted: true, from: &from, rcpts: []spool.Recipient{{Address: "bob@example.com", Status: spool.Pending}}}
	s.Data(strings.NewReader("Subject: x\r\n\r\nhello\r\n"))
	if store.m == nil || store.m.UID != 65534 {
		t.Fatalf("stored %+v, want UID 65534", store.m)
	}
}

// TestMaildropOrdinaryUserEndToEnd: the built shim, run as nobody with
// umask 077 against the folder modes the package installs, queues mail
// with the daemon down and with it up; the daemon imports the first and
// records nobody as the submitter of both.
func TestMaildropOrdinaryUserEndToEnd(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run the shim as nobody")
		}
		t.Skip("needs root to run the shim as nobody")
	}
	if testing.Short() {
		t.Skip("builds the shim")
	}
	dir, err := os.MkdirTemp("", "mdu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	// The user must reach the shim, relay.hcl (0644, as installed) and
	// the folders on the way to the socket and the maildrop.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sendmail")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sendmail").CombinedOutput(); err != nil {
		t.Fatalf("building the shim: %v\n%s", err, out)
	}
	cfg, tcp := ioConfig(t, dir)
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	md := filepath.Join(dir, "var", "maildrop")
	if err := maildrop.Setup(md); err != nil {
		t.Fatal(err)
	}
	run := func(subject string) {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", `umask 077; exec "$0" "$@"`, bin, "-t", "-i")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		cmd.Env = []string{"OUTBOX_CONFIG=" + cfg, "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		cmd.Stdin = strings.NewReader("To: root\nSubject: " + subject + "\n\nbody\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("shim as nobody (%s): %v\n%s", subject, err, out)
		}
	}
	run("while down")
	ioStart(t, dir, cfg, tcp)
	msgs := ioWaitMaildir(t, dir, 1)
	for _, m := range msgs {
		if !strings.Contains(m, "Subject: while down") || !strings.Contains(m, "from userid 65534)") {
			t.Errorf("imported message:\n%s", m)
		}
	}
	run("while up")
	msgs = ioWaitMaildir(t, dir, 2)
	up := 0
	for _, m := range msgs {
		if strings.Contains(m, "Subject: while up") {
			up++
			if !strings.Contains(m, "from userid 65534 (nobody)") {
				t.Errorf("message over the socket:\n%s", m)
			}
		}
	}
	if up != 1 {
		t.Errorf("%d copies of the message sent with the daemon up, want 1", up)
	}
}

// mdShim builds the shim into a temporary folder.
func mdShim(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the shim")
	}
	bin := filepath.Join(t.TempDir(), "sendmail")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/sendmail").CombinedOutput(); err != nil {
		t.Fatalf("building the shim: %v\n%s", err, out)
	}
	return bin
}

const mdLimitsHCL = `
hostname = "relay.test"
listen { address = "unix:var/submit.sock" }
spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"
}
admin { socket = "var/admin.sock" }
limits {
  max_message_size = "%d"
  max_recipients   = 3
}
aliases {
  root = ["ops@example.com", "oncall@example.net"]
}
upstream "a" {
  host = "127.0.0.1"
  tls  = "none"
}
`

// TestShimLimitsMatchImport: exit 0 from the shim's maildrop path means
// the daemon's importer takes the message as it is, right up to the
// limits (the header section with the fields both add, the message size,
// the recipients once aliases are expanded); one byte or one recipient
// more and the shim refuses it at once instead of a later bounce.
func TestShimLimitsMatchImport(t *testing.T) {
	bin := mdShim(t)
	const maxSize = 2 << 20
	dir := t.TempDir()
	r := mdRelayIn(t, dir, fmt.Sprintf(mdLimitsHCL, maxSize))
	cfgPath := filepath.Join(dir, "relay.hcl")
	shim := func(in string, rcpts ...string) (int, string) {
		cmd := exec.Command(bin, append([]string{"-i"}, rcpts...)...)
		cmd.Env = []string{"OUTBOX_CONFIG=" + cfgPath, "LOGNAME=tester"}
		cmd.Stdin = strings.NewReader(in)
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	// A message the shim has nothing to add to: what it stores is what it
	// read, so its size is known here.
	// lines is a block of header fields near 1 MiB, in lines short enough
	// to be read as header fields; pad then grows the header byte by byte.
	lines := strings.Repeat("X-Fill: "+strings.Repeat("f", 989)+"\r\n", 1045)
	msg := func(pad, body int) string {
		fill := ""
		if pad >= 0 {
			fill = lines + "X-Pad: " + strings.Repeat("p", pad) + "\r\n"
		}
		return "Date: Sat, 01 Mar 2025 12:00:00 +0000\r\nMessage-ID: <m@example.org>\r\nFrom: app@example.org\r\nTo: root\r\n" +
			fill + "\r\n" + strings.Repeat("b", body)
	}
	reset := func(t *testing.T) {
		t.Helper()
		list, _ := r.spool.List()
		for _, m := range list {
			r.spool.Delete(m.ID)
		}
		names, _ := maildrop.List(r.cfg.Spool.Maildrop)
		for _, n := range names {
			os.Remove(filepath.Join(r.cfg.Spool.Maildrop, n))
		}
	}
	imported := func(t *testing.T) {
		t.Helper()
		r.importMaildrop(context.Background())
		orig, bounces := mdQueue(t, r)
		if len(orig) != 1 || len(bounces) != 0 || orig[0].Recipients[0].Status != spool.Pending {
			t.Fatalf("the importer did not take what the shim stored: %d queued, %d bounces", len(orig), len(bounces))
		}
		if err := r.spool.Delete(orig[0].ID); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("header", func(t *testing.T) {
		// The largest header the shim stores, found by bisection.
		reset(t)
		lo, hi := 0, 8000
		if code, out := shim(msg(hi, 1), "root"); code != 65 {
			t.Fatalf("the largest header tried is not refused: exit %d: %s", code, out)
		}
		for lo < hi {
			mid := (lo + hi + 1) / 2
			code, out := shim(msg(mid, 1), "root")
			switch code {
			case 0:
				lo = mid
				reset(t)
			case 65:
				hi = mid - 1
			default:
				t.Fatalf("exit %d: %s", code, out)
			}
		}
		if code, out := shim(msg(lo, 1), "root"); code != 0 {
			t.Fatalf("exit %d: %s", code, out)
		}
		imported(t)
		// One byte more: the daemon would refuse it (written here
		// without the shim), so the shim must.
		if code, _ := shim(msg(lo+1, 1), "root"); code != 65 {
			t.Errorf("one byte over: exit %d, want 65", code)
		}
		// What the shim would have stored: it adds nothing to msg.
		if _, err := maildrop.Write(r.cfg.Spool.Maildrop, &maildrop.Envelope{From: "tester@relay.test", Recipients: []string{"root@relay.test"}, UID: os.Getuid()},
			strings.NewReader(msg(lo+1, 1))); err != nil {
			t.Fatal(err)
		}
		r.importMaildrop(context.Background())
		orig, bounces := mdQueue(t, r)
		if len(orig) != 0 || len(bounces) != 1 {
			t.Errorf("one byte over, written directly: %d queued, %d bounces; want the importer to refuse it", len(orig), len(bounces))
		}
		for _, m := range bounces {
			r.spool.Delete(m.ID)
		}
	})

	t.Run("size", func(t *testing.T) {
		reset(t)
		head := len(msg(-1, 0))
		if code, out := shim(msg(-1, maxSize-head), "root"); code != 0 {
			t.Fatalf("exactly max_message_size: exit %d: %s", code, out)
		}
		imported(t)
		if code, _ := shim(msg(-1, maxSize-head+1), "root"); code != 69 {
			t.Errorf("one byte over max_message_size: exit %d, want 69", code)
		}
	})

	t.Run("recipients", func(t *testing.T) {
		reset(t)
		if code, out := shim(msg(-1, 1), "root", "a@example.com"); code != 0 {
			t.Fatalf("3 recipients once expanded: exit %d: %s", code, out)
		}
		imported(t)
		if code, _ := shim(msg(-1, 1), "root", "a@example.com", "b@example.com"); code != 69 {
			t.Errorf("4 recipients once expanded: exit %d, want 69", code)
		}
	})
	if names, _ := maildrop.List(r.cfg.Spool.Maildrop); len(names) != 0 {
		t.Errorf("refused calls left %v in the maildrop", names)
	}
}

// A recipient refused on import gets the delivery line an operator greps
// for (status=bounced), as a 5yz at delivery does.
func TestMaildropRefusalLogged(t *testing.T) {
	r := mdRelay(t)
	var logs lockedBuf
	r.sched.log = slog.New(slog.NewTextHandler(&logs, nil))
	mdWrite(t, r, &maildrop.Envelope{From: "app@example.org", Recipients: []string{"gone@relay.test", "root@relay.test"}},
		"Subject: x\r\n\r\nx\r\n")
	if n := r.importMaildrop(context.Background()); n != 1 {
		t.Fatalf("imported %d, want 1", n)
	}
	l := logs.String()
	if !strings.Contains(l, "msg=bounced") || !strings.Contains(l, "to=gone@relay.test") || !strings.Contains(l, "dsn=5.1.1") || !strings.Contains(l, "status=bounced") {
		t.Errorf("no delivery line for the refused recipient:\n%s", l)
	}
}
