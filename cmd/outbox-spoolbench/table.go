package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/outbox-mta/outbox/internal/benchsink"
	"github.com/outbox-mta/outbox/spool"
)

// tableOpts are the settings of the table subcommand.
type tableOpts struct {
	n         int
	size      int
	dir       string
	spoolPath string
	outbox    string
	sendmail  string
	cold      bool
	keep      bool
	phaseTime time.Duration
	drainTime time.Duration
	conns     int
	settle    time.Duration
	sample    time.Duration
}

// row is one line of the table. Memory figures are kB; -1 means "not
// measured" (an in-process phase has no daemon, a daemon phase without a
// command has no client).
type row struct {
	phase    string
	took     string
	result   string
	peakAnon int64 // daemon's highest RssAnon seen while the phase ran
	anon     int64 // daemon's RssAnon when the phase had ended and settled
	peakRSS  int64 // daemon's VmHWM over the phase (reset before it where the kernel allows)
	rss      int64 // daemon's VmRSS after the phase
	file     int64 // the file-backed part of rss (RssFile + RssShmem)
	client   int64 // the command's peak RSS
}

// newRow is a row with no memory figures yet.
func newRow(phase string) row {
	return row{phase: phase, peakAnon: -1, anon: -1, peakRSS: -1, rss: -1, file: -1, client: -1}
}

// tablePhases names every row the table prints, in order; the test checks
// that a run prints each of them.
var tablePhases = []string{
	"fill",
	"spool open, cold cache",
	"spool open, warm cache",
	"daemon start to first 220, cold cache",
	"daemon start to first 220, warm cache",
	"daemon at rest",
	"queue stats",
	"queue ls",
	"queue ls --json",
	"mailq",
	"queue flush",
	"drain to the sink",
	"daemon at rest after the drain",
}

func table(args []string, out io.Writer) error {
	o := &tableOpts{}
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 100000, "messages to fill the spool with")
	fs.IntVar(&o.size, "size", 1024, "body size in bytes")
	fs.StringVar(&o.dir, "dir", "", "folder for the spool, the daemon's configuration and sockets and the binaries; afterwards, unless -keep, what the run put there is removed (default: a new folder under /var/tmp, removed whole)")
	fs.StringVar(&o.spoolPath, "spool", "", "measure this existing spool instead of filling one (it is used, flushed and drained in place)")
	fs.StringVar(&o.outbox, "outbox", "", "outbox binary (default: built from this module into the scratch folder)")
	fs.StringVar(&o.sendmail, "sendmail", "", "sendmail binary, run as mailq (default: built like -outbox)")
	fs.BoolVar(&o.cold, "cold", true, "measure cold opens: drop the page cache first (root only; otherwise those rows say skipped)")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch folder and the spool")
	fs.DurationVar(&o.phaseTime, "phase-time", 10*time.Minute, "bound on the fill and on each start, listing and flush")
	fs.DurationVar(&o.drainTime, "drain-time", 10*time.Minute, "bound on the drain; what is left stays queued")
	fs.IntVar(&o.conns, "conns", 8, "the sink upstream's max_connections")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "idle time before each at-rest reading")
	fs.DurationVar(&o.sample, "sample", 20*time.Millisecond, "how often the daemon's memory is read during a phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("table: unexpected argument %q", fs.Arg(0))
	}
	if o.n < 1 && o.spoolPath == "" {
		return errors.New("table: -n must be at least 1")
	}
	rows, err := runTable(o, os.Stderr)
	printTable(out, o, rows)
	return err
}

