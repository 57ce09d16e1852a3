// Command outbox-bench measures the Outbox relay on this machine: the
// disk's raw fsync rate, how many messages per second the SMTP listener
// accepts (durably spooled) at several session counts together with the
// group-commit batching factor, how many messages per second it relays end
// to end to a local SMTP sink, and the delay from acceptance to delivery
// on an idle relay.
//
// The relay runs in this process, in a scratch folder on the same disk as
// the working directory (see -dir), so the fsync figures are the real
// disk's. Everything talks over loopback.
//
//	go run ./cmd/outbox-bench [-json] [-accept-time 5s] [-relay-messages 3000] ...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/sys/unix"

	"github.com/outbox-mta/outbox/config"
	"github.com/outbox-mta/outbox/internal/benchsink"
	"github.com/outbox-mta/outbox/relay"
	"github.com/outbox-mta/outbox/upstream"
)

// opts are the command-line settings.
type opts struct {
	dir            string
	jsonOut        bool
	size           int
	fsyncTime      time.Duration
	acceptLevels   []int
	acceptTime     time.Duration
	acceptMax      int
	relayConns     []int
	relaySessions  int
	relayMessages  int
	latencySamples int
	cpuProfile     string
	verbose        bool
}

// Report is the -json output.
type Report struct {
	Dir          string         `json:"dir"`
	LoadAvg      string         `json:"loadavg,omitempty"` // /proc/loadavg at the end: other work skews the figures
	GOMAXPROCS   int            `json:"gomaxprocs"`
	MessageBytes int            `json:"message_bytes"`
	FsyncPerSec  float64        `json:"fsync_per_sec"`
	Accept       []AcceptResult `json:"accept"`
	Relay        []RelayResult  `json:"relay"`
	Latency      *LatencyResult `json:"latency,omitempty"`
}

// AcceptResult is one accept run: sessions sending as fast as they can to
// a relay whose upstream holds everything.
type AcceptResult struct {
	Sessions         int     `json:"sessions"`
	Messages         int     `json:"messages"`
	Seconds          float64 `json:"seconds"`
	PerSec           float64 `json:"msgs_per_sec"`
	Commits          uint64  `json:"commits"`
	Writes           uint64  `json:"writes"`
	WritesPerCommit  float64 `json:"writes_per_commit"`
	CommitsPerSecond float64 `json:"commits_per_sec"`
	Errors           int     `json:"errors"`
}

// RelayResult is one end-to-end run to the sink.
type RelayResult struct {
	MaxConnections int     `json:"max_connections"`
	Sessions       int     `json:"sessions"`
	Messages       int     `json:"messages"`
	Seconds        float64 `json:"seconds"`
	DeliveredPerS  float64 `json:"delivered_per_sec"`
	AcceptedPerS   float64 `json:"accepted_per_sec"`
	Errors         int     `json:"errors"`
}

