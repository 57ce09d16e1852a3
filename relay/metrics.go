package relay

import (
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outbox-mta/outbox/internal/dsn"
	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// metrics are the daemon's Prometheus metrics, served on the admin socket
// at /metrics and on admin.metrics_address when set. A nil *metrics
// records nothing, so parts built without a Relay (tests) need none.
type metrics struct {
	reg *prometheus.Registry
	// accepted counts messages stored, by how they came: smtp, sendmail
	// (the sendmail protocol) or maildrop.
	accepted *prometheus.CounterVec
	// results counts per-recipient delivery results by upstream and
	// result: sent, deferred or failed.
	results *prometheus.CounterVec
	// duration is how long one delivery attempt to an upstream took.
	duration *prometheus.HistogramVec
	// notices counts delivery status notifications queued, by action.
	notices *prometheus.CounterVec
	// bounced counts recipients that failed for good, by reason: bounced
	// (a 5yz reply) or expired (the lifetime ran out).
	bounced *prometheus.CounterVec
	// tagged counts per-recipient delivery lines by message tag (the
	// names relay.hcl lists), value (bounded: see maxTagValues) and status.
	tagged    *prometheus.CounterVec
	tagValues tagValues
}

// newMetrics builds the metrics; targets returns the upstream targets in
// force, which a reload may replace.
func newMetrics(sp *spool.Spool, targets func() map[string]upstream.Target) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_accepted_messages_total", Help: "Messages stored in the spool, by source (smtp, sendmail, maildrop).",
		}, []string{"source"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_delivery_results_total", Help: "Per-recipient delivery results, by upstream and result (sent, deferred, failed).",
		}, []string{"upstream", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "outbox_delivery_duration_seconds", Help: "Time one delivery attempt to an upstream took.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"upstream"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_notifications_total", Help: "Delivery status notifications queued, by action (failed, delayed, delivered).",
		}, []string{"action"}),
	}
	m.bounced = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbox_bounced_recipients_total", Help: "Recipients that failed for good, by reason (bounced: a 5yz reply; expired: the lifetime ran out).",
	}, []string{"reason"})
	// Present from the start, so that rate() and alerts see the first one.
	for _, r := range []string{"bounced", "expired"} {
		m.bounced.WithLabelValues(r)
	}
	for _, a := range []dsn.Action{dsn.Failed, dsn.Delayed, dsn.Delivered} {
		m.notices.WithLabelValues(string(a))
	}
	m.tagged = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbox_tagged_deliveries_total", Help: "Per-recipient delivery lines of tagged messages (X-Outbox-Tag-NAME, for the names in relay.hcl's tags), by tag, value (the first 50 values of a tag, then \"other\") and status (sent, deferred, bounced, expired).",
	}, []string{"tag", "value", "status"})
	m.reg.MustRegister(m.accepted, m.results, m.duration, m.notices, m.bounced, m.tagged)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		queueCollector{sp: sp, now: time.Now},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_spool_size_bytes", Help: "Size of the spool file on disk (bbolt files never shrink by themselves; see outbox queue compact).",
		}, func() float64 {
			fi, err := os.Stat(sp.Path())
			if err != nil {
				return 0
			}
			return float64(fi.Size())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outbox_spool_commits_total", Help: "Spool commits (each one fsynced).",
		}, func() float64 { return float64(sp.Stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "outbox_spool_writes_total", Help: "Spool writes; writes per commit is the group-commit batching factor.",
		}, func() float64 { return float64(sp.Stats().Writes) }),
	)
	m.reg.MustRegister(pausedCollector{
		desc: prometheus.NewDesc("outbox_upstream_paused",
			"1 while the upstream is paused: after a 421, repeated connection failures, or an OAuth2 configuration problem (invalid_grant and the like).", []string{"upstream"}, nil),
		targets: targets,
	}, failureCollector{
		auth: prometheus.NewDesc("outbox_upstream_auth_failures_total",
			"Connections to the upstream whose authentication failed (refused, not offered, or its secret unreadable).", []string{"upstream"}, nil),
		tls: prometheus.NewDesc("outbox_upstream_tls_failures_total",
			"Connections to the upstream that could not have TLS (STARTTLS missing, handshake or certificate failed).", []string{"upstream"}, nil),
		tokens: prometheus.NewDesc("outbox_oauth2_token_refreshes_total",
			"OAuth2 access token fetches for the upstream, by result (ok, failed).", []string{"upstream", "result"}, nil),
		targets: targets,
	})
	return m
}