// runTable runs every phase and returns the rows measured so far, with the
// first error that stopped the run.
func runTable(o *tableOpts, progress io.Writer) (rows []row, err error) {
	say := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	var built []string // files this run made in a folder the user named
	dir := o.dir
	if dir == "" {
		// The admin socket's path must fit in 108 bytes: a short folder.
		d, err := os.MkdirTemp("/var/tmp", "spoolbench-")
		if err != nil {
			return nil, err
		}
		dir = d
		if !o.keep {
			defer os.RemoveAll(dir)
		}
	} else {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		if !o.keep {
			// A folder the user named may hold other things: remove only
			// what this run puts there.
			defer func() {
				for _, name := range []string{"relay.hcl", "daemon.log", "maildrop", "maildrop-rejected", "admin.sock"} {
					os.RemoveAll(filepath.Join(dir, name))
				}
				for _, f := range built {
					os.Remove(f)
				}
			}()
		}
	}
	if o.outbox == "" || o.sendmail == "" {
		say("building outbox and sendmail into %s ...", dir)
		if o.outbox == "" {
			o.outbox = filepath.Join(dir, "outbox")
			built = append(built, o.outbox)
			if err := build(o.outbox, "github.com/outbox-mta/outbox/cmd/outbox"); err != nil {
				return nil, err
			}
		}
		if o.sendmail == "" {
			o.sendmail = filepath.Join(dir, "sendmail")
			built = append(built, o.sendmail)
			if err := build(o.sendmail, "github.com/outbox-mta/outbox/cmd/sendmail"); err != nil {
				return nil, err
			}
		}
	}
	path := o.spoolPath
	r := newRow("fill")
	if path == "" {
		path = filepath.Join(dir, "spool.db")
		if _, err := os.Stat(path); err == nil {
			return nil, fmt.Errorf("%s exists: measure it with -spool, or remove it", path)
		}
		built = append(built, path)
		say("fill: %d messages of %d bytes into %s ...", o.n, o.size, path)
		filled, st, el, err := fillSpool(path, o.n, o.size, 256, time.Now().Add(o.phaseTime))
		if err != nil {
			return rows, fmt.Errorf("fill: %w", err)
		}
		r.took = secs(el)
		r.result = fmt.Sprintf("%d msgs, %.0f msgs/s, %.1f per commit", filled, float64(filled)/el.Seconds(), float64(st.Writes)/float64(max(st.Commits, 1)))
		if filled < o.n {
			r.result += fmt.Sprintf(" (stopped at -phase-time %v)", o.phaseTime)
		}
	} else {
		r.took, r.result = "—", "existing spool "+path
	}
	rows = append(rows, r)
	if fi, err := os.Stat(path); err == nil {
		rows[len(rows)-1].result += fmt.Sprintf(", file %.0f MiB", float64(fi.Size())/(1<<20))
	}

	queued := 0
	for _, cold := range []bool{true, false} {
		r := newRow(tablePhases[1])
		if !cold {
			r.phase = tablePhases[2]
		}
		if cold && (!o.cold || os.Geteuid() != 0) {
			r.took, r.result = "skipped", coldSkip(o)
			rows = append(rows, r)
			continue
		}
		if cold {
			if err := dropCaches(); err != nil {
				return rows, err
			}
		}
		start := time.Now()
		s, err := spool.Open(path, spool.Options{Timeout: 5 * time.Second})
		if err != nil {
			return rows, fmt.Errorf("open: %w", err)
		}
		opened := time.Since(start)
		c, err := s.Counts()
		s.Close()
		if err != nil {
			return rows, err
		}
		queued = c.Total
		r.took, r.result = secs(opened), fmt.Sprintf("%d queued", queued)
		rows = append(rows, r)
	}
	if queued == 0 {
		return rows, errors.New("the spool is empty")
	}
	if o.spoolPath != "" {
		o.n = queued // for the table's heading
	}

	sk, err := benchsink.Start()
	if err != nil {
		return rows, err
	}
	defer sk.Close()
	conf, addr, err := writeConfig(dir, path, sk.Port, o.conns)
	if err != nil {
		return rows, err
	}
	var d *daemon
	defer func() {
		if d != nil {
			d.stop()
		}
	}()
	for _, cold := range []bool{true, false} {
		r := newRow(tablePhases[3])
		if !cold {
			r.phase = tablePhases[4]
		}
		if cold && (!o.cold || os.Geteuid() != 0) {
			r.took, r.result = "skipped", coldSkip(o)
			rows = append(rows, r)
			continue
		}
		if d != nil {
			if err := d.stop(); err != nil {
				return rows, err
			}
			d = nil
		}
		if cold {
			if err := dropCaches(); err != nil {
				return rows, err
			}
		}
		say("start: daemon on %s (cold=%v) ...", addr, cold)
		var took time.Duration
		d, took, err = startDaemon(o.outbox, conf, dir, addr, o.phaseTime)
		if err != nil {
			return rows, err
		}
		r.took, r.result = secs(took), "220 on "+addr
		d.read(&r, true)
		rows = append(rows, r)
	}

	time.Sleep(o.settle) // at rest: nothing due, no client
	r = newRow("daemon at rest")
	r.took = "—"
	d.read(&r, false)
	r.peakAnon = r.anon
	rows = append(rows, r)

	commands := []struct {
		phase string
		bin   string
		args  []string
		check func(out *tail) (string, error)
	}{
		{"queue stats", o.outbox, []string{"queue", "stats", "--config", conf}, func(t *tail) (string, error) {
			return strings.Join(strings.Fields(t.first), " "), nil
		}},
		{"queue ls", o.outbox, []string{"queue", "ls", "--config", conf}, func(t *tail) (string, error) {
			return fmt.Sprintf("%d lines, %.1f MiB", t.lines, float64(t.bytes)/(1<<20)), nil
		}},
		{"queue ls --json", o.outbox, []string{"queue", "ls", "--json", "--config", conf}, func(t *tail) (string, error) {
			if !bytes.HasSuffix(bytes.TrimSpace(t.last), []byte("]")) {
				return "", fmt.Errorf("the JSON array does not end: %q", t.last)
			}
			return fmt.Sprintf("%.1f MiB", float64(t.bytes)/(1<<20)), nil
		}},
		{"mailq", o.sendmail, []string{"-bp", "-C", conf}, func(t *tail) (string, error) {
			m := regexp.MustCompile(`in (\d+) Requests?\.`).FindSubmatch(t.last)
			if m == nil {
				return "", fmt.Errorf("no footer: %q", t.last)
			}
			return fmt.Sprintf("%s messages, %.1f MiB", m[1], float64(t.bytes)/(1<<20)), nil
		}},
	}
	for _, c := range commands {
		say("%s ...", c.phase)
		r := newRow(c.phase)
		var t *tail
		var cerr error
		d.phase(&r, o, func() error {
			t, r.client, cerr = runClient(c.bin, c.args, o.phaseTime, &r.took)
			return cerr
		})
		if cerr == nil {
			r.result, cerr = c.check(t)
		}
		if cerr != nil {
			return append(rows, r), fmt.Errorf("%s: %w", c.phase, cerr)
		}
		rows = append(rows, r)
	}

	// Flush makes every message due; the drain runs from the same moment
	// and is measured at the sink.
	say("flush and drain (at most %v) ...", o.drainTime)
	flushStart := time.Now()
	r = newRow("queue flush")
	var flushErr error
	d.phase(&r, o, func() error {
		_, r.client, flushErr = runClient(o.outbox, []string{"queue", "flush", "--config", conf}, o.phaseTime, &r.took)
		r.result = fmt.Sprintf("%d delivered meanwhile", sk.Received.Load())
		return flushErr
	})
	if flushErr != nil {
		return append(rows, r), fmt.Errorf("flush: %w", flushErr)
	}
	rows = append(rows, r)
	r = newRow("drain to the sink")
	var delivered int64
	var drained time.Duration
	d.phase(&r, o, func() error {
		deadline := flushStart.Add(o.drainTime)
		for sk.Received.Load() < int64(queued) && time.Now().Before(deadline) && d.alive() {
			time.Sleep(50 * time.Millisecond) // poll interval
		}
		delivered, drained = sk.Received.Load(), time.Since(flushStart)
		return nil
	})
	r.took = secs(drained)
	r.result = fmt.Sprintf("%d of %d delivered, %.0f msgs/s", delivered, queued, float64(delivered)/drained.Seconds())
	if delivered < int64(queued) {
		r.result += fmt.Sprintf(" (stopped at -drain-time %v)", o.drainTime)
	}
	rows = append(rows, r)

	time.Sleep(o.settle)
	r = newRow("daemon at rest after the drain")
	r.took = "—"
	d.read(&r, false)
	r.peakAnon = r.anon
	rows = append(rows, r)
	err = d.stop()
	d = nil
	return rows, err
}

