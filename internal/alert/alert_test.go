package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// receiver is an HTTPS webhook receiver on 127.0.0.1 that fails its first
// failures requests with status and checks every signature.
type receiver struct {
	t        *testing.T
	secret   []byte
	status   int
	failures int

	mu     sync.Mutex
	posts  int
	bodies [][]byte
	got    chan struct{}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, err := strconv.ParseInt(r.Header.Get(TimestampHeader), 10, 64)
	if err != nil || !CheckSignature(rc.secret, ts, body, r.Header.Get(SignatureHeader)) {
		rc.t.Errorf("bad signature %q at %q", r.Header.Get(SignatureHeader), r.Header.Get(TimestampHeader))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.mu.Lock()
	rc.posts++
	fail := rc.posts <= rc.failures
	if !fail {
		rc.bodies = append(rc.bodies, body)
	}
	rc.mu.Unlock()
	if fail {
		w.WriteHeader(rc.status)
		return
	}
	rc.got <- struct{}{}
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.posts
}

func startReceiver(t *testing.T, status, failures int) (*receiver, Webhook) {
	rc := &receiver{t: t, secret: []byte("s3cret"), status: status, failures: failures, got: make(chan struct{}, 16)}
	srv := httptest.NewUnstartedServer(rc)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("receiver at %s, want 127.0.0.1", srv.URL)
	}
	return rc, Webhook{URL: srv.URL, Secret: rc.secret, Client: srv.Client()}
}

func TestRaiseReachesEveryChannel(t *testing.T) {
	rc, hook := startReceiver(t, http.StatusServiceUnavailable, 2)
	reg := prometheus.NewRegistry()
	var logBuf bytes.Buffer
	var mu sync.Mutex
	var recorded []Alert
	m, err := New(Config{
		Origin:     "example.com/log",
		Webhooks:   []Webhook{hook},
		Registerer: reg,
		Logger:     slog.New(slog.NewTextHandler(&syncWriter{w: &logBuf, mu: &mu}, nil)),
		Backoff:    10 * time.Millisecond,
		Record: func(_ context.Context, a Alert) error {
			mu.Lock()
			recorded = append(recorded, a)
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := Alert{Kind: "log.damage", Summary: "entry 7 differs from its hash in tile/0/000", Where: "log/tile/entries/000.p/9", Details: map[string]any{"index": 7}}
	m.Raise(a)
	if u := m.Unhealthy(); len(u) != 1 || u[0].Kind != "log.damage" || u[0].Severity != Critical {
		t.Errorf("Unhealthy() = %+v, want the damage alert as critical", u)
	}
	select {
	case <-rc.got:
	case <-time.After(10 * time.Second):
		t.Fatal("webhook not delivered after retries")
	}
	m.Close()
	rc.mu.Lock()
	if rc.posts != 3 {
		t.Errorf("webhook got %d posts, want 3 (two 503s, then 200)", rc.posts)
	}
	var sent struct {
		Log   string `json:"log"`
		Alert Alert  `json:"alert"`
	}
	if err := json.Unmarshal(rc.bodies[0], &sent); err != nil {
		t.Fatal(err)
	}
	rc.mu.Unlock()
	if sent.Log != "example.com/log" || sent.Alert.Where != a.Where || sent.Alert.Summary != a.Summary {
		t.Errorf("webhook body = %+v", sent)
	}
	mu.Lock()
	if len(recorded) != 1 || recorded[0].Where != a.Where {
		t.Errorf("recorded %+v, want the alert once", recorded)
	}
	if !strings.Contains(logBuf.String(), "level=ERROR") || !strings.Contains(logBuf.String(), "entry 7 differs") {
		t.Errorf("log = %q, want an ERROR line with the summary", logBuf.String())
	}
	mu.Unlock()
	if got := value(m.total.WithLabelValues("log.damage", "critical")); got != 1 {
		t.Errorf("trail_alerts_total = %v, want 1", got)
	}
	if got := value(m.active.WithLabelValues("critical")); got != 1 {
		t.Errorf("trail_alerts_active = %v, want 1", got)
	}
}

func TestRepeatIsCountedNotResent(t *testing.T) {
	rc, hook := startReceiver(t, 0, 0)
	m, err := New(Config{Webhooks: []Webhook{hook}})
	if err != nil {
		t.Fatal(err)
	}
	a := Alert{Kind: "certificate.expiry", Severity: Warning, Summary: "expires in 3 days", Where: "CN=x"}
	m.Raise(a)
	m.Raise(a)
	m.Raise(Alert{Kind: "certificate.expiry", Severity: Warning, Summary: "expires in 3 days", Where: "CN=y"})
	m.Close()
	if rc.count() != 2 {
		t.Errorf("webhook got %d posts, want 2: one per distinct alert", rc.posts)
	}
	if got := value(m.total.WithLabelValues("certificate.expiry", "warning")); got != 3 {
		t.Errorf("trail_alerts_total = %v, want 3", got)
	}
	if u := m.Unhealthy(); len(u) != 0 {
		t.Errorf("warnings made the server unhealthy: %+v", u)
	}
}

func TestClientErrorIsNotRetried(t *testing.T) {
	rc, hook := startReceiver(t, http.StatusBadRequest, 100)
	m, err := New(Config{Webhooks: []Webhook{hook}, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m.Raise(Alert{Kind: "k", Summary: "s"})
	m.Close()
	if rc.count() != 1 {
		t.Errorf("webhook got %d posts, want 1: a 400 is not retried", rc.posts)
	}
}

func TestCloseStopsRetries(t *testing.T) {
	rc, hook := startReceiver(t, http.StatusServiceUnavailable, 1000)
	m, err := New(Config{Webhooks: []Webhook{hook}, Backoff: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	m.Raise(Alert{Kind: "k", Summary: "s"})
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for an hour-long backoff")
	}
	if rc.count() != 1 {
		t.Errorf("webhook got %d posts, want 1", rc.posts)
	}
}

func TestSecretRequired(t *testing.T) {
	if _, err := New(Config{Webhooks: []Webhook{{URL: "https://127.0.0.1:1/"}}}); err == nil {
		t.Fatal("New accepted a webhook without a secret")
	}
}

func TestSignature(t *testing.T) {
	body := []byte(`{"alert":{}}`)
	sig := Sign([]byte("k"), 1700000000, body)
	if !CheckSignature([]byte("k"), 1700000000, body, sig) {
		t.Fatal("signature does not check")
	}
	for _, bad := range []struct {
		key  string
		ts   int64
		body string
	}{{"K", 1700000000, string(body)}, {"k", 1700000001, string(body)}, {"k", 1700000000, `{"alert":{ }}`}} {
		if CheckSignature([]byte(bad.key), bad.ts, []byte(bad.body), sig) {
			t.Errorf("signature checks with key %q, time %d, body %q", bad.key, bad.ts, bad.body)
		}
	}
}

type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func value(c prometheus.Metric) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
