package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics. They count; they never carry
// event content or secrets.
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec // by route and status code
	events       prometheus.Counter
	replayed     prometheus.Counter
	authFailures prometheus.Counter
	limited      prometheus.Counter
	appendTime   prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trail_http_requests_total",
			Help: "HTTP requests by route and status code. Fetches of /checkpoint and /tile/ are counted here rather than logged as events.",
		}, []string{"route", "code"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_events_appended_total",
			Help: "Entries appended to the log and acknowledged, self-audit events included.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_idempotent_replays_total",
			Help: "Append requests answered from the idempotency memory, appending nothing.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_auth_failures_total",
			Help: "Requests refused with 401.",
		}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trail_rate_limited_total",
			Help: "Requests refused with 429.",
		}),
		appendTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trail_append_seconds",
			Help:    "Time from a parsed append request to its entries being durable.",
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 14), // 0.1 ms to 0.8 s
		}),
	}
	m.reg.MustRegister(m.requests, m.events, m.replayed, m.authFailures, m.limited, m.appendTime,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trail_log_size",
			Help: "Entries in the log.",
		}, func() float64 { return float64(s.cfg.Log.Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "trail_checkpoint_size",
			Help: "Tree size of the newest signed checkpoint.",
		}, func() float64 {
			if cp := s.cfg.Log.Latest(); cp != nil {
				return float64(cp.Size)
			}
			return 0
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry returns the registry of the server's metrics, for callers that
// add their own (certificate expiry, say).
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }

// OpsHandler serves the operations endpoints, for a listener of their own:
//
//	GET /healthz   200 "ok" while the server is healthy; 503 with a JSON
//	               body {"status": "unhealthy", "problems": [...]} while
//	               Config.Health lists problems (an alert was raised)
//	GET /metrics   Prometheus metrics
func (s *Server) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Health != nil {
			if problems := s.cfg.Health(); len(problems) > 0 {
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unhealthy", "problems": problems})
				return
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		mux.ServeHTTP(w, r)
	})
}

// statusRecorder captures the status code for the request counter.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// counted wraps h to count its requests under route.
func (s *Server) counted(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	})
}

func since(t time.Time) float64 { return time.Since(t).Seconds() }