func coldSkip(o *tableOpts) string {
	if !o.cold {
		return "skipped (-cold=false)"
	}
	return "skipped (not root: cannot drop the page cache)"
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// build compiles one of this module's commands.
func build(out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s (or pass -outbox and -sendmail): %w", pkg, err)
	}
	return nil
}

// fillSpool stores n deferred messages of size bytes (one recipient each,
// due in a day) through the spool's own Enqueue, from many goroutines so
// that group commit batches them. It stops early at deadline, unless
// that is zero, and returns how many it stored.
func fillSpool(path string, n, size, writers int, deadline time.Time) (int, spool.Stats, time.Duration, error) {
	s, err := spool.Open(path, spool.Options{MaxBatch: 4096, Timeout: 5 * time.Second})
	if err != nil {
		return 0, spool.Stats{}, 0, err
	}
	defer s.Close()
	line := strings.Repeat("x", 76) + "\r\n"
	body := []byte("Subject: bench\r\n\r\n" + strings.Repeat(line, size/len(line)+1))[:size]
	next := time.Now().Add(24 * time.Hour)
	var left, stored atomic.Int64
	left.Store(int64(n))
	start := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 && (deadline.IsZero() || time.Now().Before(deadline)) {
				m := &spool.Message{
					From:        "bench@example.org",
					Recipients:  []spool.Recipient{{Address: "sink@example.net", Status: spool.Pending, Attempts: 1, LastError: "451 4.3.0 try later"}},
					Submitter:   "127.0.0.1",
					Attempts:    1,
					NextAttempt: next,
				}
				if err := s.Enqueue(context.Background(), m, bytes.NewReader(body)); err != nil {
					errc <- err
					return
				}
				stored.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return int(stored.Load()), spool.Stats{}, 0, err
	}
	return int(stored.Load()), s.Stats(), time.Since(start), nil
}