// LatencyResult is acceptance → delivery on an idle relay.
type LatencyResult struct {
	Samples  int     `json:"samples"`
	MedianMs float64 `json:"median_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "sendmail" {
		if err := sendmailBench(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "outbox-bench sendmail:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "outbox-bench:", err)
		os.Exit(64)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "outbox-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*opts, error) {
	o := &opts{}
	fs := flag.NewFlagSet("outbox-bench", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "scratch folder on the disk to measure (default: a temporary folder under the current one, removed afterwards)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the results as JSON")
	fs.IntVar(&o.size, "size", 4096, "message size in bytes")
	fs.DurationVar(&o.fsyncTime, "fsync-time", 2*time.Second, "how long to measure the raw fsync rate")
	levels := fs.String("sessions", "1,10,50", "concurrent SMTP sessions for the accept runs")
	fs.DurationVar(&o.acceptTime, "accept-time", 5*time.Second, "duration of each accept run")
	fs.IntVar(&o.acceptMax, "accept-max", 200000, "cap on messages per accept run")
	conns := fs.String("relay-conns", "2,4,8", "upstream max_connections for the end-to-end runs")
	fs.IntVar(&o.relaySessions, "relay-sessions", 10, "injecting sessions for the end-to-end runs")
	fs.IntVar(&o.relayMessages, "relay-messages", 4000, "messages per end-to-end run")
	fs.IntVar(&o.latencySamples, "latency-samples", 200, "one-at-a-time messages for the idle latency (0 skips it)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (relay, clients and sink) to this file")
	fs.BoolVar(&o.verbose, "v", false, "log the relay's warnings and errors to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.acceptLevels, err = intList(*levels); err != nil {
		return nil, fmt.Errorf("-sessions: %w", err)
	}
	if o.relayConns, err = intList(*conns); err != nil {
		return nil, fmt.Errorf("-relay-conns: %w", err)
	}
	if o.size < 512 {
		return nil, errors.New("-size must be at least 512")
	}
	return o, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(o *opts) error {
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp(".", "outbox-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep := &Report{Dir: abs, GOMAXPROCS: runtime.GOMAXPROCS(0), MessageBytes: o.size}
	progress := func(format string, args ...any) {
		if !o.jsonOut {
			fmt.Fprintf(os.Stderr, format+"\n", args...)
		}
	}
	b := &bench{o: o, dir: abs, body: message(o.size)}

	progress("measuring fsync rate in %s ...", abs)
	if rep.FsyncPerSec, err = fsyncRate(abs, o.fsyncTime); err != nil {
		return fmt.Errorf("fsync rate: %w", err)
	}
	for _, n := range o.acceptLevels {
		progress("accept: %d sessions for %v ...", n, o.acceptTime)
		r, err := b.accept(n)
		if err != nil {
			return fmt.Errorf("accept with %d sessions: %w", n, err)
		}
		rep.Accept = append(rep.Accept, *r)
	}
	for _, c := range o.relayConns {
		progress("relay: %d messages, max_connections = %d ...", o.relayMessages, c)
		r, err := b.relay(c)
		if err != nil {
			return fmt.Errorf("relay with max_connections %d: %w", c, err)
		}
		rep.Relay = append(rep.Relay, *r)
	}
	if o.latencySamples > 0 {
		progress("latency: %d messages one at a time ...", o.latencySamples)
		if rep.Latency, err = b.latency(o.latencySamples); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(la)); len(f) >= 3 {
			rep.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(os.Stdout, rep)
	return nil
}

func printReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "Outbox benchmark: %d-byte messages, GOMAXPROCS %d, folder %s\n\n", r.MessageBytes, r.GOMAXPROCS, r.Dir)
	if r.LoadAvg != "" {
		fmt.Fprintf(w, "load average at the end: %s (anything else running skews these figures)\n", r.LoadAvg)
	}
	fmt.Fprintf(w, "disk: %.0f fsyncs/s (4 KiB write + fdatasync, one writer)\n\n", r.FsyncPerSec)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "accept (SMTP → spool commit → 250; upstream holds all mail)")
	fmt.Fprintln(tw, "sessions\tmessages\tseconds\tmsgs/s\tcommits/s\twrites/commit\terrors\t")
	for _, a := range r.Accept {
		fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.0f\t%.0f\t%.2f\t%d\t\n", a.Sessions, a.Messages, a.Seconds, a.PerSec, a.CommitsPerSecond, a.WritesPerCommit, a.Errors)
	}
	tw.Flush()
	if len(r.Relay) > 0 {
		fmt.Fprintln(w, "\nrelay end to end (accept → upstream 250, local sink on loopback)")
		fmt.Fprintln(tw, "max_connections\tsessions\tmessages\tseconds\tdelivered/s\taccepted/s\terrors\t")
		for _, x := range r.Relay {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%.2f\t%.0f\t%.0f\t%d\t\n", x.MaxConnections, x.Sessions, x.Messages, x.Seconds, x.DeliveredPerS, x.AcceptedPerS, x.Errors)
		}
		tw.Flush()
	}
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "\nidle relay, acceptance (250) → delivered at the sink, %d samples: median %.2f ms, p99 %.2f ms, max %.2f ms\n", l.Samples, l.MedianMs, l.P99Ms, l.MaxMs)
	}
}

// fsyncRate overwrites one 4 KiB block of a file and fdatasyncs it in a
// loop for d, in dir, and returns the syncs per second.
func fsyncRate(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	block := make([]byte, 4096)
	if _, err := f.WriteAt(block, 0); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	fd := int(f.Fd())
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		block[0] = byte(n)
		if _, err := f.WriteAt(block, 0); err != nil {
			return 0, err
		}
		if err := unix.Fdatasync(fd); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// message builds a message of exactly size bytes with a complete header
// (so the relay adds nothing but its Received: line).
func message(size int) []byte {
	hdr := "From: Bench <bench@example.com>\r\n" +
		"To: <sink@example.net>\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <bench@bench.example.com>\r\n" +
		"Subject: outbox-bench\r\n\r\n"
	var b strings.Builder
	b.WriteString(hdr)
	line := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz", 2)[:70] + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	for b.Len() < size-2 {
		b.WriteByte('x')
	}
	b.WriteString("\r\n")
	return []byte(b.String()[:size])
}

type bench struct {
	o    *opts
	dir  string
	body []byte
	seq  atomic.Int64
}

// instance is one in-process relay with its own spool.
type instance struct {
	r      *relay.Relay
	addr   string
	cancel context.CancelFunc
	done   chan error
}

// start configures and starts a relay in a fresh subfolder. upstream is
// the HCL of its upstream block; targets, if set, replaces the upstreams.
func (b *bench) start(name, upstreamHCL string, targets map[string]upstream.Target) (*instance, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("%s-%d", name, b.seq.Add(1)))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	src := fmt.Sprintf(`hostname = "bench.localhost"
listen {
  address = %q
}
spool {
  path     = "spool.db"
  maildrop = "maildrop"
}
admin {
  socket = "admin.sock"
}
queue {
  retry_initial = "1h"
  retry_max     = "1h"
}
limits {
  max_connections = 200
}
%s
`, addr, upstreamHCL)
	path := filepath.Join(dir, "relay.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		return nil, err
	}
	cfg, err := config.Parse(path, []byte(src))
	if err != nil {
		return nil, err
	}
	var h slog.Handler = slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})
	if b.o.verbose {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
	}
	ready := make(chan struct{})
	r, err := relay.New(cfg, slog.New(h), relay.Options{Targets: targets, Ready: func() { close(ready) }})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{r: r, addr: addr, cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- r.Run(ctx) }()
	select {
	case <-ready:
	case err := <-in.done:
		cancel()
		return nil, fmt.Errorf("relay stopped at start-up: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		return nil, errors.New("relay not ready after 10s")
	}
	return in, nil
}

func (in *instance) stop() error {
	in.cancel()
	select {
	case err := <-in.done:
		return err
	case <-time.After(time.Minute):
		return errors.New("relay did not stop within a minute")
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// holdTarget is an upstream that delivers nothing while a run measures
// acceptance: each Deliver waits until released, then defers.
type holdTarget struct{ release chan struct{} }

func (h *holdTarget) Name() string { return "hold" }
func (h *holdTarget) Close() error { return nil }
func (h *holdTarget) Deliver(ctx context.Context, env *upstream.Envelope) upstream.Outcome {
	select {
	case <-h.release:
	case <-ctx.Done():
	}
	out := upstream.Outcome{Remote: "hold"}
	for range env.Recipients {
		out.Results = append(out.Results, upstream.Result{Class: upstream.Deferred, Message: "held by outbox-bench"})
	}
	return out
}

const holdHCL = `upstream "hold" {
  type = "maildir"
  path = "maildir"
}`

// accept measures acceptance with n sessions.
func (b *bench) accept(n int) (*AcceptResult, error) {
	hold := &holdTarget{release: make(chan struct{})}
	in, err := b.start("accept", holdHCL, map[string]upstream.Target{"hold": hold})
	if err != nil {
		return nil, err
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(hold.release)
		}
	}
	defer release()
	// Connect every session first, so the run measures mail, not dialing.
	clients := make([]*smtp.Client, n)
	for i := range clients {
		if clients[i], err = dial(in.addr); err != nil {
			release()
			in.stop()
			return nil, err
		}
	}
	before := in.r.Spool().Stats()
	var sent, failed atomic.Int64
	deadline := time.Now().Add(b.o.acceptTime)
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for time.Now().Before(deadline) && sent.Load() < int64(b.o.acceptMax) {
				if err := sendOne(c, b.body); err != nil {
					failed.Add(1)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	after := in.r.Spool().Stats()
	// Let the held deliveries end (deferred) so the relay stops at once.
	release()
	if err := in.stop(); err != nil {
		return nil, err
	}
	res := &AcceptResult{
		Sessions: n, Messages: int(sent.Load()), Seconds: elapsed, Errors: int(failed.Load()),
		Commits: after.Commits - before.Commits, Writes: after.Writes - before.Writes,
	}
	res.PerSec = float64(res.Messages) / elapsed
	res.CommitsPerSecond = float64(res.Commits) / elapsed
	if res.Commits > 0 {
		res.WritesPerCommit = float64(res.Writes) / float64(res.Commits)
	}
	return res, nil
}

func dial(addr string) (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClient(conn)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Hello("bench.localhost"); err != nil {
		c.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

func sendOne(c *smtp.Client, body []byte) error {
	if err := c.Mail("bench@example.com", nil); err != nil {
		return err
	}
	if err := c.Rcpt("sink@example.net", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// sink is the upstream of the end-to-end runs: a go-smtp server on
// loopback that counts what it receives and reports each arrival.
func sinkHCL(port, conns int) string {
	return fmt.Sprintf(`upstream "sink" {
  type            = "smtp"
  host            = "127.0.0.1"
  port            = %d
  tls             = "none"
  max_connections = %d
}`, port, conns)
}

// relay injects relayMessages with relaySessions sessions into a relay
// whose upstream is the sink, and measures until the sink has them all.
func (b *bench) relay(conns int) (*RelayResult, error) {
	sk, err := benchsink.Start()
	if err != nil {
		return nil, err
	}
	defer sk.Close()
	in, err := b.start("relay", sinkHCL(sk.Port, conns), nil)
	if err != nil {
		return nil, err
	}
	defer in.stop()
	total := b.o.relayMessages
	sessions := b.o.relaySessions
	clients := make([]*smtp.Client, sessions)
	for i := range clients {
		if clients[i], err = dial(in.addr); err != nil {
			return nil, err
		}
	}
	var next, failed atomic.Int64
	var acceptedAt atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			for next.Add(1) <= int64(total) {
				if err := sendOne(c, b.body); err != nil {
					failed.Add(1)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); acceptedAt.Store(int64(time.Since(start))) }()
	want := int64(total) - failed.Load()
	timeout := time.Now().Add(time.Duration(total)*10*time.Millisecond + 30*time.Second)
	for sk.Received.Load() < want {
		if time.Now().After(timeout) {
			return nil, fmt.Errorf("sink got %d of %d messages", sk.Received.Load(), want)
		}
		time.Sleep(time.Millisecond) // poll interval
		want = int64(total) - failed.Load()
	}
	elapsed := time.Since(start)
	wg.Wait()
	acc := time.Duration(acceptedAt.Load())
	if acc == 0 {
		acc = elapsed
	}
	res := &RelayResult{
		MaxConnections: conns, Sessions: sessions, Messages: int(want), Seconds: elapsed.Seconds(),
		DeliveredPerS: float64(want) / elapsed.Seconds(), AcceptedPerS: float64(want) / acc.Seconds(),
		Errors: int(failed.Load()),
	}
	return res, nil
}

// latency sends n messages one at a time to an idle relay and times each
// from its 250 to its arrival at the sink.
func (b *bench) latency(n int) (*LatencyResult, error) {
	sk, err := benchsink.Start()
	if err != nil {
		return nil, err
	}
	defer sk.Close()
	in, err := b.start("latency", sinkHCL(sk.Port, 2), nil)
	if err != nil {
		return nil, err
	}
	defer in.stop()
	c, err := dial(in.addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sk.Notify.Store(true)
	var samples []time.Duration
	for range n {
		if err := sendOne(c, b.body); err != nil {
			return nil, err
		}
		accepted := time.Now()
		select {
		case at := <-sk.Arrived:
			samples = append(samples, max(0, at.Sub(accepted)))
		case <-time.After(10 * time.Second):
			return nil, errors.New("a message did not reach the sink within 10s")
		}
	}
	slices.Sort(samples)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p99 := samples[min(len(samples)-1, (len(samples)*99+99)/100-1)]
	return &LatencyResult{
		Samples: len(samples), MedianMs: ms(samples[len(samples)/2]), P99Ms: ms(p99), MaxMs: ms(samples[len(samples)-1]),
	}, nil
}
