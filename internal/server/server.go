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
//
// Every error is a JSON object {"error": "..."}. Every response carries
// Strict-Transport-Security: the server is only ever reached over TLS.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxEvents    = 10_000
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
	// MaxBodyBytes bounds a request body, in bytes; a larger one gets 413.
	// Default DefaultMaxBodyBytes (16 MiB).
	MaxBodyBytes int64
	// MaxEvents bounds the events in one request; more get 413.
	// Default DefaultMaxEvents.
	MaxEvents int
	// Logger receives server errors (5xx). Default: discard.
	Logger *slog.Logger
	// IdempotencyKeys bounds the idempotency keys and event ids remembered;
	// the oldest are forgotten first. Default DefaultIdempotencyKeys.
	IdempotencyKeys int
	// IdempotencyScan is how many of the newest entries New reads to
	// remember their keys across a restart. Default DefaultIdempotencyScan;
	// negative reads none.
	IdempotencyScan int64
	// Now is the clock that stamps Envelope.Received. Default: time.Now.
	Now func() time.Time
}

// Server serves the API. It is an http.Handler, safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler
	dedup   *dedup
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.IdempotencyKeys <= 0 {
		cfg.IdempotencyKeys = DefaultIdempotencyKeys
	}
	if cfg.IdempotencyScan == 0 {
		cfg.IdempotencyScan = DefaultIdempotencyScan
	}
	s := &Server{cfg: cfg, log: cfg.Logger, dedup: newDedup(cfg.IdempotencyKeys)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if cfg.IdempotencyScan > 0 {
		if err := s.dedup.recall(context.Background(), cfg.Log, cfg.IdempotencyScan); err != nil {
			return nil, err
		}
	}
	readers := []tlsconf.Role{tlsconf.RoleReader, tlsconf.RoleAuditor, tlsconf.RoleAdmin}
	writers := []tlsconf.Role{tlsconf.RoleWriter, tlsconf.RoleAdmin}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/events", s.require(writers, s.postEvents))
	mux.Handle("GET /v1/events/{index}", s.require(readers, s.getEvent))
	mux.Handle("GET /v1/proofs/consistency", s.require(readers, s.getConsistency))
	mux.Handle("GET /checkpoint", s.require(readers, s.getCheckpoint))
	mux.Handle("GET /tile/{path...}", s.require(readers, s.getTile))
	s.handler = http.MaxBytesHandler(mux, cfg.MaxBodyBytes)
	return s, nil
}

// ServeHTTP sets the HSTS header and dispatches r.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Strict-Transport-Security", hsts)
	s.handler.ServeHTTP(w, r)
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
	}
	if logger != nil {
		hs.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	}
	return hs
}

type ctxKey struct{}

// require admits requests whose verified client certificate has one of
// roles: no identity is 401, another role 403.
func (s *Server) require(roles []tlsconf.Role, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeError(w, http.StatusUnauthorized, "a client certificate is required")
			return
		}
		id, err := tlsconf.ClientIdentity(*r.TLS)
		if err != nil {
			writeError(w, http.StatusUnauthorized, "no valid identity: "+err.Error())
			return
		}
		if !slices.Contains(roles, id.Role) {
			writeError(w, http.StatusForbidden, "role "+string(id.Role)+" may not do this")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

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
