package bench_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/bench"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// benchServer is a trail server on real TLS over 127.0.0.1, wired as trail
// serve wires it, with a fresh log in a temporary directory.
type benchServer struct {
	url string
	dir string
	log *ledger.Log
	pki *tlsconf.PKI
}

func startServer(t *testing.T, edit func(*server.Config)) *benchServer {
	t.Helper()
	dir := t.TempDir()
	l := openLog(t, dir)
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Log: l, LogDir: filepath.Join(dir, "log"), ClientCAs: pki.CAPool()}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsconf.ServerConfig(tlsconf.Intermediate, tlsconf.StaticCertificate{Certificate: pki.ServerCertificate()}, pki.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := server.NewHTTPServer("", srv, server.TLSConfig(tc), slog.New(slog.DiscardHandler))
	done := make(chan error, 1)
	go func() { done <- hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("ServeTLS = %v, want ErrServerClosed", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &benchServer{url: "https://" + ln.Addr().String(), dir: dir, log: l, pki: pki}
}

// clientTLS writes a certificate for name with role (none if role is
// empty) and loads it as bench -server does.
func (s *benchServer) clientTLS(t *testing.T, name string, role tlsconf.Role) *tls.Config {
	t.Helper()
	ca := filepath.Join(s.dir, "pki", tlsconf.CACertFile)
	if role == "" {
		tc, err := bench.ClientTLS(ca, "", "")
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	certPEM, keyPEM, err := s.pki.IssueClient(name, role)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := bench.ClientTLS(ca, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// checkLog checks that the log holds exactly want entries, each an event
// from source.
func (s *benchServer) checkLog(t *testing.T, want int, source string) {
	t.Helper()
	if got := s.log.Size(); got != int64(want) {
		t.Fatalf("log size = %d, want %d (acknowledged + warm-up)", got, want)
	}
	for i := range int64(want) {
		leaf, err := s.log.ReadEntry(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		env, err := event.DecodeLeaf(leaf)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if env.Source != source || env.Event.Action == "" {
			t.Fatalf("entry %d: source %q, action %q; want source %q and an action", i, env.Source, env.Event.Action, source)
		}
	}
}

func TestRunHTTP(t *testing.T) {
	s := startServer(t, nil)
	tc := s.clientTLS(t, "bench-writer", tlsconf.RoleWriter)
	for _, tt := range []struct {
		name                  string
		n, batch, clients, cn int
		http1                 bool
		wantConns, wantReqs   int
	}{
		{"batches with a shorter last", 250, 7, 3, 0, false, 1, 36},
		{"single events over two connections", 40, 1, 4, 2, false, 2, 40},
		{"one request", 5, 10, 2, 0, false, 1, 1},
		{"HTTP/1.1, a connection per client", 60, 1, 3, 0, true, 3, 60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := int(s.log.Size())
			res, err := bench.RunHTTP(t.Context(), bench.HTTPConfig{
				URL: s.url, N: tt.n, Batch: tt.batch, Clients: tt.clients, Conns: tt.cn, HTTP1: tt.http1, TLS: tc, Warmup: -1,
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 || res.Acknowledged != tt.n || res.Requests != tt.wantReqs || res.Conns != tt.wantConns {
				t.Errorf("errors %d %q, acknowledged %d, requests %d, conns %d; want 0, %d, %d, %d",
					res.Errors, res.FirstErrors, res.Acknowledged, res.Requests, res.Conns, tt.n, tt.wantReqs, tt.wantConns)
			}
			// Without a warm-up duration, each client sends one request.
			if res.WarmupRequests != tt.clients || res.WarmupEvents != tt.clients*min(tt.batch, tt.n) {
				t.Errorf("warm-up: %d requests, %d events; want %d, %d", res.WarmupRequests, res.WarmupEvents, tt.clients, tt.clients*min(tt.batch, tt.n))
			}
			proto := "HTTP/2.0"
			if tt.http1 {
				proto = "HTTP/1.1"
			}
			if res.Protocol != proto || res.TLSVersion != "TLS 1.3" {
				t.Errorf("protocol %q over %q, want %s over TLS 1.3", res.Protocol, res.TLSVersion, proto)
			}
			if !(0 < res.P50Ms && res.P50Ms <= res.P99Ms && res.P99Ms <= res.P999Ms && res.P999Ms <= res.MaxMs) {
				t.Errorf("latencies p50 %v, p99 %v, p99.9 %v, max %v: want 0 < p50 <= p99 <= p99.9 <= max", res.P50Ms, res.P99Ms, res.P999Ms, res.MaxMs)
			}
			if res.EventsPerSec <= 0 || res.DurationS <= 0 || res.EventBytes < 300 || res.EventBytes > 600 {
				t.Errorf("events/s %v, duration %v s, event size %v: want positive rates and about 420 bytes", res.EventsPerSec, res.DurationS, res.EventBytes)
			}
			s.checkLog(t, before+res.Acknowledged+res.WarmupEvents, "bench-writer")

			var text bytes.Buffer
			if err := res.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"events/s", "p99.9", proto + ", TLS 1.3", "errors  "} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("WriteText output lacks %q:\n%s", want, text.String())
				}
			}
		})
	}
}

func TestRunHTTPWarmup(t *testing.T) {
	s := startServer(t, nil)
	res, err := bench.RunHTTP(t.Context(), bench.HTTPConfig{
		URL: s.url, N: 10, Batch: 2, Clients: 2, TLS: s.clientTLS(t, "w", tlsconf.RoleWriter), Warmup: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.WarmupS < 0.05 || res.WarmupRequests < 2 || res.WarmupEvents != 2*res.WarmupRequests {
		t.Errorf("warm-up of %v s, %d requests, %d events; want at least 0.05 s, 2 requests, 2 events each", res.WarmupS, res.WarmupRequests, res.WarmupEvents)
	}
	s.checkLog(t, res.Acknowledged+res.WarmupEvents, "w")
}

// fakeTokens resolves one bearer token.
type fakeTokens struct {
	token string
	id    tlsconf.Identity
}

func (f fakeTokens) Lookup(token string) (tlsconf.Identity, bool) {
	return f.id, token == f.token
}

func TestRunHTTPToken(t *testing.T) {
	s := startServer(t, func(c *server.Config) {
		c.Tokens = fakeTokens{"s3cret", tlsconf.Identity{Name: "ci-pipeline", Role: tlsconf.RoleWriter}}
	})
	res, err := bench.RunHTTP(t.Context(), bench.HTTPConfig{
		URL: s.url, N: 6, Batch: 3, Clients: 1, TLS: s.clientTLS(t, "", ""), Token: "s3cret", Warmup: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 0 || res.Acknowledged != 6 {
		t.Errorf("errors %d %q, acknowledged %d; want 0, 6", res.Errors, res.FirstErrors, res.Acknowledged)
	}
	s.checkLog(t, 9, "ci-pipeline")
}

func TestRunHTTPRefused(t *testing.T) {
	s := startServer(t, func(c *server.Config) { c.MaxEvents = 5 })
	for _, tt := range []struct {
		name  string
		tls   *tls.Config
		batch int
		want  string
	}{
		{"reader", s.clientTLS(t, "r", tlsconf.RoleReader), 1, "warm-up: 403 Forbidden: r has role reader, which may not do this"},
		{"no credentials", s.clientTLS(t, "", ""), 1, "warm-up: 401 Unauthorized: no client certificate or bearer token"},
		{"too many events", s.clientTLS(t, "w", tlsconf.RoleWriter), 6, "warm-up: 413 Request Entity Too Large: 6 events in one request, at most 5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := bench.RunHTTP(t.Context(), bench.HTTPConfig{URL: s.url, N: 12, Batch: tt.batch, Clients: 2, TLS: tt.tls, Warmup: -1})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("RunHTTP = %v, want an error starting %q", err, tt.want)
			}
		})
	}
	if n := s.log.Size(); n != 0 {
		t.Errorf("log size after refused runs = %d, want 0", n)
	}
	_, err := bench.RunHTTP(t.Context(), bench.HTTPConfig{URL: "https://127.0.0.1:1", N: 1, Batch: 1, Clients: 1, TLS: &tls.Config{}, Warmup: -1})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("RunHTTP with no server = %v, want connection refused", err)
	}
}

// TestRunHTTPErrors checks that requests refused after the warm-up are
// counted, reported with the server's message, and not counted as
// acknowledged, and that the run stops after MaxErrors.
func TestRunHTTPErrors(t *testing.T) {
	s := startServer(t, func(c *server.Config) { c.RateLimit, c.RateBurst = 0.001, 4 })
	res, err := bench.RunHTTP(t.Context(), bench.HTTPConfig{
		URL: s.url, N: 100, Batch: 1, Clients: 1, TLS: s.clientTLS(t, "w", tlsconf.RoleWriter), Warmup: -1, MaxErrors: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Acknowledged != 3 || res.Errors != 3 || res.Requests != 100 {
		t.Errorf("acknowledged %d, errors %d of %d requests; want 3, 3 of 100 (1 warm-up + 3 within the burst, then stopped after 3 errors)",
			res.Acknowledged, res.Errors, res.Requests)
	}
	if len(res.FirstErrors) != 3 || !strings.HasPrefix(res.FirstErrors[0], "429 Too Many Requests: rate limit of") {
		t.Errorf("first errors = %q, want three 429s with the server's message", res.FirstErrors)
	}
	if !res.StoppedEarly || res.RequestsPerSec*res.DurationS > 3.5 {
		t.Errorf("stopped early %v, %v requests/s over %v s; want true and 3 requests", res.StoppedEarly, res.RequestsPerSec, res.DurationS)
	}
	var text bytes.Buffer
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\nerrors +3 +of 100 requests \(stopped early: too many errors\)\n  429 Too Many Requests: rate limit of`).MatchString(text.String()) {
		t.Errorf("WriteText output lacks the errors:\n%s", text.String())
	}
	s.checkLog(t, 4, "w")
}

func TestHTTPValidate(t *testing.T) {
	tc := &tls.Config{}
	for _, tt := range []struct {
		cfg  bench.HTTPConfig
		flag string
	}{
		{bench.HTTPConfig{N: 1, Batch: 1, Clients: 1, TLS: tc}, "-server"},
		{bench.HTTPConfig{URL: "http://localhost:8443", N: 1, Batch: 1, Clients: 1, TLS: tc}, "-server"},
		{bench.HTTPConfig{URL: "localhost:8443", N: 1, Batch: 1, Clients: 1, TLS: tc}, "-server"},
		{bench.HTTPConfig{URL: "https://h", N: 0, Batch: 1, Clients: 1, TLS: tc}, "-n"},
		{bench.HTTPConfig{URL: "https://h", N: 1, Batch: 0, Clients: 1, TLS: tc}, "-batch"},
		{bench.HTTPConfig{URL: "https://h", N: 1, Batch: 1, Clients: 0, TLS: tc}, "-c"},
		{bench.HTTPConfig{URL: "https://h", N: 1, Batch: 1, Clients: 1, Conns: -1, TLS: tc}, "-conns"},
		{bench.HTTPConfig{URL: "https://h", N: 1, Batch: 1, Clients: 4, Conns: 2, HTTP1: true, TLS: tc}, "-conns"},
	} {
		err := tt.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tt.flag+" ") && !strings.HasPrefix(err.Error(), tt.flag+":") {
			t.Errorf("Validate(%+v) = %v, want an error about %s", tt.cfg, err, tt.flag)
		}
	}
	if err := (&bench.HTTPConfig{URL: "https://h:1/prefix", N: 1, Batch: 1, Clients: 1, TLS: tc}).Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
}

func TestDefaultConns(t *testing.T) {
	for _, tt := range []struct{ clients, want int }{{1, 1}, {8, 1}, {9, 2}, {64, 8}, {1000, 8}} {
		if got := bench.DefaultConns(tt.clients); got != tt.want {
			t.Errorf("DefaultConns(%d) = %d, want %d", tt.clients, got, tt.want)
		}
	}
}

// TestRunHTTPCancel checks that a cancelled run returns promptly with the
// context's error.
func TestRunHTTPCancel(t *testing.T) {
	s := startServer(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(200 * time.Millisecond)
		cancel()
	})
	start := time.Now()
	_, err := bench.RunHTTP(ctx, bench.HTTPConfig{
		URL: s.url, N: 1_000_000, Batch: 1, Clients: 2, TLS: s.clientTLS(t, "w", tlsconf.RoleWriter), Warmup: -1,
	})
	wg.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RunHTTP after cancel = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("RunHTTP took %v after cancel", d)
	}
}
