package mailhdr

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLimitReader(t *testing.T) {
	errBig := errors.New("too big")
	for _, tc := range []struct {
		in   string
		max  int64
		err  error
		read string // what the reads return before the error
	}{
		{"hello", 5, nil, "hello"},
		{"hello", 0, nil, "hello"},
		{"hello!", 5, errBig, "hello!"}, // the bytes of the failing read go along
		{"", 1, nil, ""},
	} {
		l := &LimitReader{R: iotest.OneByteReader(strings.NewReader(tc.in)), Max: tc.max, Err: errBig}
		got, err := io.ReadAll(l)
		if err != tc.err || string(got) != tc.read || l.N != int64(len(tc.read)) {
			t.Errorf("%q max %d: read %q (N %d), %v; want %q, %v", tc.in, tc.max, got, l.N, err, tc.read, tc.err)
		}
	}
}

func TestReadWatch(t *testing.T) {
	w := &ReadWatch{R: strings.NewReader("whole")}
	if b, err := io.ReadAll(w); err != nil || string(b) != "whole" || w.Err != nil {
		t.Errorf("a whole read: %q, %v, Err %v", b, err, w.Err)
	}
	broken := errors.New("disk gone")
	w = &ReadWatch{R: io.MultiReader(strings.NewReader("part"), iotest.ErrReader(broken))}
	io.ReadAll(w)
	if w.Err != broken {
		t.Errorf("Err = %v, want the reader's error", w.Err)
	}
}
