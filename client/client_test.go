package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/tlsconf"
)

const ev1 = `{"time":"2026-11-29T08:00:00Z","actor":{"id":"alice"},"action":"login"}`
const ev2 = `{"time":"2026-11-29T08:00:01Z","actor":{"id":"bob"},"action":"logout"}`

func TestAppendGet(t *testing.T) {
	f := newFakeServer(t)
	f.add(`{"other":1}`, `{"other":2}`)
	c := f.client(func(c *Config) { c.Token = "s3cret" })
	got, err := c.Append(t.Context(), json.RawMessage(ev1), json.RawMessage(ev2))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Index != 2 || got[1].Index != 3 || got[0].Receipt != nil {
		t.Fatalf("Append = %+v, want indices 2 and 3 without receipts", got)
	}
	post := f.requests[len(f.requests)-1]
	if post.proto != 2 {
		t.Errorf("POST went over HTTP/%d, want HTTP/2", post.proto)
	}
	if k := post.header.Get("Idempotency-Key"); len(k) < 20 {
		t.Errorf("Idempotency-Key = %q, want a random key", k)
	}
	if a := post.header.Get("Authorization"); a != "Bearer s3cret" {
		t.Errorf("Authorization = %q, want the bearer token", a)
	}

	for i, want := range []string{ev1, ev2} {
		e, err := c.Get(t.Context(), got[i].Index)
		if err != nil {
			t.Fatalf("Get(%d): %v", got[i].Index, err)
		}
		if wantLeaf := `{"source":"fake","event":` + want + `}`; string(e.Leaf) != wantLeaf {
			t.Errorf("Get(%d).Leaf = %s, want %s", e.Index, e.Leaf, wantLeaf)
		}
		if e.LeafHash != got[i].LeafHash || e.LeafHash != tlog.RecordHash(e.Leaf) {
			t.Errorf("Get(%d).LeafHash = %s, want %s, the hash Append returned", e.Index, e.LeafHash, got[i].LeafHash)
		}
		if e.Checkpoint.Size != 4 || e.Checkpoint.Origin != f.origin {
			t.Errorf("Get(%d).Checkpoint = %v, want size 4 of %s", e.Index, e.Checkpoint, f.origin)
		}
		p, err := c2sp.ParseProof(e.Receipt())
		if err != nil || p.Index != e.Index || string(p.Checkpoint) != string(e.Checkpoint.Note) {
			t.Errorf("Receipt() = %q (%v), want a tlog-proof of entry %d", e.Receipt(), err, e.Index)
		}
	}

	_, err = c.Get(t.Context(), 4)
	var serr *Error
	if !errors.As(err, &serr) || serr.StatusCode != http.StatusNotFound || serr.Message != "no entry 4: the log has 4" {
		t.Errorf("Get(4) = %v, want a 404 *Error with the server's message", err)
	}
}

func TestAppendWithProof(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(nil)
	got, err := c.AppendWithProof(t.Context(), json.RawMessage(ev1), json.RawMessage(ev2))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		p, err := c2sp.ParseProof(a.Receipt)
		if err != nil || p.Index != a.Index || a.Checkpoint == nil || a.Checkpoint.Size != 2 {
			t.Errorf("receipt of %d = %q, %v; checkpoint %v", a.Index, a.Receipt, err, a.Checkpoint)
		}
	}
	if q := f.requests[len(f.requests)-1].query; q != "wait=proof" {
		t.Errorf("query = %q, want wait=proof", q)
	}

	// A receipt whose proof is for another leaf fails.
	f.tamper = func(path string, body map[string]any) {
		e := body["entries"].([]any)[0].(map[string]any)
		e["leaf_hash"] = make([]byte, 32)
	}
	if _, err := c.AppendWithProof(t.Context(), json.RawMessage(ev1)); !errors.Is(err, ErrVerification) {
		t.Errorf("AppendWithProof with a bad receipt = %v, want ErrVerification", err)
	}

	noKey := f.client(func(c *Config) { c.VerifierKey = "" })
	if _, err := noKey.AppendWithProof(t.Context(), json.RawMessage(ev1)); !errors.Is(err, ErrNoVerifierKey) {
		t.Errorf("AppendWithProof without a key = %v, want ErrNoVerifierKey", err)
	}
}

func TestAppendRejectsBadJSON(t *testing.T) {
	c := newFakeServer(t).client(nil)
	if _, err := c.Append(t.Context(), json.RawMessage(ev1), json.RawMessage(`{"a":`)); err == nil || err.Error() != "event 1 is not valid JSON" {
		t.Errorf("Append(bad JSON) = %v", err)
	}
	if _, err := c.Append(t.Context()); err == nil {
		t.Error("Append() with no events succeeded")
	}
}

// TestGetVerifies checks that every lie a server can tell about an entry is
// caught.
func TestGetVerifies(t *testing.T) {
	other := newFakeServer(t)
	tests := []struct {
		name   string
		tamper func(body map[string]any)
		want   string
	}{
		{"leaf changed", func(b map[string]any) { b["leaf"] = json.RawMessage(`{"source":"fake","event":{"forged":true}}`) }, "is not in the tree of size 3"},
		{"proof hash changed", func(b map[string]any) { b["inclusion_proof"].([]string)[0] = strings.Repeat("A", 43) + "=" }, "is not in the tree of size 3"},
		{"proof shortened", func(b map[string]any) { b["inclusion_proof"] = b["inclusion_proof"].([]string)[1:] }, "is not in the tree"},
		{"proof not base64", func(b map[string]any) { b["inclusion_proof"] = []string{"!!"} }, "bad hash"},
		{"another entry", func(b map[string]any) { b["index"] = 0 }, "asked for entry 1, the server sent another"},
		{"checkpoint of another key", func(b map[string]any) { b["checkpoint"] = string(other.checkpoint(other.log, 0)) }, "not signed by the log's key"},
		{"checkpoint text edited", func(b map[string]any) {
			b["checkpoint"] = strings.Replace(b["checkpoint"].(string), "\n3\n", "\n4\n", 1)
		}, "signature by the log's key " + "example.test/trail/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeServer(t)
			f.add(`{"n":0}`, `{"n":1}`, `{"n":2}`)
			f.tamper = func(path string, body map[string]any) { tt.tamper(body) }
			_, err := f.client(nil).Get(t.Context(), 1)
			if !errors.Is(err, ErrVerification) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Get = %v, want ErrVerification saying %q", err, tt.want)
			}
		})
	}
}

