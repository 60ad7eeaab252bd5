package server_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

const goodEvent = `{"time":"2026-01-02T03:04:05Z","actor":{"id":"alice"},"action":"login"}`

// testServer is a server on real TLS over 127.0.0.1 with a fresh log.
type testServer struct {
	url  string
	dir  string
	keys *ledger.Keys
	log  *ledger.Log
	pki  *tlsconf.PKI
	srv  *server.Server
	stop func() // stops the server and closes the log; idempotent
}

func newTestServer(t *testing.T, maxBody int64) *testServer {
	return startTestServer(t, t.TempDir(), func(c *server.Config) { c.MaxBodyBytes = maxBody })
}

// startTestServer serves the log in dir, configured by edit.
func startTestServer(t *testing.T, dir string, edit func(*server.Config)) *testServer {
	t.Helper()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	pki, err := tlsconf.OpenPKI(tlsconf.PKIConfig{Dir: filepath.Join(dir, "pki")})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := tlsconf.NewRevocationList(tlsconf.RevocationConfig{File: filepath.Join(dir, "pki", tlsconf.RevokedFile)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Log: l, LogDir: filepath.Join(dir, "log"), ClientCAs: pki.CAPool(), Revoked: revoked.Revoked}
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
	var once sync.Once
	stop := func() {
		once.Do(func() {
			servertest.Shutdown(t, hs)
			if err := <-done; !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("ServeTLS = %v, want ErrServerClosed", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &testServer{url: "https://" + ln.Addr().String(), dir: dir, keys: keys, log: l, pki: pki, srv: srv, stop: stop}
}

// client returns a client presenting a certificate for name with role, or
// none if role is empty.
func (ts *testServer) client(t *testing.T, name string, role tlsconf.Role) *http.Client {
	t.Helper()
	tc := &tls.Config{RootCAs: ts.pki.CAPool()}
	if role != "" {
		certPEM, keyPEM, err := ts.pki.IssueClient(name, role)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, c *http.Client, method, url, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

type appendReply struct {
	Entries []struct {
		Index    int64  `json:"index"`
		LeafHash []byte `json:"leaf_hash"`
	} `json:"entries"`
}

func TestAppendAndProve(t *testing.T) {
	ts := newTestServer(t, 0)
	writer := ts.client(t, "producer-1", tlsconf.RoleWriter)
	reader := ts.client(t, "auditor-1", tlsconf.RoleReader)

	var hashes [][]byte
	for _, body := range []string{goodEvent, "[" + goodEvent + "," + goodEvent + ",\n" + goodEvent + "]"} {
		r := do(t, writer, "POST", ts.url+"/v1/events", "application/json; charset=utf-8", body)
		if r.status != http.StatusOK {
			t.Fatalf("POST = %d %s, want 200", r.status, r.body)
		}
		var reply appendReply
		if err := json.Unmarshal(r.body, &reply); err != nil {
			t.Fatal(err)
		}
		for _, e := range reply.Entries {
			if e.Index != int64(len(hashes)) {
				t.Errorf("index = %d, want %d", e.Index, len(hashes))
			}
			hashes = append(hashes, e.LeafHash)
		}
	}
	if len(hashes) != 4 {
		t.Fatalf("got %d entries, want 4", len(hashes))
	}

	for i := range hashes {
		r := do(t, reader, "GET", fmt.Sprintf("%s/v1/events/%d", ts.url, i), "", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET event %d = %d %s", i, r.status, r.body)
		}
		var got struct {
			Index          int64           `json:"index"`
			Leaf           json.RawMessage `json:"leaf"`
			Checkpoint     string          `json:"checkpoint"`
			InclusionProof []string        `json:"inclusion_proof"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		leafHash := tlog.RecordHash(got.Leaf)
		if !bytes.Equal(leafHash[:], hashes[i]) {
			t.Errorf("entry %d: leaf hash %x, want %x as acknowledged", i, leafHash, hashes[i])
		}
		env, err := event.DecodeLeaf(got.Leaf)
		if err != nil {
			t.Fatal(err)
		}
		if env.Source != "producer-1" || env.Via != "json" || env.Event.Actor.ID != "alice" {
			t.Errorf("envelope = %+v, want source producer-1 via json actor alice", env)
		}
		n, err := note.Open([]byte(got.Checkpoint), note.VerifierList(ts.keys.Verifier))
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		cp, err := c2sp.ParseCheckpoint([]byte(n.Text))
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size <= int64(i) {
			t.Fatalf("checkpoint size %d does not cover entry %d", cp.Size, i)
		}
		proof := make(tlog.RecordProof, len(got.InclusionProof))
		for j, s := range got.InclusionProof {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(b) != tlog.HashSize {
				t.Fatalf("proof hash %q: %v", s, err)
			}
			copy(proof[j][:], b)
		}
		if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, int64(i), leafHash); err != nil {
			t.Errorf("entry %d: CheckRecord: %v", i, err)
		}
	}

	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/v1/events/1000", http.StatusNotFound},
		{"/v1/events/abc", http.StatusBadRequest},
		{"/v1/events/-1", http.StatusBadRequest},
	} {
		if r := do(t, reader, "GET", ts.url+tt.path, "", ""); r.status != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.path, r.status, r.body, tt.status)
		}
	}
}

func TestReadPaths(t *testing.T) {
	ts := newTestServer(t, 0)
	writer := ts.client(t, "producer-1", tlsconf.RoleWriter)
	reader := ts.client(t, "reader-1", tlsconf.RoleReader)
	if r := do(t, writer, "POST", ts.url+"/v1/events", "application/json", "["+goodEvent+","+goodEvent+","+goodEvent+"]"); r.status != http.StatusOK {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	if _, err := ts.log.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}

	r := do(t, reader, "GET", ts.url+"/checkpoint", "", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "text/plain; charset=utf-8" || r.header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("GET /checkpoint = %d %q %q, want 200 text/plain no-cache", r.status, r.header.Get("Content-Type"), r.header.Get("Cache-Control"))
	}
	n, err := note.Open(r.body, note.VerifierList(ts.keys.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 3 {
		t.Fatalf("checkpoint size = %d, want 3", cp.Size)
	}

	r = do(t, reader, "GET", ts.url+"/tile/0/000.p/3", "", "")
	if r.status != http.StatusOK || len(r.body) != 3*tlog.HashSize || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET level-0 tile = %d, %d bytes, %q", r.status, len(r.body), r.header.Get("Content-Type"))
	}
	var leaves [3]tlog.Hash
	for i := range leaves {
		copy(leaves[i][:], r.body[i*tlog.HashSize:])
	}
	if root := tlog.NodeHash(tlog.NodeHash(leaves[0], leaves[1]), leaves[2]); root != cp.Hash {
		t.Errorf("root from tile = %v, checkpoint has %v", root, cp.Hash)
	}
	r = do(t, reader, "GET", ts.url+"/tile/entries/000.p/3", "", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET entry bundle = %d %s", r.status, r.body)
	}
	entries, _, err := c2sp.ParseBundle(r.body)
	if err != nil || len(entries) != 3 {
		t.Fatalf("bundle: %d entries, %v; want 3", len(entries), err)
	}
	if got := tlog.RecordHash(entries[2]); got != leaves[2] {
		t.Errorf("bundle entry 2 hashes to %v, tile has %v", got, leaves[2])
	}

	for _, tt := range []struct {
		path   string
		status int
	}{
		{"/tile/0/000", http.StatusNotFound},
		{"/tile/0/000.p/2", http.StatusNotFound},
		{"/tile/0/0", http.StatusBadRequest},
		{"/tile/../keys/log.key", http.StatusNotFound}, // the mux redirects to /keys/log.key
		{"/tile/entries/x000/001", http.StatusBadRequest},
	} {
		if r := do(t, reader, "GET", ts.url+tt.path, "", ""); r.status != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.path, r.status, r.body, tt.status)
		}
	}
}

// A large entry's body is served at /large/<sha256>, which its leaf names.
func TestLargeBody(t *testing.T) {
	ts := newTestServer(t, 0)
	reader := ts.client(t, "reader-1", tlsconf.RoleReader)
	body := bytes.Repeat([]byte("b"), 100_000)
	if _, err := ts.log.Append(t.Context(), body); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	r := do(t, reader, "GET", fmt.Sprintf("%s/large/%x", ts.url, sum), "", "")
	if r.status != http.StatusOK || !bytes.Equal(r.body, body) {
		t.Fatalf("GET /large/<sum> = %d, %d bytes; want 200 and the body", r.status, len(r.body))
	}
	for _, tt := range []struct {
		path   string
		status int
	}{
		{fmt.Sprintf("/large/%x", sha256.Sum256([]byte("other"))), http.StatusNotFound},
		{"/large/" + strings.Repeat("A", 64), http.StatusBadRequest},
		{"/large/abc", http.StatusBadRequest},
	} {
		if r := do(t, reader, "GET", ts.url+tt.path, "", ""); r.status != tt.status {
			t.Errorf("GET %s = %d %s, want %d", tt.path, r.status, r.body, tt.status)
		}
	}
	if r := do(t, ts.client(t, "producer-1", tlsconf.RoleWriter), "GET", fmt.Sprintf("%s/large/%x", ts.url, sum), "", ""); r.status != http.StatusForbidden {
		t.Errorf("a writer's GET /large = %d, want 403", r.status)
	}
}

func TestRefused(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), func(c *server.Config) { c.MaxBodyBytes, c.MaxEvents = 4096, 5 })
	writer := ts.client(t, "producer-1", tlsconf.RoleWriter)
	reader := ts.client(t, "reader-1", tlsconf.RoleReader)
	anonymous := ts.client(t, "", "")
	for _, tt := range []struct {
		name        string
		client      *http.Client
		method      string
		path        string
		contentType string
		body        string
		status      int
		msg         string
	}{
		{"no certificate", anonymous, "POST", "/v1/events", "application/json", goodEvent, 401, "no client certificate or bearer token"},
		{"no certificate read", anonymous, "GET", "/checkpoint", "", "", 401, "no client certificate or bearer token"},
		{"reader posts", reader, "POST", "/v1/events", "application/json", goodEvent, 403, "role reader"},
		{"writer reads", writer, "GET", "/v1/events/0", "", "", 403, "role writer"},
		{"writer reads tiles", writer, "GET", "/checkpoint", "", "", 403, "role writer"},
		{"missing field", writer, "POST", "/v1/events", "application/json", `{"time":"2026-01-02T03:04:05Z","actor":{},"action":"login"}`, 400, "actor.id: required"},
		{"bad element", writer, "POST", "/v1/events", "application/json", "[" + goodEvent + `,{"time":"x","actor":{"id":"a"},"action":"b"}]`, 400, "[1] time:"},
		{"malformed", writer, "POST", "/v1/events", "application/json", `{"time":`, 400, ""},
		{"malformed array", writer, "POST", "/v1/events", "application/json", `[{}`, 400, "malformed JSON array"},
		{"empty array", writer, "POST", "/v1/events", "application/json", `[]`, 400, "empty array"},
		{"empty body", writer, "POST", "/v1/events", "application/json", ``, 400, "empty body"},
		{"wrong type", writer, "POST", "/v1/events", "application/json", `{"time":"2026-01-02T03:04:05Z","actor":{"id":7},"action":"login"}`, 400, "actor.id"},
		{"unknown field", writer, "POST", "/v1/events", "application/json", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"login","colour":1}`, 400, "colour"},
		{"invalid UTF-8", writer, "POST", "/v1/events", "application/json", "{\"time\":\"2026-01-02T03:04:05Z\",\"actor\":{\"id\":\"a\xff\"},\"action\":\"login\"}", 400, "UTF-8"},
		{"too deep", writer, "POST", "/v1/events", "application/json", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"login","details":` + strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40) + "}", 400, "deeper"},
		{"too many events", writer, "POST", "/v1/events", "application/json", "[" + strings.Repeat(goodEvent+",", 5) + goodEvent + "]", 413, "at most 5"},
		{"too many lines", writer, "POST", "/v1/events", "application/x-ndjson", strings.Repeat(goodEvent+"\n", 6), 413, "more than 5"},
		{"wrong content type", writer, "POST", "/v1/events", "text/plain", goodEvent, 415, "application/json"},
		{"no content type", writer, "POST", "/v1/events", "", goodEvent, 415, "application/json"},
		{"too large", writer, "POST", "/v1/events", "application/json", "[" + strings.Repeat(goodEvent+",", 60) + goodEvent + "]", 413, "larger than 4096"},
		{"wrong method", writer, "PUT", "/v1/events", "application/json", goodEvent, 405, "use POST"},
		{"no such endpoint", writer, "GET", "/v2/things", "", "", 404, "no such endpoint"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.client, tt.method, ts.url+tt.path, tt.contentType, tt.body)
			if r.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, r.status, r.body, tt.status)
			}
			if r.header.Get("Strict-Transport-Security") == "" {
				t.Errorf("no Strict-Transport-Security header")
			}
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
				t.Fatalf("body %q is not a JSON error: %v", r.body, err)
			}
			if !strings.Contains(e.Error, tt.msg) {
				t.Errorf("error = %q, want it to contain %q", e.Error, tt.msg)
			}
		})
	}
	if n := ts.log.Size(); n != 0 {
		t.Errorf("log size after refused requests = %d, want 0", n)
	}
	// The server still serves the next good request.
	if r := do(t, writer, "POST", ts.url+"/v1/events", "application/json", goodEvent); r.status != 200 {
		t.Errorf("good POST after refusals = %d %s", r.status, r.body)
	}
}

func TestOldTLSRefused(t *testing.T) {
	ts := newTestServer(t, 0)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(ts.url, "https://"), &tls.Config{
			RootCAs: ts.pki.CAPool(), MinVersion: v, MaxVersion: v,
		})
		if err == nil {
			conn.Close()
			t.Errorf("handshake with %s succeeded, want refused", tls.VersionName(v))
		}
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(ts.url, "https://"), &tls.Config{RootCAs: ts.pki.CAPool(), MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS 1.2 handshake: %v", err)
	}
	conn.Close()
}
