package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
)

// memLog is a Merkle tree in memory.
type memLog struct {
	leaves [][]byte
	hashes []tlog.Hash // stored hashes, as tlog numbers them
}

func (m *memLog) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x >= int64(len(m.hashes)) {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = m.hashes[x]
		}
		return out, nil
	})
}

func (m *memLog) add(leaf []byte) int64 {
	n := int64(len(m.leaves))
	hs, err := tlog.StoredHashes(n, leaf, m.reader())
	if err != nil {
		panic(err)
	}
	m.hashes = append(m.hashes, hs...)
	m.leaves = append(m.leaves, leaf)
	return n
}

func (m *memLog) size() int64 { return int64(len(m.leaves)) }

// fakeServer serves a memLog with trail's API over TLS (HTTP/2), with faults
// to inject. Its fields after mu are guarded by mu.
type fakeServer struct {
	t      *testing.T
	srv    *httptest.Server
	signer note.Signer
	vkey   string
	origin string

	mu  sync.Mutex
	log *memLog
	// served, if >= 0, is the size of the checkpoint served instead of the
	// newest.
	served int64
	// statuses are answered, one per request, before serving normally.
	statuses   []int
	retryAfter string
	// tamper, if set, edits every JSON response body.
	tamper func(path string, body map[string]any)
	// requests records each request's method, path, and headers.
	requests []recorded
	keys     map[string][]int64
}

type recorded struct {
	method, path, query string
	header              http.Header
	proto               int
	clientCN            string
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	origin := "example.test/trail/" + rand.Text()[:8]
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, signer: signer, vkey: vkey, origin: origin, log: &memLog{}, served: -1, keys: map[string][]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/events", f.postEvents)
	mux.HandleFunc("GET /v1/events/{index}", f.getEvent)
	mux.HandleFunc("GET /v1/proofs/consistency", f.getConsistency)
	mux.HandleFunc("GET /checkpoint", f.getCheckpoint)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		rec := recorded{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header.Clone(), proto: r.ProtoMajor}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			rec.clientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		f.requests = append(f.requests, rec)
		if len(f.statuses) > 0 {
			status := f.statuses[0]
			f.statuses = f.statuses[1:]
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			f.writeError(w, status, "injected failure")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes that tests make fail
	f.srv.EnableHTTP2 = true
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// config returns a Config for a client of f.
func (f *fakeServer) config() Config {
	pool := f.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return Config{URL: f.srv.URL, RootCAs: pool, VerifierKey: f.vkey}
}

func (f *fakeServer) client(edit func(*Config)) *Client {
	f.t.Helper()
	cfg := f.config()
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	c.sleep = func(ctx context.Context, d time.Duration) error { return nil }
	return c
}

// add appends leaves directly, as if another producer had.
func (f *fakeServer) add(leaves ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range leaves {
		f.log.add([]byte(l))
	}
}

// checkpoint returns the signed checkpoint of the tree of size n of l.
func (f *fakeServer) checkpoint(l *memLog, n int64) []byte {
	h, err := tlog.TreeHash(n, l.reader())
	if err != nil {
		panic(err)
	}
	msg, err := note.Sign(&note.Note{Text: string(c2sp.Checkpoint{Origin: f.origin, Size: n, Hash: h}.Format())}, f.signer)
	if err != nil {
		panic(err)
	}
	return msg
}

func (f *fakeServer) servedSize() int64 {
	if f.served >= 0 {
		return f.served
	}
	return f.log.size()
}

func (f *fakeServer) writeJSON(w http.ResponseWriter, path string, v map[string]any) {
	if f.tamper != nil {
		f.tamper(path, v)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeServer) writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (f *fakeServer) postEvents(w http.ResponseWriter, r *http.Request) {
	var events []json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&events); err != nil {
		f.writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	key := r.Header.Get("Idempotency-Key")
	indices, ok := f.keys[key]
	if !ok || key == "" {
		for _, ev := range events {
			indices = append(indices, f.log.add(fmt.Appendf(nil, `{"source":"fake","event":%s}`, ev)))
		}
		f.keys[key] = indices
	}
	var cp []byte
	if r.URL.Query().Get("wait") == "proof" {
		cp = f.checkpoint(f.log, f.log.size())
	}
	var entries []any
	for _, i := range indices {
		e := map[string]any{"index": i, "leaf_hash": f.log.hashes[tlog.StoredHashIndex(0, i)][:]}
		if cp != nil {
			p, err := tlog.ProveRecord(f.log.size(), i, f.log.reader())
			if err != nil {
				panic(err)
			}
			e["proof"] = string(c2sp.Proof{Index: i, Hashes: p, Checkpoint: cp}.Format())
		}
		entries = append(entries, e)
	}
	f.writeJSON(w, r.URL.Path, map[string]any{"entries": entries})
}

func (f *fakeServer) getEvent(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	size := f.servedSize()
	if err != nil || i < 0 || i >= size {
		f.writeError(w, http.StatusNotFound, fmt.Sprintf("no entry %s: the log has %d", r.PathValue("index"), size))
		return
	}
	p, err := tlog.ProveRecord(size, i, f.log.reader())
	if err != nil {
		panic(err)
	}
	f.writeJSON(w, r.URL.Path, map[string]any{
		"index":           i,
		"leaf":            json.RawMessage(f.log.leaves[i]),
		"checkpoint":      string(f.checkpoint(f.log, size)),
		"inclusion_proof": encodeHashes(p),
	})
}

func (f *fakeServer) getConsistency(w http.ResponseWriter, r *http.Request) {
	from, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
	to, _ := strconv.ParseInt(r.URL.Query().Get("to"), 10, 64)
	if from < 1 || from > to || to > f.log.size() {
		f.writeError(w, http.StatusNotFound, "no such trees")
		return
	}
	p, err := tlog.ProveTree(to, from, f.log.reader())
	if err != nil {
		panic(err)
	}
	f.writeJSON(w, r.URL.Path, map[string]any{"from": from, "to": to, "proof": encodeHashes(p)})
}

func (f *fakeServer) getCheckpoint(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(f.checkpoint(f.log, f.servedSize()))
}

func encodeHashes(hs []tlog.Hash) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, base64.StdEncoding.EncodeToString(h[:]))
	}
	return out
}
