package mailhdr

import "io"

// LimitReader passes a message through and fails once more than Max bytes
// went through, so an oversized message is refused before anything is
// stored. Unlike io.LimitReader, which ends early without a word, it
// reports the excess: the SMTP side and the shim must tell "too large"
// from "whole".
type LimitReader struct {
	R   io.Reader
	Max int64 // 0: no bound
	Err error // what a read past Max returns
	N   int64 // bytes read so far
}

func (l *LimitReader) Read(p []byte) (int, error) {
	n, err := l.R.Read(p)
	l.N += int64(n)
	if l.Max > 0 && l.N > l.Max {
		// The bytes go along with the error, so that a header section
		// read ahead into a buffer can still be quoted in a bounce.
		return n, l.Err
	}
	return n, err
}

// ReadWatch passes R through and remembers in Err the first error, other
// than io.EOF, that R returned: it tells a message that could not be read
// from one that a reader further on could not use.
type ReadWatch struct {
	R   io.Reader
	Err error
}

func (w *ReadWatch) Read(p []byte) (int, error) {
	n, err := w.R.Read(p)
	if err != nil && err != io.EOF && w.Err == nil {
		w.Err = err
	}
	return n, err
}