// queueCollector reports the queue by state and the age of its oldest
// message from the spool's counts, which the writes keep: a scrape reads
// one key and the first envelope, whatever the size of the queue.
type queueCollector struct {
	sp  *spool.Spool
	now func() time.Time
}

var (
	queueDesc = prometheus.NewDesc("outbox_queue_messages",
		"Messages in the queue, by state (pending: not tried yet; deferred: tried and due again; held).", []string{"state"}, nil)
	oldestDesc = prometheus.NewDesc("outbox_queue_oldest_message_age_seconds",
		"Seconds since the oldest queued message arrived; 0 when the queue is empty.", nil, nil)
)

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueDesc
	ch <- oldestDesc
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	n, err := c.sp.Counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(queueDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n.Pending), "pending")
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n.Deferred), "deferred")
	ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(n.Held), "held")
	_, oldest, err := c.sp.Oldest()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(oldestDesc, err)
		return
	}
	age := 0.0
	if !oldest.IsZero() {
		age = max(c.now().Sub(oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}

// failureCollector reports the AUTH and TLS failures the upstream
// targets counted, and their OAuth2 token fetches where they have any.
// A reload that rebuilds a target starts its counts again, which
// Prometheus reads as a counter reset.
type failureCollector struct {
	auth, tls, tokens *prometheus.Desc
	targets           func() map[string]upstream.Target
}

// tokenCounter is what a target that fetches OAuth2 tokens reports.
type tokenCounter interface {
	TokenRefreshes() (ok, failed uint64, oauth bool)
}

func (c failureCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.auth
	ch <- c.tls
	ch <- c.tokens
}

func (c failureCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range c.targets() {
		if f, ok := t.(failureCounter); ok {
			n := f.Failures()
			ch <- prometheus.MustNewConstMetric(c.auth, prometheus.CounterValue, float64(n.Auth), name)
			ch <- prometheus.MustNewConstMetric(c.tls, prometheus.CounterValue, float64(n.TLS), name)
		}
		if tc, ok := t.(tokenCounter); ok {
			good, failed, oauth := tc.TokenRefreshes()
			if !oauth {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.CounterValue, float64(good), name, "ok")
			ch <- prometheus.MustNewConstMetric(c.tokens, prometheus.CounterValue, float64(failed), name, "failed")
		}
	}
}

// pausedCollector reports outbox_upstream_paused for the targets in force
// at each scrape, so upstreams a reload adds or rebuilds are reported too.
type pausedCollector struct {
	desc    *prometheus.Desc
	targets func() map[string]upstream.Target
}

func (c pausedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c pausedCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range c.targets() {
		p, ok := t.(pauser)
		if !ok {
			continue
		}
		v := 0.0
		if _, _, paused := p.Paused(); paused {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, name)
	}
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) accept(source string) {
	if m != nil {
		m.accepted.WithLabelValues(source).Inc()
	}
}

func (m *metrics) attempt(name string, took time.Duration, out upstream.Outcome) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(name).Observe(took.Seconds())
	for _, r := range out.Results {
		m.results.WithLabelValues(name, r.Class.String()).Inc()
	}
}

// final counts a recipient that failed for good; reason is the status of
// its delivery line (bounced or expired).
func (m *metrics) final(reason string) {
	if m != nil {
		m.bounced.WithLabelValues(reason).Inc()
	}
}

// tagDelivery counts one delivery line of a tagged message.
func (m *metrics) tagDelivery(tags map[string]string, status string) {
	if m == nil {
		return
	}
	for name, v := range tags {
		m.tagged.WithLabelValues(name, m.tagValues.label(name, v), status).Inc()
	}
}

func (m *metrics) notice(action dsn.Action) {
	if m != nil {
		m.notices.WithLabelValues(string(action)).Inc()
	}
}