// writeConfig writes the daemon's relay.hcl into dir: a loopback listener,
// the spool at path, and the sink as the only upstream.
func writeConfig(dir, path string, sinkPort, conns int) (conf, addr string, err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	addr = l.Addr().String()
	l.Close()
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", "", err
	}
	src := fmt.Sprintf(`hostname = "bench.localhost"
listen {
  address = %q
}
spool {
  path     = %q
  maildrop = "maildrop"
}
admin {
  socket = "admin.sock"
}
queue {
  retry_initial = "1h"
  retry_max     = "1h"
}
upstream "sink" {
  type            = "smtp"
  host            = "127.0.0.1"
  port            = %d
  tls             = "none"
  max_connections = %d
}
`, addr, abs, sinkPort, conns)
	conf = filepath.Join(dir, "relay.hcl")
	return conf, addr, os.WriteFile(conf, []byte(src), 0o600)
}

// daemon is one running `outbox serve`.
type daemon struct {
	cmd  *exec.Cmd
	pid  int
	log  string
	done chan struct{}
	err  error
}

// startDaemon runs outbox serve and returns once its SMTP listener has
// answered 220, with the time that took from the exec.
func startDaemon(bin, conf, dir, addr string, bound time.Duration) (*daemon, time.Duration, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, 0, err
	}
	d := &daemon{log: logf.Name(), done: make(chan struct{})}
	d.cmd = exec.Command(bin, "serve", "--config", conf)
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, 0, err
	}
	logf.Close()
	d.pid = d.cmd.Process.Pid
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	deadline := start.Add(bound)
	for {
		if greeted(addr) {
			return d, time.Since(start), nil
		}
		if !d.alive() {
			return nil, 0, fmt.Errorf("the daemon exited (%v) before its 220; see %s", d.err, d.log)
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, 0, fmt.Errorf("no 220 within %v; see %s", bound, d.log)
		}
		time.Sleep(2 * time.Millisecond) // poll interval
	}
}

// greeted reports whether an SMTP server at addr answers with a 220.
func greeted(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220") {
		return false
	}
	c.Write([]byte("QUIT\r\n"))
	return true
}

func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits a minute for a clean exit.
func (d *daemon) stop() error {
	if !d.alive() {
		return nil
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		if d.err != nil {
			return fmt.Errorf("the daemon stopped with %v; see %s", d.err, d.log)
		}
		return nil
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("the daemon did not stop within a minute of SIGTERM; see %s", d.log)
	}
}