func TestRetries(t *testing.T) {
	f := newFakeServer(t)
	c := f.client(nil)
	var waits []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }

	f.statuses, f.retryAfter = []int{503, 429}, "2"
	got, err := c.Append(t.Context(), json.RawMessage(ev1))
	if err != nil || len(got) != 1 {
		t.Fatalf("Append after 503, 429 = %v, %v", got, err)
	}
	if diff := cmp.Diff([]time.Duration{2 * time.Second, 2 * time.Second}, waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
	keys := map[string]bool{}
	for _, r := range f.requests {
		keys[r.header.Get("Idempotency-Key")] = true
	}
	if len(f.requests) != 3 || len(keys) != 1 {
		t.Errorf("%d requests with %d keys, want 3 with one key", len(f.requests), len(keys))
	}

	// Without Retry-After: 1 s, then 2 s; after MaxRetries, the *Error.
	waits, f.retryAfter, f.statuses = nil, "", []int{503, 503, 503, 503}
	_, err = c.Checkpoint(t.Context())
	var serr *Error
	if !errors.As(err, &serr) || serr.StatusCode != 503 || serr.Message != "injected failure" {
		t.Errorf("Checkpoint after 4 503s = %v, want the *Error", err)
	}
	if diff := cmp.Diff([]time.Duration{time.Second, 2 * time.Second, 4 * time.Second}, waits); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}

	// A wait longer than MaxRetryWait is not waited for.
	waits, f.retryAfter, f.statuses = nil, "3600", []int{429}
	_, err = c.Checkpoint(t.Context())
	if !errors.As(err, &serr) || serr.RetryAfter != time.Hour || len(waits) != 0 {
		t.Errorf("Checkpoint after 429 Retry-After 3600 = %v after waits %v, want the *Error at once", err, waits)
	}

	// Other errors are not retried.
	waits, f.statuses = nil, []int{403}
	_, err = c.Append(t.Context(), json.RawMessage(ev1))
	if !errors.As(err, &serr) || serr.StatusCode != 403 || len(waits) != 0 {
		t.Errorf("Append after 403 = %v after waits %v", err, waits)
	}
	if want := "server refused POST /v1/events: injected failure (403 Forbidden)"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"7", 7 * time.Second},
		{"-3", 0},
		{"soon", 0},
		{"Sun, 29 Nov 2026 08:00:30 GMT", 30 * time.Second},
		{"Sun, 29 Nov 2026 07:00:00 GMT", 0},
	} {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestNewChecks(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"plain http", Config{URL: "http://127.0.0.1:8443"}, "want https://"},
		{"no host", Config{URL: "https:///x"}, "want https://"},
		{"query", Config{URL: "https://h/?a=b"}, "no query"},
		{"bad key", Config{URL: "https://h", VerifierKey: "nope"}, "bad verifier key"},
		{"missing CA", Config{URL: "https://h", CAFile: filepath.Join(dir, "none.crt")}, "couldn't read CA file"},
		{"cert without key", Config{URL: "https://h", CertFile: "a.crt"}, "go together"},
		{"http client and TLS", Config{URL: "https://h", HTTPClient: http.DefaultClient, CAFile: "ca.crt"}, "must be empty"},
		{"token with newline", Config{URL: "https://h", Token: "a\nb"}, "more than one line"},
	} {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// TestClientCertificate checks that the certificate files of trail cert
// issue are presented, and that a path prefix in the URL is kept.
func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.IssueClient("alice", tlsconf.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "alice.crt"), filepath.Join(dir, "alice.key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)

	f := newFakeServer(t)
	f.add(`{}`)
	c := f.client(func(c *Config) { c.CertFile, c.KeyFile = certFile, keyFile })
	if _, err := c.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	if cn := f.requests[0].clientCN; cn != "alice" {
		t.Errorf("client certificate CN = %q, want alice", cn)
	}

	c = f.client(func(c *Config) { c.URL += "/prefix/" })
	c.Checkpoint(t.Context())
	if p := f.requests[1].path; p != "/prefix/checkpoint" {
		t.Errorf("path = %q, want /prefix/checkpoint", p)
	}
}

func TestTransportErrors(t *testing.T) {
	f := newFakeServer(t)
	c, err := New(Config{URL: f.srv.URL}) // the system roots don't know the test CA
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(t.Context(), json.RawMessage(ev1)); err == nil || !strings.Contains(err.Error(), "not signed by a trusted CA") {
		t.Errorf("Append to an untrusted server = %v", err)
	}
	addr := f.srv.Listener.Addr().String()
	f.srv.Close()
	c = f.client(nil)
	if _, err := c.Checkpoint(t.Context()); err == nil || err.Error() != "couldn't connect to "+addr+": connection refused (is trail serve running?)" {
		t.Errorf("Checkpoint from a stopped server = %v", err)
	}
}
