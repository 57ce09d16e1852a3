package relay

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

func metricsGet(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// metricValue returns the value of the first sample whose line starts
// with series, or -1.
func metricValue(text, series string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func TestMetrics(t *testing.T) {
	port := dlvFreePort(t)
	ir := inStartRelay(t, inSetup{metrics: fmt.Sprintf("127.0.0.1:%d", port)})
	c := inGreeted(t, "tcp", ir.tcp)
	c.ok("EHLO client.test")
	inSend(t, c, "app@example.com", []string{"bob@example.org"}, "Subject: m\r\n\r\nbody\r\n")

	sock := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(ir.dir, "a.sock"))
	}}}
	deadline := time.Now().Add(10 * time.Second)
	var text string
	for {
		text = metricsGet(t, sock, "http://outbox/metrics")
		// Gather collects each family on its own goroutine, so one scrape
		// may hold the results counter of an attempt but the duration
		// histogram from before it: wait for both.
		if metricValue(text, `outbox_delivery_results_total{result="deferred",upstream="capture"}`) >= 1 &&
			metricValue(text, `outbox_delivery_duration_seconds_count{upstream="capture"}`) >= 1 &&
			metricValue(text, `outbox_queue_messages{state="deferred"}`) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no deferred result and duration counted:\n%s", text)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for series, want := range map[string]float64{
		`outbox_accepted_messages_total{source="smtp"}`: 1,
		`outbox_queue_messages{state="pending"}`:        0,
		`outbox_queue_messages{state="held"}`:           0,
	} {
		if got := metricValue(text, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if metricValue(text, "outbox_spool_commits_total") < 1 || metricValue(text, "outbox_spool_writes_total") < 1 {
		t.Errorf("spool counters missing:\n%s", text)
	}
	if age := metricValue(text, "outbox_queue_oldest_message_age_seconds"); age < 0 || age > 60 {
		t.Errorf("oldest message age %v, want the seconds since the test's message arrived", age)
	}
	if metricValue(text, "outbox_spool_size_bytes") < 4096 {
		t.Errorf("spool size missing:\n%s", text)
	}
	if metricValue(text, "go_goroutines") < 1 {
		t.Errorf("no Go runtime metrics:\n%s", text)
	}
	// The same metrics over TCP on metrics_address.
	tcp := metricsGet(t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if metricValue(tcp, `outbox_accepted_messages_total{source="smtp"}`) != 1 {
		t.Errorf("metrics_address serves other figures:\n%s", tcp)
	}
}
