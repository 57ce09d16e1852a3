package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTableSmall runs the whole table on 200 messages against the real
// binaries and checks that every row is there with its figures: the
// listings agree with the spool, the drain delivered everything, and each
// daemon phase has memory readings.
func TestTableSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outbox and sendmail and runs a daemon")
	}
	const n = 200
	o := &tableOpts{
		n: n, size: 1024, dir: t.TempDir(), cold: false,
		phaseTime: time.Minute, drainTime: time.Minute, conns: 4,
		settle: 50 * time.Millisecond, sample: 10 * time.Millisecond,
	}
	// A folder the user names is cleaned of the run's files alone.
	other := filepath.Join(o.dir, "other")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	rows, err := runTable(o, &progress)
	var out bytes.Buffer
	printTable(&out, o, rows)
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, progress.String(), out.String())
	}
	t.Logf("\n%s", out.String())
	if len(rows) != len(tablePhases) {
		t.Fatalf("%d rows, want %d", len(rows), len(tablePhases))
	}
	byPhase := map[string]row{}
	for i, r := range rows {
		if r.phase != tablePhases[i] {
			t.Errorf("row %d is %q, want %q", i, r.phase, tablePhases[i])
		}
		if !strings.Contains(out.String(), r.phase) {
			t.Errorf("the printed table has no row %q", r.phase)
		}
		byPhase[r.phase] = r
	}
	for phase, want := range map[string]string{
		"spool open, cold cache":                "skipped",
		"spool open, warm cache":                "200 queued",
		"mailq":                                 "200 messages",
		"queue stats":                           "200",
		"drain to the sink":                     "200 of 200 delivered",
		"daemon start to first 220, warm cache": "220 on 127.0.0.1:",
	} {
		if got := byPhase[phase].result; !strings.Contains(got, want) {
			t.Errorf("%s: result %q, want it to contain %q", phase, got, want)
		}
	}
	for _, phase := range []string{"queue ls", "queue ls --json", "mailq", "queue flush"} {
		r := byPhase[phase]
		if r.peakAnon <= 0 || r.anon <= 0 || r.rss <= 0 || r.file < 0 || r.client <= 0 {
			t.Errorf("%s: memory figures missing: %+v", phase, r)
		}
		if r.file > r.rss {
			t.Errorf("%s: file-backed %d kB is more than VmRSS %d kB", phase, r.file, r.rss)
		}
	}
	if r := byPhase["queue ls"]; !strings.Contains(r.result, "lines") {
		t.Errorf("queue ls: result %q", r.result)
	}
	left, _ := os.ReadDir(o.dir)
	if len(left) != 1 || left[0].Name() != "other" {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("the folder holds %v afterwards, want only the file that was there before", names)
	}
}
