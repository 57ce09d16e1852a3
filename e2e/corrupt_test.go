package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/outbox-mta/outbox/spool"
)

// filledSpool writes a spool with n messages (a few of them over a
// megabyte) to path.
func filledSpool(t *testing.T, path string, n int) {
	t.Helper()
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range n {
		size := 2000
		if i%50 == 0 {
			size = 1<<20 + 5000
		}
		m := &spool.Message{From: "a@example.com", Recipients: []spool.Recipient{{Address: fmt.Sprintf("r%d@example.org", i)}}, Submitter: "test"}
		if err := s.Enqueue(context.Background(), m, bytes.NewReader(bytes.Repeat([]byte("x"), size))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDamagedSpool: a spool file that is not one, or is damaged, stops
// `outbox serve` and `outbox queue ls` with a clear error and exit 69 or
// 78, never a panic.
func TestDamagedSpool(t *testing.T) {
	junk := make([]byte, 64<<10)
	rand.Read(junk)
	cases := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"random bytes", func(t *testing.T, path string) {
			os.WriteFile(path, junk, 0o600)
		}},
		{"truncated", func(t *testing.T, path string) {
			filledSpool(t, path, 300)
			fi, _ := os.Stat(path)
			os.Truncate(path, fi.Size()/3)
		}},
		{"truncated to one page", func(t *testing.T, path string) {
			filledSpool(t, path, 50)
			os.Truncate(path, 4096)
		}},
		{"damaged pages", func(t *testing.T, path string) {
			filledSpool(t, path, 300)
			b, _ := os.ReadFile(path)
			// Keep the two meta pages, scribble over the rest here and there.
			for off := 4 * 4096; off+4096 <= len(b); off += 3 * 4096 {
				rand.Read(b[off : off+64])
			}
			os.WriteFile(path, b, 0o600)
		}},
		{"another program's bbolt file", func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			db.Update(func(tx *bolt.Tx) error {
				b, _ := tx.CreateBucket([]byte("users"))
				return b.Put([]byte("alice"), []byte("secret"))
			})
			db.Close()
		}},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			up, queue := holdUpstream(t)
			e := newEnv(t, up, queue)
			tc.make(t, e.spoolPath())
			for _, args := range [][]string{{"queue", "ls"}, {"queue", "ls", "--json"}, {"serve"}} {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				cmd := exec.CommandContext(ctx, outboxBin, append(args, "--config", e.conf)...)
				cmd.Dir = e.dir
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				cmd.Run()
				cancel()
				code := cmd.ProcessState.ExitCode()
				what := "outbox " + strings.Join(args, " ")
				t.Logf("%s: exit %d: %s", what, code, tail(strings.TrimSpace(stderr.String()), 1))
				if code != 69 && code != 78 {
					t.Errorf("%s: exit %d, want 69 or 78\n%s", what, code, tail(stderr.String(), 20))
				}
				if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "goroutine ") {
					t.Errorf("%s panicked:\n%s", what, tail(stderr.String(), 20))
				}
				if !strings.Contains(stderr.String(), e.spoolPath()) && !strings.Contains(stderr.String(), "spool.db") {
					t.Errorf("%s: the error does not name the spool file:\n%s", what, tail(stderr.String(), 20))
				}
			}
		})
	}
}
