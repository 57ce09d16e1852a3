package spool

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPrecheckCost measures the walk Open does before a writable open
// against bbolt's own freelist rebuild, on a spool of 100,000 messages of
// 4 KiB. It only reports: OUTBOX_PRECHECK_COST=1 runs it.
func TestPrecheckCost(t *testing.T) {
	if os.Getenv("OUTBOX_PRECHECK_COST") == "" {
		t.Skip("set OUTBOX_PRECHECK_COST=1 to measure")
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 4096)
	const n, batch = 100000, 5000
	for i := 0; i < n; i += batch {
		err := s.write(func(tx *bolt.Tx) error {
			for j := i; j < i+batch; j++ {
				id := fmt.Sprintf("%020d", j)
				m := newMsg("b@example.org")
				m.ID, m.Size, m.Arrived, m.NextAttempt = id, 4096, time.Now(), time.Now()
				rec, _ := json.Marshal(m)
				if err := tx.Bucket(bucketMsg).Put([]byte(id), rec); err != nil {
					return err
				}
				if err := tx.Bucket(bucketBody).Put(bodyKey(id, 0), body); err != nil {
					return err
				}
				if err := tx.Bucket(bucketDue).Put(dueKey(m.NextAttempt, id), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	fi, _ := os.Stat(path)
	for round := range 2 {
		start := time.Now()
		if err := precheck(path, time.Second); err != nil {
			t.Fatal(err)
		}
		pre := time.Since(start)
		start = time.Now()
		db, err := openDB(path, time.Second, false)
		if err != nil {
			t.Fatal(err)
		}
		open := time.Since(start)
		db.Close()
		t.Logf("round %d, %d messages, %d MiB: precheck %v, bbolt's writable open %v", round, n, fi.Size()>>20, pre.Round(time.Millisecond), open.Round(time.Millisecond))
	}
}
