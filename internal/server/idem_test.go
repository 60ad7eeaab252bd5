package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// post sends body with the Idempotency-Key key (if not empty).
func post(t *testing.T, c *http.Client, url, contentType, key, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// indices returns the indices of a 200 reply, failing on any other.
func indices(t *testing.T, r response) []int64 {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s, want 200", r.status, r.body)
	}
	var reply appendReply
	if err := json.Unmarshal(r.body, &reply); err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, e := range reply.Entries {
		out = append(out, e.Index)
	}
	return out
}

func ev(actor string) string {
	return fmt.Sprintf(`{"time":"2026-01-02T03:04:05Z","actor":{"id":%q},"action":"login"}`, actor)
}

func evID(id, actor string) string {
	return fmt.Sprintf(`{"id":%q,"time":"2026-01-02T03:04:05Z","actor":{"id":%q},"action":"login"}`, id, actor)
}

func TestNDJSON(t *testing.T) {
	ts := newTestServer(t, 0)
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	got := indices(t, post(t, w, ts.url+"/v1/events", "application/x-ndjson", "", ev("a")+"\n\n"+ev("b")+"\r\n"+ev("c")+"\n"))
	if !slices.Equal(got, []int64{0, 1, 2}) {
		t.Errorf("indices = %v, want [0 1 2]", got)
	}
	r := post(t, w, ts.url+"/v1/events", "application/x-ndjson", "", ev("d")+"\n{\"time\":1}\n")
	if r.status != 400 || !strings.Contains(string(r.body), "line 2: time:") {
		t.Errorf("bad second line = %d %s, want 400 naming line 2", r.status, r.body)
	}
	if n := ts.log.Size(); n != 3 {
		t.Errorf("log size = %d, want 3: a bad line stores nothing", n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir, nil)
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	other := ts.client(t, "producer-2", tlsconf.RoleWriter)
	url := ts.url + "/v1/events"
	batch := "[" + ev("a") + "," + ev("b") + "]"

	first := indices(t, post(t, w, url, "application/json", "k-1", batch))
	r := post(t, w, url, "application/json", "k-1", batch)
	if again := indices(t, r); !slices.Equal(again, first) {
		t.Errorf("retry got %v, want the original %v", again, first)
	}
	if r.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry has no Idempotent-Replayed: true header")
	}
	// The same body as NDJSON is the same request.
	if again := indices(t, post(t, w, url, "application/x-ndjson", "k-1", ev("a")+"\n"+ev("b"))); !slices.Equal(again, first) {
		t.Errorf("retry as NDJSON got %v, want %v", again, first)
	}
	// Another body under the same key is a conflict.
	if r := post(t, w, url, "application/json", "k-1", ev("a")); r.status != http.StatusConflict || !strings.Contains(string(r.body), "different request") {
		t.Errorf("reused key = %d %s, want 409", r.status, r.body)
	}
	// Keys belong to their producer.
	if got := indices(t, post(t, other, url, "application/json", "k-1", batch)); slices.Equal(got, first) {
		t.Errorf("another producer's k-1 replayed producer-1's entries")
	}
	for _, bad := range []string{"has space", strings.Repeat("k", 256), "é"} {
		if r := post(t, w, url, "application/json", bad, ev("a")); r.status != 400 || !strings.Contains(string(r.body), "Idempotency-Key") {
			t.Errorf("key %q = %d %s, want 400", bad, r.status, r.body)
		}
	}
	size := ts.log.Size()
	if size != 4 {
		t.Fatalf("log size = %d, want 4", size)
	}

	// After a restart the keys are recalled from the log.
	ts.stop()
	ts = startTestServer(t, dir, nil)
	w = ts.client(t, "producer-1", tlsconf.RoleWriter)
	if again := indices(t, post(t, w, ts.url+"/v1/events", "application/json", "k-1", batch)); !slices.Equal(again, first) {
		t.Errorf("retry after restart got %v, want %v", again, first)
	}
	if r := post(t, w, ts.url+"/v1/events", "application/json", "k-1", ev("z")); r.status != http.StatusConflict {
		t.Errorf("reused key after restart = %d %s, want 409", r.status, r.body)
	}
	if n := ts.log.Size(); n != size {
		t.Errorf("log size after retries = %d, want %d", n, size)
	}
}

