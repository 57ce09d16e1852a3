package relay

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The alert rules and the dashboard the package installs under
// /usr/share/outbox/.
var (
	shippedRules     = filepath.Join("..", "packaging", "prometheus", "outbox-rules.yml")
	shippedRuleTests = filepath.Join("..", "packaging", "prometheus", "outbox-rules_test.yml")
	shippedDashboard = filepath.Join("..", "packaging", "grafana", "outbox.json")
)

// promtool finds Prometheus's rule checker (Debian's prometheus package
// ships it). CI installs it, so there it must be found.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found; CI installs Debian's prometheus package")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	return p
}

// TestShippedRules runs promtool's syntax check and the rules' unit tests.
func TestShippedRules(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", shippedRules},
		{"test", "rules", shippedRuleTests},
	} {
		cmd := exec.Command(pt, args...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		} else {
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
		}
	}
}

// metricName matches the names of the daemon's series in a PromQL
// expression: the project's own and the Go runtime's.
var metricName = regexp.MustCompile(`\b(?:outbox|go|process)_[a-z0-9_]+\b`)

// dashboardExprs returns every query of the dashboard: panel targets and
// template variables.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(shippedDashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", shippedDashboard, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	return out
}

// ruleExprs returns the expr lines of the alert rules.
func ruleExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(shippedRules)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "expr:"); ok {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

// TestShippedQueriesUseServedMetrics scrapes a running relay whose SMTP
// upstream refuses connections (so that deliveries, deferrals and
// upstream figures exist) and checks that every metric the dashboard and
// the alert rules query is one it serves.
func TestShippedQueriesUseServedMetrics(t *testing.T) {
	dir := t.TempDir()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := down.Addr().(*net.TCPAddr).Port
	down.Close() // nothing listens there now: connections are refused
	t.Setenv("OUTBOX_TEST_SHIPPED_SECRET", "not-used")
	cfg := dlvConfig(t, dir, `
hostname = "relay.test"
listen { address = "127.0.0.1:`+strconv.Itoa(dlvFreePort(t))+`" }
spool { path = "var/spool.db" }
admin { socket = "var/admin.sock" }
upstream "down" {
  host = "127.0.0.1"
  port = `+strconv.Itoa(port)+`
  tls  = "none"
}
# An OAuth2 upstream, so that its token metrics are served too (no mail
# is routed to it: the first upstream takes all).
upstream "m365" {
  host     = "127.0.0.1"
  port     = `+strconv.Itoa(port)+`
  tls      = "none"
  username = "relay@contoso.example"
  oauth2 {
    flow              = "client_credentials"
    token_url         = "http://127.0.0.1:`+strconv.Itoa(port)+`/token"
    scopes            = ["smtp"]
    client_id         = "app"
    client_secret_env = "OUTBOX_TEST_SHIPPED_SECRET"
  }
}
`)
	if err := os.MkdirAll(filepath.Join(dir, "var"), 0o750); err != nil {
		t.Fatal(err)
	}
	d := dlvStartRelay(t, cfg, Options{Now: time.Now})
	dlvSend(t, d.addr, "app@example.org", []string{"bob@example.com"}, dlvBody)

	sock := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", filepath.Join(dir, "var", "admin.sock"))
	}}}
	var text string
	// Wait for both series of the attempt: Gather collects each family on
	// its own goroutine, so one scrape can hold one without the other.
	dlvWait(t, "a deferral to be counted", func() bool {
		text = metricsGet(t, sock, "http://outbox/metrics")
		return metricValue(text, `outbox_delivery_results_total{result="deferred",upstream="down"}`) >= 1 &&
			metricValue(text, `outbox_delivery_duration_seconds_count{upstream="down"}`) >= 1
	})
	served := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		served[strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}

	for what, exprs := range map[string][]string{"dashboard": dashboardExprs(t), "alert rules": ruleExprs(t)} {
		if len(exprs) < 7 {
			t.Errorf("%s: only %d queries found", what, len(exprs))
		}
		used := map[string]bool{}
		for _, e := range exprs {
			names := metricName.FindAllString(e, -1)
			if len(names) == 0 {
				t.Errorf("%s: query %q names no metric of the daemon", what, e)
			}
			for _, n := range names {
				used[n] = true
			}
		}
		var missing []string
		for n := range used {
			if !served[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s queries metrics the daemon does not serve: %v", what, missing)
		}
	}
}