// read fills r's after-the-phase figures from /proc/PID/status; with
// peak, also VmHWM.
func (d *daemon) read(r *row, peak bool) {
	st := procStatus(d.pid)
	r.anon, r.rss = st["RssAnon"], st["VmRSS"]
	r.file = st["RssFile"] + st["RssShmem"]
	if peak {
		r.peakRSS = st["VmHWM"]
	}
}

// phase runs fn while sampling the daemon's anonymous memory, then reads
// its figures once the daemon has had o.settle to come to rest. The
// kernel's peak RSS (VmHWM) is reset first (clear_refs 5), so that it
// is this phase's peak.
func (d *daemon) phase(r *row, o *tableOpts, fn func() error) {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", d.pid), []byte("5\n"), 0)
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(o.sample)
		defer t.Stop()
		for {
			if a := procStatus(d.pid)["RssAnon"]; a > peak.Load() {
				peak.Store(a)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	fn()
	close(stop)
	<-sampled
	r.peakAnon = peak.Load()
	r.peakRSS = procStatus(d.pid)["VmHWM"]
	time.Sleep(o.settle)
	d.read(r, false)
}

// procStatus reads the kB figures of /proc/PID/status.
func procStatus(pid int) map[string]int64 {
	out := map[string]int64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// tail counts a command's output and keeps its first line and last bytes.
type tail struct {
	bytes, lines int64
	first        string
	last         []byte
	err          error
}

func (t *tail) Write(p []byte) (int, error) {
	if t.bytes == 0 {
		if i := bytes.IndexByte(p, '\n'); i >= 0 {
			t.first = string(p[:i])
		} else {
			t.first = string(p)
		}
	}
	t.bytes += int64(len(p))
	t.lines += int64(bytes.Count(p, []byte("\n")))
	t.last = append(t.last, p...)
	if len(t.last) > 512 {
		t.last = append(t.last[:0], t.last[len(t.last)-512:]...)
	}
	return len(p), nil
}

// runClient runs one admin command with a time bound and returns its
// output's summary and its peak RSS (kB).
func runClient(bin string, args []string, bound time.Duration, took *string) (*tail, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	t := &tail{}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = t, &stderr
	start := time.Now()
	if t.err = cmd.Start(); t.err != nil {
		return t, -1, t.err
	}
	// The peak is read from the running command's VmHWM, not from
	// wait4's rusage: that counts the memory of the process that forked
	// it (this one, with its spool mapped) as the child's.
	var peak atomic.Int64
	peak.Store(-1)
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if h, ok := procStatus(cmd.Process.Pid)["VmHWM"]; ok && h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond): // sampling period
			}
		}
	}()
	t.err = cmd.Wait()
	*took = secs(time.Since(start))
	close(done)
	<-sampled
	if t.err != nil {
		t.err = fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args[:min(len(args), 3)], " "), t.err, strings.TrimSpace(stderr.String()))
	}
	return t, peak.Load(), t.err
}

// sink is a go-smtp server on loopback that takes and counts every
// message: the fastest upstream the daemon can have.
// printTable writes the rows, MiB for memory, "—" where a figure does
// not apply.
func printTable(w io.Writer, o *tableOpts, rows []row) {
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(w, "spool table: %d messages of %d bytes; load average at the end %s (other work on the machine skews these figures)\n", o.n, o.size, load)
	fmt.Fprintln(w, "memory in MiB: the daemon's RssAnon peak and after the phase, VmHWM over the phase, VmRSS after it (file-backed part), the client command's peak RSS")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "phase\ttime\tresult\tanon peak\tanon after\tVmHWM\tVmRSS (file)\tclient peak\t")
	mib := func(kb int64) string {
		if kb < 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f", float64(kb)/1024)
	}
	for _, r := range rows {
		rss := "—"
		if r.rss >= 0 {
			rss = fmt.Sprintf("%s (%s)", mib(r.rss), mib(r.file))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.phase, r.took, r.result, mib(r.peakAnon), mib(r.anon), mib(r.peakRSS), rss, mib(r.client))
	}
	tw.Flush()
}
