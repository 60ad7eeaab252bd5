package server_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
	"github.com/trailaudit/trail/internal/token"
)

// clientWith returns a client presenting cert (if any) and sending the
// bearer token (if any).
func clientWith(t *testing.T, ts *testServer, cert *tls.Certificate, bearer string) *http.Client {
	tc := &tls.Config{RootCAs: ts.pki.CAPool()}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	var rt http.RoundTripper = &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(rt.(*http.Transport).CloseIdleConnections)
	if bearer != "" {
		rt = bearerTransport{rt, bearer}
	}
	return &http.Client{Transport: rt, Timeout: 10 * time.Second}
}

type bearerTransport struct {
	http.RoundTripper
	token string
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.RoundTripper.RoundTrip(r)
}

func issue(t *testing.T, pki *tlsconf.PKI, name string, role tlsconf.Role) *tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := pki.IssueClient(name, role)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

func errorOf(t *testing.T, r response) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error", r.body)
	}
	return e.Error
}

func TestAuthentication(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	secret, err := token.Create(filepath.Join(dir, "pki", token.File), "ci-bot", tlsconf.RoleWriter, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := token.Open(filepath.Join(dir, "pki", token.File), nil)
	if err != nil {
		t.Fatal(err)
	}
	var clock time.Time // zero: time.Now
	ts := startTestServer(t, dir, func(c *server.Config) {
		c.Tokens = tokens
		c.Now = func() time.Time {
			if clock.IsZero() {
				return time.Now()
			}
			return clock
		}
	})
	foreign, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	writerCert := issue(t, ts.pki, "producer-1", tlsconf.RoleWriter)
	url := ts.url + "/v1/events"

	// A token authenticates; its identity is the envelope's source.
	r := post(t, clientWith(t, ts, nil, secret), url, "application/json", "", ev("a"))
	if r.status != 200 {
		t.Fatalf("POST with token = %d %s", r.status, r.body)
	}
	leaf, err := ts.log.ReadEntry(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if env, err := event.DecodeLeaf(leaf); err != nil || env.Source != "ci-bot" {
		t.Errorf("source = %q (%v), want ci-bot", env.Source, err)
	}

	for _, tt := range []struct {
		name   string
		client *http.Client
		msg    string
	}{
		{"wrong token", clientWith(t, ts, nil, secret+"x"), "unknown or revoked bearer token"},
		{"not a bearer", clientWith(t, ts, nil, ""), "no client certificate or bearer token"},
		{"both", clientWith(t, ts, writerCert, secret), "not both"},
		{"foreign CA", clientWith(t, ts, issue(t, foreign, "mallory", tlsconf.RoleAdmin), ""), "not issued by this server's CA"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, tt.client, url, "application/json", "", ev("a"))
			if r.status != 401 || !strings.Contains(errorOf(t, r), tt.msg) {
				t.Errorf("POST = %d %s, want 401 containing %q", r.status, r.body, tt.msg)
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// Expired: the same certificate, on a connection made once the server's
	// clock is past its expiry.
	clock = time.Now().AddDate(20, 0, 0)
	r = post(t, clientWith(t, ts, writerCert, ""), url, "application/json", "", ev("a"))
	if r.status != 401 || !strings.Contains(errorOf(t, r), "expired at") {
		t.Errorf("expired certificate: %d %s, want 401 expired", r.status, r.body)
	}
	clock = time.Time{}

	// Revoked: takes effect on an open connection at its next request.
	c := clientWith(t, ts, writerCert, "")
	if r := post(t, c, url, "application/json", "", ev("a")); r.status != 200 {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	serial := tlsconf.SerialString(writerCert.Leaf.SerialNumber)
	if err := tlsconf.WriteRevocations(filepath.Join(dir, "pki", tlsconf.RevokedFile), []tlsconf.Revocation{{Serial: serial, Name: "producer-1", Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := post(t, c, url, "application/json", "", ev("a"))
		if r.status == 401 {
			if msg := errorOf(t, r); !strings.Contains(msg, "is revoked") {
				t.Errorf("revoked: %s", msg)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked certificate still accepted after 5 s: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRateLimit(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), func(c *server.Config) { c.RateLimit, c.RateBurst = 1, 3 })
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	other := ts.client(t, "producer-2", tlsconf.RoleWriter)
	var limited response
	for range 10 {
		if r := post(t, w, ts.url+"/v1/events", "application/json", "", ev("a")); r.status == 429 {
			limited = r
			break
		}
	}
	if limited.status != 429 || limited.header.Get("Retry-After") == "" || !strings.Contains(errorOf(t, limited), "rate limit") {
		t.Fatalf("no 429 with Retry-After after a burst of 10: %+v", limited)
	}
	// Another identity has its own budget.
	if r := post(t, other, ts.url+"/v1/events", "application/json", "", ev("a")); r.status != 200 {
		t.Errorf("other identity = %d %s", r.status, r.body)
	}
}

func TestOpsAndSelfAudit(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), nil)
	srv := ts.srv
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	rd := ts.client(t, "reader-1", tlsconf.RoleReader)
	post(t, w, ts.url+"/v1/events", "application/json", "", ev("a"))
	if r := do(t, rd, "GET", ts.url+"/v1/events/0", "", ""); r.status != 200 {
		t.Fatalf("GET = %d %s", r.status, r.body)
	}
	// The read is entry 1, by the server, naming the reader.
	leaf, err := ts.log.ReadEntry(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	env, err := event.DecodeLeaf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	if env.Source != server.SelfSource || env.Event.Action != "trail.event.read" || env.Event.Actor.ID != "reader-1" || env.Event.Resource.ID != "0" {
		t.Errorf("self-audit entry = %s", leaf)
	}
	do(t, rd, "GET", ts.url+"/checkpoint", "", "")

	ops := httptest.NewServer(srv.OpsHandler())
	defer ops.Close()
	resp, err := http.Get(ops.URL + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(ops.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`trail_http_requests_total{code="200",route="GET /checkpoint"} 1`,
		`trail_http_requests_total{code="200",route="POST /v1/events"} 1`,
		"trail_events_appended_total 2",
		"trail_log_size 2",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
