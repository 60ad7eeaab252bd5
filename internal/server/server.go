// Package server is trail's HTTP API: appending events, reading them back
// with inclusion proofs, and the C2SP tlog-tiles read paths, each behind a
// client-certificate identity and its role.
//
// Endpoints:
//
//	POST /v1/events               writer, admin    one event, a JSON array of events or NDJSON
//	GET  /v1/events/{index}       reader, auditor, admin
//	GET  /v1/proofs/consistency   reader, auditor, admin   ?from=N[&to=M]
//	GET  /checkpoint              reader, auditor, admin
//	GET  /tile/{path...}          reader, auditor, admin
//	GET  /large/{sha256}          reader, auditor, admin   the body of an entry over 64 KiB
//
// Producer protocol adapters add their endpoints with HandleIngest (see
// internal/ingest). docs/api.md documents them all.
//
// Every error is a JSON object {"error": "..."}. Every response carries
// Strict-Transport-Security: the server is only ever reached over TLS.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxEvents    = 10_000
	// DefaultRateLimit is the requests per second each identity may make;
	// DefaultRateBurst how many it may make at once. They are meant to stop
	// a runaway producer, not to shape normal load.
	DefaultRateLimit = 50_000
	DefaultRateBurst = 100_000
)

// hsts is sent on every response: two years, the preload list's minimum.
const hsts = "max-age=63072000"

// Config configures New.
type Config struct {
	// Log is the open log to append to and read from. Required. The server
	// never closes it.
	Log *ledger.Log
	// LogDir is the C2SP tlog-tiles directory to serve /checkpoint and
	// /tile/ from: <data dir>/log. Required.
	LogDir string
	// ClientCAs verifies client certificates; nil accepts none. Serve over
	// TLSConfig(...): the server verifies certificates itself.
	ClientCAs *x509.CertPool
	// Revoked reports whether a client certificate's serial number is
	// revoked; checked on every request. Optional.
	Revoked func(serial *big.Int) bool
	// Tokens resolves bearer tokens; nil accepts none.
	Tokens TokenLookup
	// PublicRead serves /checkpoint and /tile/ to anyone, as a static C2SP
	// tlog-tiles mirror would; by default they need the reader role.
	PublicRead bool
	// MaxBodyBytes bounds a request body, in bytes; a larger one gets 413.
	// Default DefaultMaxBodyBytes (16 MiB).
	MaxBodyBytes int64
	// MaxEvents bounds the events in one request; more get 413.
	// Default DefaultMaxEvents.
	MaxEvents int
	// RateLimit is the requests per second each identity may make, and
	// RateBurst how many at once; over it they get 429. Defaults
	// DefaultRateLimit and DefaultRateBurst; a negative RateLimit disables
	// the limit.
	RateLimit float64
	RateBurst int
	// IdempotencyKeys bounds the idempotency keys and event ids remembered;
	// the oldest are forgotten first. Default DefaultIdempotencyKeys.
	IdempotencyKeys int
	// IdempotencyScan is how many of the newest entries New reads to
	// remember their keys across a restart. Default DefaultIdempotencyScan;
	// negative reads none.
	IdempotencyScan int64
	// Logger receives server errors (5xx). Default: discard.
	Logger *slog.Logger
	// Now is the clock that stamps Envelope.Received. Default: time.Now.
	Now func() time.Time
	// Health, if not nil, lists what makes the server unhealthy (critical
	// alerts: damage found in the log, say), one line each; while it lists
	// anything, /healthz answers 503 with them. Reads keep being served, so
	// the damage can be examined.
	Health func() []string
	// Checkpoint, if not nil, gives the checkpoint GET /checkpoint serves
	// instead of <LogDir>/checkpoint: the newest one with its witnesses'
	// cosignatures (internal/witness). While it returns nil (no
	// checkpoint has reached the witness quorum yet), /checkpoint answers
	// 503.
	Checkpoint func() []byte
}

