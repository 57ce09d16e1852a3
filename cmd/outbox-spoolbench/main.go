// Command outbox-spoolbench builds large spools and measures what their
// size costs: how long the spool takes to open with a cold and a warm page
// cache, to count and to list, and the memory each takes.
//
//	outbox-spoolbench table -n 1000000 [-dir /var/tmp/big] [-drain-time 10m]
//	outbox-spoolbench fill -spool /var/tmp/big/spool.db -n 1000000
//	outbox-spoolbench open -spool /var/tmp/big/spool.db -cold
//	outbox-spoolbench drain -spool /var/tmp/big/spool.db -n 90000 -serial 300
//
// table does it all and prints one table: it fills a spool, opens it with
// a cold and a warm page cache, starts a real daemon (`outbox serve`, built
// from this module unless -outbox is given) on it and times its first 220,
// runs queue stats, queue ls, queue ls --json and mailq through the
// daemon's admin socket, flushes the queue and drains it to a loopback
// SMTP sink, and reads the daemon's memory over each phase. fill, open and
// drain work on the spool file directly, without a daemon.
//
// fill stores N deferred messages of -size bytes (one recipient each, due
// in a day) through the spool's own Enqueue, from many goroutines so that
// group commit batches them. -cold drops the page cache first (root only).
// drain deletes the N oldest messages (leaving free pages behind, as a
// queue that drained does), then times -serial commits of one message
// each: what a commit costs with that much free space in the file.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outbox-mta/outbox/spool"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: outbox-spoolbench fill|open|drain|table [flags]")
		os.Exit(64)
	}
	var err error
	switch os.Args[1] {
	case "fill":
		err = fill(os.Args[2:])
	case "open":
		err = open(os.Args[2:])
	case "drain":
		err = drain(os.Args[2:])
	case "table":
		err = table(os.Args[2:], os.Stdout)
	default:
		err = fmt.Errorf("unknown subcommand %q (fill, open, drain, table)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "outbox-spoolbench:", err)
		os.Exit(1)
	}
}

func fill(args []string) error {
	fs := flag.NewFlagSet("fill", flag.ExitOnError)
	path := fs.String("spool", "", "spool file to create or extend")
	n := fs.Int("n", 100000, "messages to add")
	size := fs.Int("size", 1024, "body size in bytes")
	writers := fs.Int("writers", 256, "concurrent writers")
	fs.Parse(args)
	if *path == "" {
		return fmt.Errorf("fill: -spool is required")
	}
	_, st, el, err := fillSpool(*path, *n, *size, *writers, time.Time{})
	if err != nil {
		return err
	}
	fmt.Printf("filled %d messages of %d bytes in %.1f s (%.0f msgs/s, %d commits)\n", *n, *size, el.Seconds(), float64(*n)/el.Seconds(), st.Commits)
	return nil
}

func open(args []string) error {
	fs := flag.NewFlagSet("open", flag.ExitOnError)
	path := fs.String("spool", "", "spool file")
	cold := fs.Bool("cold", false, "drop the page cache first (root only)")
	ro := fs.Bool("ro", false, "open read-only")
	fs.Parse(args)
	if *cold {
		if err := dropCaches(); err != nil {
			return err
		}
	}
	start := time.Now()
	s, err := spool.Open(*path, spool.Options{ReadOnly: *ro, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	opened := time.Since(start)
	rssOpen := status("VmRSS")
	start = time.Now()
	n, err := s.Count()
	if err != nil {
		return err
	}
	counted := time.Since(start)
	// A write that fails rolls its transaction back: what that costs.
	var rolled time.Duration
	if !*ro {
		start = time.Now()
		s.Update("no-such-message", func(*spool.Message) error { return nil })
		rolled = time.Since(start)
	}
	s.Close()
	fmt.Printf("open %.3f s (cold=%v), VmRSS after open %s; count %d in %.3f s; failed write %.3f s; VmHWM %s\n",
		opened.Seconds(), *cold, rssOpen, n, counted.Seconds(), rolled.Seconds(), status("VmHWM"))
	return nil
}

// dropCaches empties the kernel's page cache so the next reads go to disk.
func dropCaches() error {
	syscall.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// status returns one field of /proc/self/status, such as VmRSS.
func status(field string) string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// errStop ends a Range early.
var errStop = errors.New("stop")

func drain(args []string) error {
	fs := flag.NewFlagSet("drain", flag.ExitOnError)
	path := fs.String("spool", "", "spool file")
	n := fs.Int("n", 0, "messages to delete, oldest first")
	serial := fs.Int("serial", 300, "single-message commits to time afterwards")
	memprofile := fs.String("memprofile", "", "write a heap profile to this file once the messages are deleted")
	fs.Parse(args)
	s, err := spool.Open(*path, spool.Options{MaxBatch: 4096, Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer s.Close()
	// Only the IDs are kept: the heap figures below are then the spool's.
	var todo []string
	err = s.Range("", func(m *spool.Message) error {
		if len(todo) >= *n {
			return errStop
		}
		todo = append(todo, m.ID)
		return nil
	})
	if err != nil && err != errStop {
		return err
	}
	*n = len(todo)
	ids := make(chan string)
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := 0; w < 256; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				if err := s.Delete(id); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for _, id := range todo {
		ids <- id
	}
	close(ids)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	todo = nil
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("deleted %d messages in %.1f s; heap in use afterwards %.1f MiB, RssAnon %s\n", *n, time.Since(start).Seconds(), float64(ms.HeapInuse)/(1<<20), status("RssAnon"))
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			return err
		}
	}
	body := bytes.Repeat([]byte("x"), 1024)
	start = time.Now()
	for i := 0; i < *serial; i++ {
		m := &spool.Message{From: "bench@example.org", Recipients: []spool.Recipient{{Address: "sink@example.net"}}}
		if err := s.Enqueue(context.Background(), m, bytes.NewReader(body)); err != nil {
			return err
		}
	}
	el := time.Since(start)
	fmt.Printf("%d serial commits: %.2f ms each\n", *serial, el.Seconds()*1000/float64(*serial))
	return nil
}
