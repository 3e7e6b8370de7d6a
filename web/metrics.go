package web

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/cocoonhost/cocoon/host"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of their own so that
// several servers (tests) do not collide.
type metrics struct {
	registry       *prometheus.Registry
	requests       *prometheus.CounterVec   // route, status
	latency        *prometheus.HistogramVec // route
	stages         *prometheus.HistogramVec // stage
	moduleFailures *prometheus.CounterVec   // stage, kind
	tokens         *prometheus.CounterVec   // direction
	generations    prometheus.Gauge
	waiting        prometheus.Gauge
	moduleTime     prometheus.Histogram
	quotes         *prometheus.CounterVec // kind, result
}

// Kinds and results of the attestation quote counter.
const (
	quoteBoot        = "boot"
	quotePipeline    = "pipeline"
	quoteServed      = "served"
	quoteFailed      = "failed"
	quoteRateLimited = "rate_limited"
)

// Stages of the stage latency histogram. Stream chunks pass through post modules while
// the backend generates, so their time counts under "backend"; "post" is what runs
// after the backend is done (cocoon_end, or cocoon_post).
const (
	stagePre        = "pre"
	stageFirstToken = "backend_first_token"
	stageBackend    = "backend"
	stagePost       = "post"
)

// newMetrics registers the server's metrics, the Go runtime's and the process's, and
// gauges of the modules and pipelines in store and registry (read at each scrape).
func newMetrics(store *host.Store, registry *host.Registry) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cocoon_http_request_duration_seconds", Help: "HTTP request latency by route, to the end of the body.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"route"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cocoon_stage_duration_seconds",
			Help:    "Time of each stage of a chat completion: pre modules, backend time to first token, backend, post modules.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12),
		}, []string{"stage"}),
		moduleFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_module_failures_total", Help: "Requests failed or rejected by a module, by stage and kind (the SPEC.md §9 code).",
		}, []string{"stage", "kind"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_tokens_total", Help: "Tokens in (prompt) and out (completion), as the backend counts them.",
		}, []string{"direction"}),
		generations: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cocoon_generations_in_flight", Help: "Chat completions holding a backend slot.",
		}),
		moduleTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "cocoon_module_time_seconds",
			Help:    "Wall time a request spent in module code, all its modules' instantiations and calls: what compute is billed on.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cocoon_generations_waiting", Help: "Chat completions waiting for a backend slot.",
		}),
		quotes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cocoon_attestation_quotes_total", Help: "Requests for fresh attestation evidence, by kind (boot, pipeline) and result (served, failed: the quote failed, rate_limited: refused 429).",
		}, []string{"kind", "result"}),
	}
	for _, kind := range []string{quoteBoot, quotePipeline} {
		for _, result := range []string{quoteServed, quoteFailed, quoteRateLimited} {
			m.quotes.WithLabelValues(kind, result)
		}
	}
	m.registry.MustRegister(m.requests, m.latency, m.stages, m.moduleFailures, m.tokens, m.generations, m.waiting, m.quotes, m.moduleTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cocoon_modules", Help: "Compiled modules in the module store."},
			func() float64 { return float64(len(store.List())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cocoon_pipelines", Help: "Pipelines registered."},
			func() float64 { return float64(len(registry.List())) }),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

// instrument counts every request by its chi route pattern (never the raw path, which
// holds pipeline ids without bound) and status, and observes its latency.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := routeOf(r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