// Server serves the API. It is an http.Handler, safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	dedup   *dedup
	metrics *metrics
	mux     *http.ServeMux
	methods map[string][]string // the methods routed on each path, for 405s

	limitMu  sync.Mutex
	limiters map[string]*rate.Limiter
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil || cfg.LogDir == "" {
		return nil, errors.New("server: Log and LogDir are required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = max(DefaultRateBurst, int(cfg.RateLimit))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyKeys <= 0 {
		cfg.IdempotencyKeys = DefaultIdempotencyKeys
	}
	if cfg.IdempotencyScan == 0 {
		cfg.IdempotencyScan = DefaultIdempotencyScan
	}
	s := &Server{cfg: cfg, log: cfg.Logger, dedup: newDedup(cfg.IdempotencyKeys), limiters: make(map[string]*rate.Limiter)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.metrics = newMetrics(s)
	if cfg.IdempotencyScan > 0 {
		if err := s.dedup.recall(context.Background(), cfg.Log, cfg.IdempotencyScan); err != nil {
			return nil, err
		}
	}
	readers, writers := Readers, Writers
	tiles := func(h http.HandlerFunc) http.Handler {
		if cfg.PublicRead {
			return h
		}
		return s.require(readers, h)
	}
	mux := http.NewServeMux()
	s.mux = mux
	route := s.route
	route("POST /v1/events", s.require(writers, s.postEvents))
	route("GET /v1/events/{index}", s.require(readers, s.getEvent))
	route("GET /v1/proofs/consistency", s.require(readers, s.getConsistency))
	route("GET /checkpoint", tiles(s.getCheckpoint))
	route("GET /tile/{path...}", tiles(s.getTile))
	route("GET /large/{sum}", tiles(s.getLarge))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	s.handler = http.MaxBytesHandler(mux, cfg.MaxBodyBytes)
	return s, nil
}

// route serves h at pattern ("METHOD /path"), counting its requests; other
// methods on the path get a JSON 405 rather than the mux's text.
// A path may be routed for several methods (POST and GET /v1/events).
func (s *Server) route(pattern string, h http.Handler) {
	s.mux.Handle(pattern, s.counted(pattern, h))
	method, path, _ := strings.Cut(pattern, " ")
	if s.methods == nil {
		s.methods = map[string][]string{}
	}
	s.methods[path] = append(s.methods[path], method)
	if len(s.methods[path]) > 1 {
		return // the 405 handler below is registered, and reads the list
	}
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		methods := s.methods[path]
		allow := strings.Join(methods, ", ")
		if slices.Contains(methods, "GET") && !slices.Contains(methods, "HEAD") {
			allow += ", HEAD"
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s: use %s", r.Method, path, strings.Join(methods, " or ")))
	})
}

// HandleIngest serves a producer protocol's endpoint at pattern, such as
// "POST /v1/logs", for the writer and admin roles: h runs only for an
// authenticated writer (Identity(r) names it) within the server's limits,
// and appends with Ingest. Call it before serving.
func (s *Server) HandleIngest(pattern string, h http.HandlerFunc) {
	s.route(pattern, s.require(Writers, h))
}

// Handle serves h at pattern, such as "GET /v1/search", for the given
// roles: h runs only for an authenticated identity with one of them
// (Identity(r) names it), within the server's rate limit, and its requests
// are counted. Call it before serving.
func (s *Server) Handle(pattern string, roles []tlsconf.Role, h http.HandlerFunc) {
	s.route(pattern, s.require(roles, h))
}

// Role sets for Handle.
var (
	Readers  = []tlsconf.Role{tlsconf.RoleReader, tlsconf.RoleAuditor, tlsconf.RoleAdmin}
	Auditors = []tlsconf.Role{tlsconf.RoleAuditor, tlsconf.RoleAdmin}
	Writers  = []tlsconf.Role{tlsconf.RoleWriter, tlsconf.RoleAdmin}
	Admins   = []tlsconf.Role{tlsconf.RoleAdmin}
)

// allow applies the per-identity rate limit.
func (s *Server) allow(id tlsconf.Identity) bool {
	if s.cfg.RateLimit < 0 {
		return true
	}
	s.limitMu.Lock()
	l := s.limiters[id.Name]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(s.cfg.RateLimit), s.cfg.RateBurst)
		s.limiters[id.Name] = l
	}
	s.limitMu.Unlock()
	if !l.Allow() {
		s.metrics.limited.Inc()
		return false
	}
	return true
}

// ServeHTTP sets the security headers and dispatches r.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	s.handler.ServeHTTP(w, r)
}

// securityHeaders sets the headers every response carries: HSTS, and for
// an API that serves only JSON, text and octets, no sniffing, no framing,
// no referrer and no active content.
func securityHeaders(h http.Header) {
	h.Set("Strict-Transport-Security", hsts)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

// NewHTTPServer returns an http.Server for h over tlsConfig with every
// timeout set. Serve it with ServeTLS(ln, "", "") or ListenAndServeTLS("",
// ""): the certificates come from tlsConfig.
func NewHTTPServer(addr string, h http.Handler, tlsConfig *tls.Config, logger *slog.Logger) *http.Server {
	hs := &http.Server{
		Addr:              addr,
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 10 * time.Second,
		// A 16 MiB body over a slow link needs time; a minute is generous.
		ReadTimeout:    time.Minute,
		WriteTimeout:   time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ConnContext:    connContext,
	}
	if logger != nil {
		hs.ErrorLog = log.New(errorLogWriter{logger}, "", 0)
	}
	return hs
}

// errorLogWriter passes http.Server's error lines to a slog.Logger. Failed
// TLS handshakes go at debug level: scanners, load balancers' probes and
// clients refused for an old protocol make them by the hundred, and each
// says nothing an operator can act on.
type errorLogWriter struct{ log *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	if strings.HasPrefix(msg, "http: TLS handshake error") {
		level = slog.LevelDebug
	}
	w.log.Log(context.Background(), level, msg)
	return len(p), nil
}

type ctxKey struct{}

// Identity returns the authenticated identity of a request that a handler
// of HandleIngest serves.
func Identity(r *http.Request) tlsconf.Identity { return identity(r) }

func identity(r *http.Request) tlsconf.Identity {
	id, _ := r.Context().Value(ctxKey{}).(tlsconf.Identity)
	return id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	// Leaves are passed through as json.RawMessage: escaping would change
	// bytes that clients hash.
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
