// Package servertest starts a real trail server for tests: a fresh log in
// a temporary directory, the PKI, and the API on TLS over 127.0.0.1, wired
// as trail serve wires them. It is for tests only.
package servertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// Options configures Start. The zero value is a plain server.
type Options struct {
	// Register adds endpoints (a producer adapter's) to the server.
	Register func(*server.Server)
	// Wrap, if not nil, wraps the server's handler, for injecting faults.
	Wrap func(http.Handler) http.Handler
	// Logger receives the server's log lines. Default: discard.
	Logger *slog.Logger
}

// Server is a running test server, stopped when the test ends.
type Server struct {
	URL    string
	Dir    string
	Log    *ledger.Log
	PKI    *tlsconf.PKI
	Server *server.Server
}

// Start starts a server for the test tb.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	dir := tb.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		tb.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		tb.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		tb.Fatal(err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv, err := server.New(server.Config{Log: l, LogDir: filepath.Join(dir, "log"), ClientCAs: pki.CAPool(), Logger: logger})
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Register != nil {
		opts.Register(srv)
	}
	tc, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var h http.Handler = srv
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	hs := server.NewHTTPServer("", h, server.TLSConfig(tc), logger)
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	tb.Cleanup(func() {
		Shutdown(tb, hs)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			tb.Errorf("ServeTLS = %v", err)
		}
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return &Server{URL: "https://" + ln.Addr().String(), Dir: dir, Log: l, PKI: pki, Server: srv}
}

// Shutdown shuts hs down gracefully, failing the test if a handler of
// trail's is still running when that takes too long. An HTTP/2 connection
// that net/http registers after Shutdown's one sweep of GOAWAYs keeps
// Shutdown waiting until its context ends (golang/go#81153, open in Go
// 1.26); with only such idle connections left, the server is closed, and
// the test goes on.
func Shutdown(tb testing.TB, hs *http.Server) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := hs.Shutdown(ctx)
	if err == nil {
		return
	}
	var stacks bytes.Buffer
	pprof.Lookup("goroutine").WriteTo(&stacks, 1)
	if strings.Contains(stacks.String(), "trailaudit/trail/internal/server.") {
		tb.Errorf("Shutdown: %v, with a handler still running; goroutines:\n%s", err, stacks.String())
		hs.Close()
		return
	}
	tb.Logf("Shutdown: %v, with only idle HTTP/2 connections left (golang/go#81153): closing them", err)
	if err := hs.Close(); err != nil {
		tb.Errorf("Close: %v", err)
	}
}

// Certificate issues a client certificate for name with role.
func (s *Server) Certificate(tb testing.TB, name string, role tlsconf.Role) tls.Certificate {
	tb.Helper()
	certPEM, keyPEM, err := s.PKI.IssueClient(name, role)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	return cert
}

// Client returns an HTTP/2 client presenting a certificate for name with
// role.
func (s *Server) Client(tb testing.TB, name string, role tlsconf.Role) *http.Client {
	tb.Helper()
	cert := s.Certificate(tb, name, role)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.PKI.CAPool(), Certificates: []tls.Certificate{cert}}, ForceAttemptHTTP2: true}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// Entries decodes every entry of the log.
func (s *Server) Entries(tb testing.TB) []event.Envelope {
	tb.Helper()
	leaves, err := s.Log.ReadEntries(context.Background(), 0, s.Log.Size())
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]event.Envelope, len(leaves))
	for i, leaf := range leaves {
		body, err := s.Log.Body(context.Background(), leaf)
		if err != nil {
			tb.Fatal(err)
		}
		if out[i], err = event.DecodeLeaf(body); err != nil {
			tb.Fatalf("entry %d: %v", i, err)
		}
	}
	return out
}

// Buffer is a bytes.Buffer safe for concurrent writers: what a logger or a
// child process writes while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Contains reports whether sub was written.
func (s *Buffer) Contains(sub string) bool { return strings.Contains(s.String(), sub) }
