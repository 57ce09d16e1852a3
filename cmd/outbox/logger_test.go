package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/outbox-mta/outbox/config"
)

// TestLoggerJournal checks that under systemd (JOURNAL_STREAM naming our
// stderr) no time stamp is written, and that it is otherwise, in both
// formats.
func TestLoggerJournal(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		for _, journal := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/journal=%v", format, journal), func(t *testing.T) {
				f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var st syscall.Stat_t
				if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
					t.Fatal(err)
				}
				js := "0:0" // another stream: stderr redirected away from the journal
				if journal {
					js = fmt.Sprintf("%d:%d", st.Dev, st.Ino)
				}
				t.Setenv("JOURNAL_STREAM", js)
				cfg := &config.Config{Log: config.Log{Level: "info", Format: format}}
				log := newLogger(cfg, f, new(slog.LevelVar))
				log.Info("delivered", "id", "X1", "status", "sent")
				log.Debug("not at level info")
				b, err := os.ReadFile(f.Name())
				if err != nil {
					t.Fatal(err)
				}
				line := strings.TrimSpace(string(b))
				if strings.Count(line, "\n") != 0 || strings.Contains(line, "not at level") {
					t.Fatalf("want one line at level info, got %q", line)
				}
				var hasTime bool
				if format == "json" {
					var rec map[string]any
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("not JSON: %q", line)
					}
					_, hasTime = rec["time"]
					if rec["status"] != "sent" || rec["id"] != "X1" {
						t.Errorf("keys missing: %q", line)
					}
				} else {
					hasTime = strings.HasPrefix(line, "time=")
					if !strings.Contains(line, "status=sent") {
						t.Errorf("keys missing: %q", line)
					}
				}
				if hasTime == journal {
					t.Errorf("journal=%v but time stamp present=%v: %q", journal, hasTime, line)
				}
			})
		}
	}
}
