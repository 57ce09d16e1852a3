package spool

import "time"

// Due is DueExcept skipping nothing: the tests' view of the due index.
func (s *Spool) Due(now time.Time, limit int) ([]*Message, error) {
	return s.DueExcept(now, limit, nil)
}

// NextDue is NextDueExcept skipping nothing.
func (s *Spool) NextDue() (t time.Time, ok bool, err error) {
	return s.NextDueExcept(nil)
}