func TestEventIDDedup(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServer(t, dir, nil)
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	url := ts.url + "/v1/events"

	got := indices(t, post(t, w, url, "application/json", "", "["+evID("e1", "a")+","+evID("e2", "b")+"]"))
	if !slices.Equal(got, []int64{0, 1}) {
		t.Fatalf("indices = %v", got)
	}
	// A batch repeating e2 and adding e3: only e3 is appended.
	got = indices(t, post(t, w, url, "application/json", "", "["+evID("e2", "b")+","+evID("e3", "c")+"]"))
	if !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("indices = %v, want [1 2]", got)
	}
	// The same id twice in one request is one entry.
	got = indices(t, post(t, w, url, "application/json", "", "["+evID("e4", "d")+","+evID("e4", "d")+"]"))
	if !slices.Equal(got, []int64{3, 3}) {
		t.Errorf("indices = %v, want [3 3]", got)
	}
	for _, body := range []string{evID("e1", "someone-else"), "[" + evID("e5", "a") + "," + evID("e5", "b") + "]"} {
		if r := post(t, w, url, "application/json", "", body); r.status != http.StatusConflict || !strings.Contains(string(r.body), `id \"e`) {
			t.Errorf("POST %s = %d %s, want 409 naming the id", body, r.status, r.body)
		}
	}
	ts.stop()
	ts = startTestServer(t, dir, nil)
	w = ts.client(t, "producer-1", tlsconf.RoleWriter)
	got = indices(t, post(t, w, ts.url+"/v1/events", "application/x-ndjson", "", evID("e3", "c")+"\n"+evID("e1", "a")))
	if !slices.Equal(got, []int64{2, 0}) {
		t.Errorf("after restart indices = %v, want [2 0]", got)
	}
	if n := ts.log.Size(); n != 4 {
		t.Errorf("log size = %d, want 4", n)
	}
}

// TestIdempotencyConcurrent sends one keyed request from many goroutines at
// once: exactly one append happens, and every 200 names the same entries.
func TestIdempotencyConcurrent(t *testing.T) {
	ts := newTestServer(t, 0)
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var seen [][]int64
	for range 16 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", ts.url+"/v1/events", strings.NewReader(ev("a")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "same")
			resp, err := w.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			switch resp.StatusCode {
			case http.StatusOK:
				var reply appendReply
				json.Unmarshal(b, &reply)
				mu.Lock()
				seen = append(seen, []int64{reply.Entries[0].Index})
				mu.Unlock()
			case http.StatusConflict: // in progress: the client retries
			default:
				t.Errorf("status %d %s", resp.StatusCode, b)
			}
		})
	}
	wg.Wait()
	if n := ts.log.Size(); n != 1 {
		t.Errorf("log size = %d, want 1", n)
	}
	for _, s := range seen {
		if s[0] != 0 {
			t.Errorf("a 200 named entry %d, want 0", s[0])
		}
	}
}

func TestWaitProof(t *testing.T) {
	ts := newTestServer(t, 0)
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	r := post(t, w, ts.url+"/v1/events?wait=proof", "application/json", "", "["+ev("a")+","+ev("b")+","+ev("c")+"]")
	if r.status != http.StatusOK {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	var reply struct {
		Entries []struct {
			Index    int64  `json:"index"`
			LeafHash []byte `json:"leaf_hash"`
			Proof    string `json:"proof"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(r.body, &reply); err != nil {
		t.Fatal(err)
	}
	for _, e := range reply.Entries {
		p, err := c2sp.ParseProof([]byte(e.Proof))
		if err != nil {
			t.Fatalf("entry %d: %v", e.Index, err)
		}
		n, err := note.Open(p.Checkpoint, note.VerifierList(ts.keys.Verifier))
		if err != nil {
			t.Fatal(err)
		}
		cp, err := c2sp.ParseCheckpoint([]byte(n.Text))
		if err != nil {
			t.Fatal(err)
		}
		if p.Index != e.Index {
			t.Errorf("proof index %d, entry %d", p.Index, e.Index)
		}
		if err := tlog.CheckRecord(p.Hashes, cp.Size, cp.Hash, p.Index, tlog.Hash(e.LeafHash)); err != nil {
			t.Errorf("entry %d: %v", e.Index, err)
		}
	}
	for _, q := range []string{"?wait=forever", "?foo=1"} {
		if r := post(t, w, ts.url+"/v1/events"+q, "application/json", "", ev("a")); r.status != 400 {
			t.Errorf("POST %s = %d %s, want 400", q, r.status, r.body)
		}
	}
}

// TestIdempotencyEviction checks that the memory is bounded.
func TestIdempotencyEviction(t *testing.T) {
	ts := startTestServer(t, t.TempDir(), func(c *server.Config) { c.IdempotencyKeys = 2 })
	w := ts.client(t, "producer-1", tlsconf.RoleWriter)
	url := ts.url + "/v1/events"
	for _, k := range []string{"a", "b", "c"} {
		indices(t, post(t, w, url, "application/json", k, ev(k)))
	}
	// "a" was forgotten: its retry appends again; "c" is remembered.
	if got := indices(t, post(t, w, url, "application/json", "a", ev("a"))); got[0] != 3 {
		t.Errorf("retry of a forgotten key got %v, want a new entry 3", got)
	}
	if got := indices(t, post(t, w, url, "application/json", "c", ev("c"))); got[0] != 2 {
		t.Errorf("retry of c got %v, want 2", got)
	}
}
