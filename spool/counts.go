package spool

import (
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keyCounts holds, in the meta bucket, the number of queued messages in
// each state. Every write that adds, changes or removes an envelope adjusts
// it in the same transaction, so reading the counts costs one key, not a
// walk of the queue.
var keyCounts = []byte("counts")

// State is where a queued message stands, for counting.
type State int

const (
	absent State = iota
	// StatePending is a message not yet tried.
	StatePending
	// StateDeferred is a message tried at least once and due again.
	StateDeferred
	// StateHeld is a message on hold.
	StateHeld
	nStates
)

// StateOf returns the state a message is counted in.
func StateOf(m *Message) State {
	switch {
	case m.Held:
		return StateHeld
	case m.Attempts > 0:
		return StateDeferred
	}
	return StatePending
}

// Counts is the number of queued messages by state, and the arrival time
// of the oldest (zero when the queue is empty).
type Counts struct {
	Pending, Deferred, Held int
	Oldest                  time.Time
	OldestID                string
}

// Total is the number of queued messages.
func (c Counts) Total() int { return c.Pending + c.Deferred + c.Held }

func decodeCounts(v []byte) (c [nStates]int64, ok bool) {
	if len(v) != 8*int(nStates) {
		return c, false
	}
	for i := range c {
		c[i] = int64(binary.BigEndian.Uint64(v[8*i:]))
	}
	return c, true
}

func encodeCounts(c [nStates]int64) []byte {
	v := make([]byte, 8*int(nStates))
	for i, n := range c {
		binary.BigEndian.PutUint64(v[8*i:], uint64(n))
	}
	return v
}

// recount moves one message from state from to state to (absent for one
// that arrives or leaves). Until the counts exist (a spool written by an
// older release), it leaves them to Counts, which computes them once.
func recount(tx *bolt.Tx, from, to State) error {
	if from == to {
		return nil
	}
	meta := tx.Bucket(bucketMeta)
	c, ok := decodeCounts(meta.Get(keyCounts))
	if !ok {
		return nil
	}
	if from != absent && c[from] > 0 {
		c[from]--
	}
	if to != absent {
		c[to]++
	}
	return meta.Put(keyCounts, encodeCounts(c))
}

// storedState is the state of the envelope stored under id, or absent.
func storedState(tx *bolt.Tx, id string) State {
	m, err := getMsg(tx, id)
	if err != nil {
		return absent
	}
	return StateOf(m)
}

// countAll walks the queue once to build the counts.
func countAll(tx *bolt.Tx) (c [nStates]int64, err error) {
	err = tx.Bucket(bucketMsg).ForEach(func(k, v []byte) error {
		var m Message
		if err := json.Unmarshal(v, &m); err != nil {
			return nil // a damaged record is reported by those who read it
		}
		c[StateOf(&m)]++
		return nil
	})
	return c, err
}

// Counts returns the number of queued messages by state and the arrival
// of the oldest, without walking the queue: the counts are kept by the
// writes, and the oldest is the first envelope (queue IDs begin with
// their arrival time). Only the first call on a spool from a release that
// kept no counts walks it once, and stores the result.
func (s *Spool) Counts() (Counts, error) {
	var c [nStates]int64
	var have bool
	var oldest time.Time
	var oldestID string
	read := func(tx *bolt.Tx) error {
		c, have = decodeCounts(tx.Bucket(bucketMeta).Get(keyCounts))
		if k, v := tx.Bucket(bucketMsg).Cursor().First(); v != nil {
			var m Message
			if json.Unmarshal(v, &m) == nil {
				oldest, oldestID = m.Arrived, string(k)
			}
		}
		return nil
	}
	if err := s.view(read); err != nil {
		return Counts{}, err
	}
	if !have {
		init := func(tx *bolt.Tx) error {
			if _, ok := decodeCounts(tx.Bucket(bucketMeta).Get(keyCounts)); ok {
				return nil
			}
			all, err := countAll(tx)
			if err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keyCounts, encodeCounts(all))
		}
		var err error
		if s.ops == nil {
			// Read-only: count without storing.
			err = s.view(func(tx *bolt.Tx) error { c, err = countAll(tx); return err })
		} else if err = s.write(init); err == nil {
			err = s.view(read)
		}
		if err != nil {
			return Counts{}, err
		}
	}
	return Counts{Pending: int(c[StatePending]), Deferred: int(c[StateDeferred]), Held: int(c[StateHeld]), Oldest: oldest, OldestID: oldestID}, nil
}
