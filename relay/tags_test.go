package relay

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Tags listed in relay.hcl travel from X-Outbox-Tag-NAME header fields
// to the delivery lines and a metric; unlisted tags are ignored, and odd
// values never become free text in a label.
func TestTagsInLogsAndMetrics(t *testing.T) {
	dir := t.TempDir()
	s := rlSettings{port: dlvFreePort(t), retryInitial: "1m", maxSize: "1MiB", root: "ops@example.com",
		extra: `tags = ["campaign", "tenant"]`}
	d, lg := rlStart(t, dir, s, Options{})
	body := "X-Outbox-Tag-Campaign: q3\r\nX-Outbox-Tag-Tenant: acme corp!\r\nX-Outbox-Tag-Secret: s3\r\nSubject: x\r\n\r\nhello\r\n"
	dlvSend(t, d.addr, "app@example.org", []string{"bob@example.com"}, body)
	deadline := time.Now().Add(20 * time.Second)
	var line string
	for line == "" {
		for _, l := range strings.Split(lg.String(), "\n") {
			if strings.Contains(l, "msg=deferred") {
				line = l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery line:\n%s", lg.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(line, "tag_campaign=q3") || !strings.Contains(line, "tag_tenant=invalid") || strings.Contains(line, "tag_secret") {
		t.Errorf("delivery line: %s", line)
	}
	if !strings.Contains(lg.String(), "msg=accepted") || !strings.Contains(lg.String(), "tag_campaign=q3") {
		t.Errorf("the acceptance line has no tags:\n%s", lg.String())
	}
	mf, err := d.r.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range mf {
		if f.GetName() != "outbox_tagged_deliveries_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var k []string
			for _, l := range m.GetLabel() {
				k = append(k, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(k, ",")] = m.GetCounter().GetValue()
		}
	}
	if got["status=deferred,tag=campaign,value=q3"] != 1 || got["status=deferred,tag=tenant,value=invalid"] != 1 || len(got) != 2 {
		t.Errorf("outbox_tagged_deliveries_total = %v", got)
	}
}

// The values of one tag that become labels are bounded.
func TestTagValuesBounded(t *testing.T) {
	var tv tagValues
	for i := 0; i < maxTagValues; i++ {
		if got := tv.label("campaign", fmt.Sprint("c", i)); got != fmt.Sprint("c", i) {
			t.Fatalf("value %d labelled %q", i, got)
		}
	}
	if got := tv.label("campaign", "one-too-many"); got != "other" {
		t.Errorf("value beyond the bound labelled %q, want other", got)
	}
	if got := tv.label("campaign", "c7"); got != "c7" {
		t.Errorf("a known value labelled %q", got)
	}
}
