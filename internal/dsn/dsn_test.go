package dsn

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		notify []Notify
		kind   Notify
		want   bool
	}{
		{nil, NotifyFailure, true},
		{nil, NotifyDelay, true},
		{nil, NotifySuccess, false},
		{[]Notify{"NEVER"}, NotifyFailure, false},
		{[]Notify{"never"}, NotifyDelay, false},
		{[]Notify{"NEVER"}, NotifySuccess, false},
		{[]Notify{"SUCCESS"}, NotifySuccess, true},
		{[]Notify{"SUCCESS"}, NotifyFailure, false},
		{[]Notify{"SUCCESS"}, NotifyDelay, false},
		{[]Notify{"FAILURE"}, NotifyFailure, true},
		{[]Notify{"FAILURE"}, NotifyDelay, false},
		{[]Notify{"success", "failure"}, NotifyFailure, true},
		{[]Notify{"SUCCESS", "FAILURE"}, NotifySuccess, true},
		{[]Notify{"DELAY"}, NotifyDelay, true},
		{[]Notify{"DELAY"}, NotifyFailure, false},
	} {
		if got := Wants(tc.notify, tc.kind); got != tc.want {
			t.Errorf("Wants(%q, %s) = %v, want %v", tc.notify, tc.kind, got, tc.want)
		}
	}
}

func TestParseNotify(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Notify
		err  bool
	}{
		{"", nil, false},
		{"never", []Notify{NotifyNever}, false},
		{" NEVER ", []Notify{NotifyNever}, false},
		{"delay,success", []Notify{NotifySuccess, NotifyDelay}, false},
		{"failure, Failure ,delay", []Notify{NotifyFailure, NotifyDelay}, false},
		{"never,success", nil, true},
		{"sometimes", nil, true},
		{"success,", nil, true},
	} {
		got, err := ParseNotify(tc.in)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("ParseNotify(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestNotifyEncoding checks that typed values are written as the plain
// strings the spool held before they were typed, so old spools read the
// same.
func TestNotifyEncoding(t *testing.T) {
	b, err := json.Marshal(struct {
		Notify []Notify `json:"notify"`
		Action Action   `json:"action"`
	}{[]Notify{NotifySuccess, NotifyFailure}, Delayed})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != `{"notify":["SUCCESS","FAILURE"],"action":"delayed"}` {
		t.Errorf("encoded as %s", got)
	}
	var back struct {
		Notify []Notify `json:"notify"`
	}
	if err := json.Unmarshal([]byte(`{"notify":["never"]}`), &back); err != nil || Wants(back.Notify, NotifyFailure) {
		t.Errorf("an old record's lower-case NEVER: %q, %v", back.Notify, err)
	}
}
