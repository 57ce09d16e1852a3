package spool

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyCounts holds the queue's counts by state in the meta bucket: three
// big-endian int64s (pending, deferred, held). Every write that adds,
// changes or removes an envelope adjusts them in its own transaction, so
// they are exact at every commit and cost O(1) to read: a metrics scrape
// never walks the queue. The total is their sum, since each message is in
// exactly one state; earlier releases stored it as a fourth int64, which
// is read past and dropped at the next write.
var keyCounts = []byte("counts")

// Counts is how many messages the queue holds, by state. Each message is
// in exactly one of Pending, Deferred and Held.
type Counts struct {
	// Pending messages have not been tried yet.
	Pending int
	// Deferred messages were tried and wait for a retry.
	Deferred int
	// Held messages are held (outbox queue hold) and never tried.
	Held int
	// Total is Pending + Deferred + Held (derived, not stored).
	Total int
}

// state is the index into the stored counts of a message's state.
func state(m *Message) int {
	switch {
	case m.Held:
		return 2
	case m.Attempts > 0:
		return 1
	}
	return 0
}

type counts [3]int64 // pending, deferred, held

// legacyCountsLen is the size of the record that also stored the total.
// Reading it as it is spares a spool written by that version one walk of
// every message at its first open.
const legacyCountsLen = 8 * 4

func readCounts(tx *bolt.Tx) (c counts, ok bool) {
	v := tx.Bucket(bucketMeta).Get(keyCounts)
	if len(v) != 8*len(c) && len(v) != legacyCountsLen {
		return c, false
	}
	for i := range c {
		c[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
	}
	return c, true
}

func writeCounts(tx *bolt.Tx, c counts) error {
	v := make([]byte, 8*len(c))
	for i := range c {
		binary.BigEndian.PutUint64(v[8*i:], uint64(c[i]))
	}
	return tx.Bucket(bucketMeta).Put(keyCounts, v)
}

// adjustCounts records in tx that an envelope went from old to new: old
// is nil for a new message, new is nil for one that leaves the queue. A
// spool without stored counts (opened read-only before its upgrade) is
// left alone.
func adjustCounts(tx *bolt.Tx, old, new *Message) error {
	c, ok := readCounts(tx)
	if !ok {
		return nil
	}
	if old != nil {
		c[state(old)]--
	}
	if new != nil {
		c[state(new)]++
	}
	return writeCounts(tx, c)
}

// countAll walks every envelope: how counts are built for a spool written
// before they were kept.
func countAll(tx *bolt.Tx) (counts, error) {
	var c counts
	err := tx.Bucket(bucketMsg).ForEach(func(k, v []byte) error {
		var m struct {
			Held     bool `json:"held"`
			Attempts int  `json:"attempts"`
		}
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("message %s: %w (%v)", k, ErrCorrupt, err)
		}
		c[state(&Message{Held: m.Held, Attempts: m.Attempts})]++
		return nil
	})
	return c, err
}

// ensureCounts stores the counts of a spool that has none yet; it runs
// in the writable open's transaction, once per spool.
func ensureCounts(tx *bolt.Tx) error {
	if _, ok := readCounts(tx); ok {
		return nil
	}
	c, err := countAll(tx)
	if err != nil {
		return err
	}
	return writeCounts(tx, c)
}

// Counts returns the number of queued messages by state. It reads one
// stored record; only a spool opened read-only that an older release
// wrote has to be walked.
func (s *Spool) Counts() (Counts, error) {
	var c counts
	err := s.view(func(tx *bolt.Tx) error {
		var ok bool
		if c, ok = readCounts(tx); ok {
			return nil
		}
		var err error
		c, err = countAll(tx)
		return err
	})
	return Counts{Pending: int(c[0]), Deferred: int(c[1]), Held: int(c[2]), Total: int(c[0] + c[1] + c[2])}, err
}
