package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// sendmailBench is "outbox-bench sendmail": it times whole sendmail calls,
// one process each from fork to reaped exit, for several commands taken in
// turn (A B C, B C A, C A B, …) so that all of them see the same machine
// load, and prints each command's median, 90th percentile and calls per
// second, and the median CPU time of the call (its process and the
// children it waited for). The commands may run in a chroot (a Debian
// root holding other MTAs, see e2e/sendmail-bench.sh) and as an ordinary
// user, as cron jobs and web applications call sendmail. Every call must
// exit 0: a failed call stops the run with its stderr, so that a figure
// never counts a message that was not stored.
//
//	outbox-bench sendmail [-n 300] [-root DIR] [-user 65534:65534] -stdin msg.eml \
//	    'outbox=/usr/sbin/sendmail -t -i' 'dma=/usr/sbin/dma -t -i' 'true=/bin/true'
func sendmailBench(args []string) error {
	fs := flag.NewFlagSet("outbox-bench sendmail", flag.ContinueOnError)
	n := fs.Int("n", 300, "counted calls of each command")
	warmup := fs.Int("warmup", 10, "calls of each command first, not counted")
	root := fs.String("root", "", "chroot into this folder for every call")
	userSpec := fs.String("user", "", "run the calls as UID:GID (numeric; default: this process's user)")
	stdinPath := fs.String("stdin", "", "file given to every call as its standard input (default: /dev/null)")
	var env multiFlag
	fs.Var(&env, "env", "KEY=VALUE in the calls' environment (repeatable); PATH is always set")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: outbox-bench sendmail [options] LABEL=COMMAND ...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no command to time")
	}
	type target struct {
		label string
		argv  []string
		times []time.Duration
		cpu   []time.Duration // user and system time of the call's process
	}
	var targets []*target
	for _, a := range fs.Args() {
		label, cmdline, ok := strings.Cut(a, "=")
		argv := strings.Fields(cmdline)
		if !ok || label == "" || len(argv) == 0 {
			return fmt.Errorf("%q: want LABEL=COMMAND ARGS", a)
		}
		targets = append(targets, &target{label: label, argv: argv})
	}
	attr := &syscall.SysProcAttr{}
	if *root != "" {
		attr.Chroot = *root
	}
	if *userSpec != "" {
		u, g, _ := strings.Cut(*userSpec, ":")
		uid, err1 := strconv.Atoi(u)
		gid, err2 := strconv.Atoi(g)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("-user %q: want numeric UID:GID", *userSpec)
		}
		attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}
	stdinName := os.DevNull
	if *stdinPath != "" {
		stdinName = *stdinPath
	}
	stdin, err := os.Open(stdinName)
	if err != nil {
		return err
	}
	defer stdin.Close()
	// Standard error goes to a file, not a pipe, so that no goroutine of
	// this process copies it while a call is timed.
	errFile, err := os.CreateTemp("", "outbox-bench-stderr-")
	if err != nil {
		return err
	}
	defer os.Remove(errFile.Name())
	defer errFile.Close()
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer devNull.Close()
	callEnv := append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)

	call := func(t *target) (time.Duration, time.Duration, error) {
		if _, err := stdin.Seek(0, io.SeekStart); err != nil {
			return 0, 0, err
		}
		if err := errFile.Truncate(0); err != nil {
			return 0, 0, err
		}
		errFile.Seek(0, io.SeekStart)
		cmd := exec.Command(t.argv[0], t.argv[1:]...)
		// exec.Command looks the name up on this process's PATH, not the
		// root's: keep the path as given.
		cmd.Path = t.argv[0]
		cmd.Err = nil
		cmd.Dir = "/"
		cmd.Env = callEnv
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, devNull, errFile
		cmd.SysProcAttr = attr
		start := time.Now()
		err := cmd.Run()
		d := time.Since(start)
		if err != nil {
			msg, _ := os.ReadFile(errFile.Name())
			return 0, 0, fmt.Errorf("%s: %v: %s", t.label, err, strings.TrimSpace(string(msg)))
		}
		// The CPU time of the process alone: less disturbed by other work
		// on the machine than the wall time, but blind to the time spent
		// waiting on the daemon or the disk.
		return d, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
	}
	for i := 0; i < *warmup; i++ {
		for _, t := range targets {
			if _, _, err := call(t); err != nil {
				return err
			}
		}
	}
	start := time.Now()
	for i := 0; i < *n; i++ {
		// Each round starts with the next command, so that none always
		// follows the same one (and the disk work it left behind).
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			d, cpu, err := call(t)
			if err != nil {
				return err
			}
			t.times = append(t.times, d)
			t.cpu = append(t.cpu, cpu)
		}
	}
	elapsed := time.Since(start)

	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("%d calls of each, taken in turn, in %v; load average %s\n", *n, elapsed.Round(time.Millisecond), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "command\tmedian ms\tp90 ms\tmin ms\tmean ms\tcalls/s\tCPU median ms\t")
	for _, t := range targets {
		s := slices.Clone(t.times)
		slices.Sort(s)
		var sum time.Duration
		for _, d := range s {
			sum += d
		}
		mean := sum / time.Duration(len(s))
		cpu := slices.Clone(t.cpu)
		slices.Sort(cpu)
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.2f\t\n", t.label, ms(s[len(s)/2]), ms(s[len(s)*9/10]), ms(s[0]), ms(mean), float64(time.Second)/float64(mean), ms(cpu[len(cpu)/2]))
	}
	return tw.Flush()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
