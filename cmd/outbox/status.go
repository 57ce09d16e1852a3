package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/outbox-mta/outbox/adminapi"
)

func cmdStatus(a *app, args []string) int {
	fs := a.flags("status")
	asJSON := fs.Bool("json", false, "print the status as one JSON object")
	cfg, code := a.parseAndLoad(fs, args)
	if cfg == nil {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := adminapi.NewClient(cfg.Admin.Socket).Status(ctx)
	if err != nil {
		fmt.Fprintln(a.stderr, "outbox status:", err)
		return exitUnavailable
	}
	if *asJSON {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
		return exitOK
	}
	printStatus(a.stdout, st, time.Now())
	return exitOK
}

// printStatus writes the status as one screen of text.
func printStatus(w io.Writer, st adminapi.Status, now time.Time) {
	fmt.Fprintf(w, "outbox %s, up %s (since %s)\n", st.Version, age(st.Uptime), st.Started.Local().Format(time.DateTime))
	fmt.Fprintf(w, "listening: %s\n", strings.Join(st.Listeners, ", "))
	q := st.Queue
	fmt.Fprintf(w, "queue:     %d messages (%d pending, %d deferred, %d held)", q.Messages, q.Pending, q.Deferred, q.Held)
	if q.Messages > 0 {
		fmt.Fprintf(w, ", oldest %s old", age(q.OldestAge))
	}
	fmt.Fprintf(w, "\nspool:     %s\n", bytesText(st.SpoolSize))
	fmt.Fprintln(w, "upstreams:")
	when := func(t *time.Time) string {
		if t == nil {
			return "never"
		}
		return age(now.Sub(*t).Seconds()) + " ago"
	}
	for _, u := range st.Upstreams {
		fmt.Fprintf(w, "  %s (%s): %s\n", u.Name, u.Address, u.State)
		if u.Paused {
			fmt.Fprintf(w, "    paused until %s: %s\n", u.PausedUntil.Local().Format(time.DateTime), u.PauseReason)
		}
		fmt.Fprintf(w, "    last success: %s\n", when(u.LastSuccess))
		if u.LastError != "" {
			fmt.Fprintf(w, "    last error:   %s: %s\n", when(u.LastErrorAt), u.LastError)
		}
		if u.TokenExpiry != nil {
			fmt.Fprintf(w, "    token expires: %s\n", u.TokenExpiry.Local().Format(time.DateTime))
		}
	}
}

// age renders seconds as a short duration ("3m12s", "2h5m").
func age(sec float64) string {
	d := time.Duration(sec) * time.Second
	if d >= time.Hour {
		d = d.Round(time.Minute)
	}
	return d.String()
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
