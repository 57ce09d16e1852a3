package spool

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Oldest returns the ID and arrival time of the oldest queued message, or
// "" and the zero time when the queue is empty. It reads the first
// envelope only: queue IDs begin with their arrival time (NewID), so the
// first key is the oldest message, whatever the queue's length.
func (s *Spool) Oldest() (id string, arrived time.Time, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		k, v := tx.Bucket(bucketMsg).Cursor().First()
		if k == nil {
			return nil
		}
		var m struct {
			Arrived time.Time `json:"arrived"`
		}
		if err := json.Unmarshal(v, &m); err != nil {
			// As Range and the counts do: a damaged envelope is reported,
			// not shown to the operator as an empty queue.
			return fmt.Errorf("message %s: %w (%v)", k, ErrCorrupt, err)
		}
		id, arrived = string(k), m.Arrived
		return nil
	})
	return id, arrived, err
}
