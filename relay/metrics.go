package relay

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outbox-mta/outbox/spool"
	"github.com/outbox-mta/outbox/upstream"
)

// metrics are the daemon's Prometheus metrics, served on the admin socket
// at /metrics and on admin.metrics_address when set. A nil *metrics
// records nothing, so parts built without a Relay (tests) need none.
type metrics struct {
	reg *prometheus.Registry
	// accepted counts messages stored, by how they came: smtp or maildrop.
	accepted *prometheus.CounterVec
	// results counts per-recipient delivery results by upstream and
	// result: sent, deferred or failed.
	results *prometheus.CounterVec
	// duration is how long one delivery attempt to an upstream took.
	duration *prometheus.HistogramVec
	// notices counts delivery status notifications queued, by action.
	notices *prometheus.CounterVec
}

// newMetrics builds the metrics; targets returns the upstream targets in
// force, which a reload may replace.
func newMetrics(sp *spool.Spool, targets func() map[string]upstream.Target) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_accepted_messages_total", Help: "Messages stored in the spool, by source (smtp, maildrop).",
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
	m.reg.MustRegister(m.accepted, m.results, m.duration, m.notices)
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "outbox_queue_messages", Help: "Messages in the queue.",
		}, func() float64 {
			n, _ := sp.Count()
			return float64(n)
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
			"1 while the upstream is paused after a 421 or repeated connection failures.", []string{"upstream"}, nil),
		targets: targets,
	})
	return m
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
		p, ok := t.(interface {
			Paused() (time.Time, string, bool)
		})
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

func (m *metrics) notice(action string) {
	if m != nil {
		m.notices.WithLabelValues(action).Inc()
	}
}
