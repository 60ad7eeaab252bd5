package index

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/storage/fs"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// openLog opens a fresh log in a temporary directory.
func openLog(t testing.TB, dir string) *ledger.Log {
	t.Helper()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	store, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// gen makes bounded random events: few values per field, so that filters
// and their combinations match often.
type gen struct {
	rng  *rand.Rand
	base time.Time
}

// newGen returns a generator seeded with a and b, its events from
// 2026-11-01 on.
func newGen(a, b uint64) *gen {
	return &gen{rng: rand.New(rand.NewPCG(a, b)), base: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
}

var (
	genActors  = []string{"alice", "bob", "carol", "dave", "system:serviceaccount:kube-system:ctrl"}
	genActions = []string{"user.login", "secret.read", "namespace.delete", "pod.exec"}
	genRTypes  = []string{"", "secret", "namespace", "pod"}
	genRIDs    = []string{"", "prod", "default", "db-password"}
	genOut     = []event.Outcome{event.Success, event.Failure, event.Unknown}
	genSources = []string{"api-1", "k8s-audit", "rsyslog"}
	genVias    = []string{"json", "k8s", "syslog"}
	genWords   = []string{"quartz", "Zebra", "über", "deploy", "rollback", "user.login", "日本語"}
)

func (g *gen) pick(s []string) string { return s[g.rng.IntN(len(s))] }

func (g *gen) leaf() []byte {
	ev := event.Event{
		Time:     g.base.Add(time.Duration(g.rng.IntN(1000)) * time.Minute),
		Actor:    event.Actor{ID: g.pick(genActors), IP: "10.0.0." + fmt.Sprint(g.rng.IntN(4))},
		Action:   g.pick(genActions),
		Resource: event.Resource{Type: g.pick(genRTypes), ID: g.pick(genRIDs)},
		Outcome:  genOut[g.rng.IntN(len(genOut))],
	}
	if g.rng.IntN(2) == 0 {
		ev.Details, _ = json.Marshal(map[string]any{"note": g.pick(genWords) + " " + g.pick(genWords), "n": g.rng.IntN(50)})
	}
	if g.rng.IntN(3) == 0 {
		ev.Reason = g.pick(genWords)
	}
	leaf, err := event.Encode(event.Envelope{
		Received: g.base.Add(time.Duration(g.rng.IntN(1000)) * time.Minute),
		Source:   g.pick(genSources), Via: g.pick(genVias), Event: ev,
	})
	if err != nil {
		panic(err)
	}
	return leaf
}

func (g *gen) query() client.SearchQuery {
	var q client.SearchQuery
	maybe := func(dst *string, vals []string) {
		if g.rng.IntN(3) == 0 {
			*dst = g.pick(vals)
		}
	}
	maybe(&q.Actor, genActors)
	maybe(&q.Action, genActions)
	maybe(&q.ResourceType, genRTypes[1:])
	maybe(&q.ResourceID, genRIDs[1:])
	maybe(&q.Outcome, []string{"success", "failure", "unknown"})
	maybe(&q.Source, genSources)
	maybe(&q.Via, genVias)
	at := func() time.Time { return g.base.Add(time.Duration(g.rng.IntN(1000)) * time.Minute) }
	if g.rng.IntN(3) == 0 {
		q.Since = at()
	}
	if g.rng.IntN(3) == 0 {
		q.Until = q.Since.Add(time.Duration(1+g.rng.IntN(600)) * time.Minute)
		if q.Since.IsZero() {
			q.Until = at()
		}
	}
	if g.rng.IntN(4) == 0 {
		q.ReceivedSince = at()
	}
	if g.rng.IntN(4) == 0 {
		q.ReceivedUntil = at().Add(time.Hour)
		if !q.ReceivedSince.IsZero() && !q.ReceivedSince.Before(q.ReceivedUntil) {
			q.ReceivedUntil = time.Time{}
		}
	}
	if g.rng.IntN(3) == 0 {
		texts := []string{"quartz", "zebra OR deploy", "uber", "über", "roll*", `"user login"`, "quartz -zebra", "日本語", "alice", "db password"}
		q.Text = texts[g.rng.IntN(len(texts))]
	}
	if g.rng.IntN(2) == 0 {
		q.Order = client.Oldest
	}
	q.Limit = 1 + g.rng.IntN(40)
	return q
}

// decoded is an entry decoded once, for bruteForce.
type decoded struct {
	env  event.Envelope
	text string
}

func decodeAll(t *testing.T, leaves [][]byte) []decoded {
	out := make([]decoded, len(leaves))
	for i, leaf := range leaves {
		env, err := event.DecodeLeaf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := client.DocOf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = decoded{env, doc.Text}
	}
	return out
}

// bruteForce returns, in order, the entries that satisfy q, checked field
// by field on the decoded envelopes.
func bruteForce(t *testing.T, entries []decoded, q client.SearchQuery) []int64 {
	var out []int64
	var tq *client.TextQuery
	if q.Text != "" {
		var err error
		if tq, err = client.ParseText(q.Text); err != nil {
			t.Fatal(err)
		}
	}
	for i, d := range entries {
		env, e := d.env, d.env.Event
		ok := (q.Actor == "" || q.Actor == e.Actor.ID) && (q.Action == "" || q.Action == e.Action) &&
			(q.ResourceType == "" || q.ResourceType == e.Resource.Type) && (q.ResourceID == "" || q.ResourceID == e.Resource.ID) &&
			(q.Outcome == "" || q.Outcome == string(e.Outcome)) && (q.Source == "" || q.Source == env.Source) && (q.Via == "" || q.Via == env.Via) &&
			(q.Since.IsZero() || !e.Time.Before(q.Since)) && (q.Until.IsZero() || e.Time.Before(q.Until)) &&
			(q.ReceivedSince.IsZero() || !env.Received.Before(q.ReceivedSince)) && (q.ReceivedUntil.IsZero() || env.Received.Before(q.ReceivedUntil))
		if ok && tq != nil {
			ok = tq.Match(d.text)
		}
		if ok {
			out = append(out, int64(i))
		}
	}
	if q.Order != client.Oldest {
		slices.Reverse(out)
	}
	return out
}

// TestSearchAgreesWithBruteForce checks filters, free text, order and
// cursors against a scan of the log, on random events and queries.
func TestSearchAgreesWithBruteForce(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(1, 2)
	leaves := make([][]byte, 3000)
	for i := range leaves {
		leaves[i] = g.leaf()
	}
	for i := 0; i < len(leaves); i += 500 {
		if _, err := l.Append(t.Context(), leaves[i:i+500]...); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 700})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	entries := decodeAll(t, leaves)
	nonEmpty := 0
	for n := range 300 {
		cq := g.query()
		var bound int64
		if n%10 == 0 {
			bound = int64(g.rng.IntN(len(leaves)))
		} else {
			bound = int64(len(leaves))
		}
		want := bruteForce(t, entries[:bound], cq)
		if len(want) > 0 {
			nonEmpty++
		}
		var got []int64
		v := cq.Values()
		for pages := 0; ; pages++ {
			if pages > len(leaves) {
				t.Fatalf("query %v: cursors do not end", v)
			}
			q, err := ParseQuery(v, time.Now())
			if err != nil {
				t.Fatalf("ParseQuery(%v): %v", v, err)
			}
			idxs, more, err := ix.Search(t.Context(), q, bound)
			if err != nil {
				t.Fatalf("Search(%v): %v", v, err)
			}
			got = append(got, idxs...)
			if !more {
				break
			}
			v.Set("cursor", q.cursor(idxs[len(idxs)-1]))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("query %v below %d:\n got %v\nwant %v", v, bound, got, want)
		}
	}
	if nonEmpty < 100 {
		t.Errorf("only %d of 300 queries matched anything: the generator tests too little", nonEmpty)
	}
}

// TestCatchUpAfterCrash: a crash before the manifest records a flush
// loses only what was not flushed, and reopening catches up; a lost or
// damaged manifest, a damaged segment file, another format version, an
// index ahead of the log or of another log make it rebuild.
func TestCatchUpAfterCrash(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(3, 4)
	var leaves [][]byte
	for range 1000 {
		leaves = append(leaves, g.leaf())
	}
	if _, err := l.Append(t.Context(), leaves[:600]...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	crash := errors.New("crash")
	var crashing atomic.Bool
	tune(t, func(ix *Index) {
		ix.beforeManifest = func(next int64) error {
			if crashing.Load() {
				return crash
			}
			return nil
		}
	})
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 300})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), leaves[600:]...); err != nil {
		t.Fatal(err)
	}
	crashing.Store(true)
	if err := ix.CatchUp(t.Context(), nil); !errors.Is(err, crash) {
		t.Fatalf("CatchUp = %v, want the injected crash", err)
	}
	count := func(ix *Index) int {
		q, _ := ParseQuery(url.Values{"limit": {"1000"}}, time.Now())
		got, _, err := ix.Search(t.Context(), q, 2000)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if ix.Next() != 1000 || count(ix) != 1000 {
		t.Fatalf("before the crash: Next() = %d, %d found, want 1000 (in memory)", ix.Next(), count(ix))
	}
	if err := ix.Close(); !errors.Is(err, crash) {
		t.Fatalf("Close = %v, want the injected crash", err)
	}
	crashing.Store(false)

	ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Batch: 300, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if ix.Next() != 600 || count(ix) != 600 {
		t.Fatalf("reopened: Next() = %d, %d entries found, want 600", ix.Next(), count(ix))
	}
	checkFiles(t, dir)
	ix.Start() // the follower catches up, and follows new appends
	if _, err := l.Append(t.Context(), g.leaf()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ix.Next() == 1001 })
	if n := count(ix); n != 1000 {
		t.Fatalf("after catching up %d entries found (limit 1000), want 1000", n)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	// Each of these makes the index rebuild: opened, it starts at 0, says
	// why, and catches up.
	manifestPath := filepath.Join(dir, FileName)
	segFile := func() string {
		names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
		if len(names) == 0 {
			t.Fatal("no segment file")
		}
		return names[len(names)-1]
	}
	editManifest := func(edit func(m map[string]any)) {
		b, err := os.ReadFile(manifestPath)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		if b, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(manifestPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, reason string
		damage       func()
	}{
		{"lost manifest", "manifest search.db is missing", func() { os.Remove(manifestPath) }},
		{"damaged manifest", "manifest is damaged", func() {
			os.WriteFile(manifestPath, bytes.Repeat([]byte("garbage!"), 4096), 0o600)
		}},
		{"other version", "format version", func() { editManifest(func(m map[string]any) { m["version"] = "2" }) }},
		{"SQLite index", "earlier version (SQLite)", func() {
			os.WriteFile(manifestPath, append([]byte("SQLite format 3\x00"), make([]byte, 4080)...), 0o600)
			os.WriteFile(manifestPath+"-wal", []byte("wal"), 0o600)
		}},
		{"ahead of the log", "it indexes 5000 entries, the log holds 1001", func() { editManifest(func(m map[string]any) { m["next"] = 5000 }) }},
		{"damaged segment", "checksum", func() {
			f, err := os.OpenFile(segFile(), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			b := make([]byte, 1)
			f.ReadAt(b, 300)
			f.WriteAt([]byte{b[0] ^ 0x40}, 300)
		}},
		{"truncated segment", "segment", func() {
			fi, err := os.Stat(segFile())
			if err != nil {
				t.Fatal(err)
			}
			os.Truncate(segFile(), fi.Size()/2)
		}},
		{"segment file missing", "segment", func() { os.Remove(segFile()) }},
	} {
		c.damage()
		var logs bytes.Buffer
		ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("%s: Open: %v", c.name, err)
		}
		if ix.Next() != 0 || !strings.Contains(logs.String(), "rebuilding the search index") || !strings.Contains(logs.String(), c.reason) {
			t.Fatalf("%s: opened at %d, logged %q; want 0, and a rebuild saying %q", c.name, ix.Next(), logs.String(), c.reason)
		}
		checkFiles(t, dir)
		if err := ix.CatchUp(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		if ix.Next() != 1001 || count(ix) != 1000 {
			t.Fatalf("%s: rebuilt: Next() = %d, %d found", c.name, ix.Next(), count(ix))
		}
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// Another log: the index is rebuilt for it.
	other := openLog(t, t.TempDir())
	defer other.Close()
	other.Append(t.Context(), leaves[:5]...)
	ix, err = Open(t.Context(), Options{Dir: dir, Source: other})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if ix.Next() != 0 {
		t.Fatalf("an index of another log opened at %d, want 0", ix.Next())
	}
}

// tune makes the indexes opened during the test use f's settings.
func tune(t *testing.T, f func(*Index)) {
	t.Helper()
	testTune = f
	t.Cleanup(func() { testTune = nil })
}

// checkFiles checks that the index directory holds the manifest and the
// segment files it names, nothing else, each private.
func checkFiles(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := []string{FileName}
	for _, s := range m.Segments {
		want = append(want, s.Name)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
		if fi, err := e.Info(); err == nil && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("index directory holds %v, want %v", got, want)
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("index directory has mode %v, want 0700", fi.Mode().Perm())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 10 s")
}

// startServer starts a real server with the search endpoint and a
// following index.
func startServer(t *testing.T) (*servertest.Server, *Index) {
	t.Helper()
	var ix *Index
	s := servertest.Start(t, servertest.Options{Register: func(srv *server.Server) {}})
	ix, err := Open(t.Context(), Options{Dir: filepath.Join(s.Dir, DirName), Source: s.Log, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	Register(s.Server, s.Log, ix, nil)
	ix.Start()
	t.Cleanup(func() { ix.Close() })
	return s, ix
}

func newClient(t *testing.T, s *servertest.Server, name string, role tlsconf.Role) *client.Client {
	t.Helper()
	keys, err := ledger.LoadOrCreateKeys(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: s.URL, HTTPClient: s.Client(t, name, role), VerifierKey: keys.VerifierKey, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSearchAPI(t *testing.T) {
	s, ix := startServer(t)
	ctx := t.Context()
	big := strings.Repeat("x", 70_000)
	evs := []event.Event{
		{Time: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC), Actor: event.Actor{ID: "alice"}, Action: "namespace.delete", Resource: event.Resource{Type: "namespace", ID: "prod"}, Outcome: event.Success},
		{Time: time.Date(2026, 11, 2, 11, 0, 0, 0, time.UTC), Actor: event.Actor{ID: "bob"}, Action: "user.login", Outcome: event.Failure, Reason: "bad password"},
		{Time: time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC), Actor: event.Actor{ID: "alice"}, Action: "document.upload", Outcome: event.Success,
			Original: json.RawMessage(`{"blob":"` + big + `","tag":"xylophone"}`)},
	}
	idxs, err := s.Server.Ingest(ctx, tlsconf.Identity{Name: "api-1", Role: tlsconf.RoleWriter}, "json", evs)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ix.Next() >= idxs[2]+1 })
	auditor := newClient(t, s, "auditor-1", tlsconf.RoleAuditor)

	page, err := auditor.Search(ctx, client.SearchQuery{Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Results) != 2 || page.Results[0].Index != idxs[2] || page.Results[1].Index != idxs[0] || page.Next != "" {
		t.Fatalf("Search(actor=alice) = %+v, want entries %d and %d, newest first", page.Results, idxs[2], idxs[0])
	}
	if page.Results[0].Body == nil || string(page.Results[0].Body) == string(page.Results[0].Leaf) {
		t.Errorf("the large entry's result has no separate body")
	}
	// A large entry's words are indexed.
	page, err = auditor.Search(ctx, client.SearchQuery{Text: "xylophone"})
	if err != nil || len(page.Results) != 1 || page.Results[0].Index != idxs[2] {
		t.Fatalf("Search(q=xylophone) = %+v, %v, want the large entry %d", page, err, idxs[2])
	}
	page, err = auditor.Search(ctx, client.SearchQuery{Text: `"bad password"`, Outcome: "failure", Since: evs[1].Time, Until: evs[1].Time.Add(time.Second)})
	if err != nil || len(page.Results) != 1 || page.Results[0].Index != idxs[1] {
		t.Fatalf("Search(bad password) = %+v, %v, want entry %d", page, err, idxs[1])
	}
	// Paging: one at a time, oldest first.
	var seen []int64
	q := client.SearchQuery{Source: "api-1", Order: client.Oldest, Limit: 1}
	for range 10 {
		page, err := auditor.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.Results {
			seen = append(seen, r.Index)
		}
		if page.Next == "" {
			break
		}
		q.Cursor = page.Next
	}
	if !slices.Equal(seen, idxs) {
		t.Errorf("paging oldest first saw %v, want %v", seen, idxs)
	}

	// Every search is logged before it is answered, with its query.
	n := s.Log.Size()
	if _, err := auditor.Search(ctx, client.SearchQuery{Actor: "mallory"}); err != nil {
		t.Fatal(err)
	}
	last := s.Entries(t)[n]
	if last.Event.Action != "trail.search" || last.Event.Actor.ID != "auditor-1" || !strings.Contains(string(last.Event.Details), `"actor":"mallory"`) {
		t.Errorf("entry after the search = %+v %s, want trail.search by auditor-1 with its query", last.Event, last.Event.Details)
	}

	// A reader may read entries but not search.
	reader := newClient(t, s, "reader-1", tlsconf.RoleReader)
	_, err = reader.Search(ctx, client.SearchQuery{})
	var cerr *client.Error
	if !errors.As(err, &cerr) || cerr.StatusCode != http.StatusForbidden {
		t.Errorf("reader's Search = %v, want 403", err)
	}
	// POST /v1/events still appends.
	if _, err := newClient(t, s, "w", tlsconf.RoleWriter).Append(ctx, json.RawMessage(`{"time":"2026-11-29T08:00:00Z","actor":{"id":"a"},"action":"x"}`)); err != nil {
		t.Errorf("append beside the search route: %v", err)
	}
}

// TestAlteredIndexFailsOnClient: the index is not trusted. A posting
// changed to claim that an entry matches a query it does not match yields
// a result the client rejects.
func TestAlteredIndexFailsOnClient(t *testing.T) {
	s, ix := startServer(t)
	ctx := t.Context()
	idxs, err := s.Server.Ingest(ctx, tlsconf.Identity{Name: "api-1", Role: tlsconf.RoleWriter}, "json", []event.Event{
		{Time: time.Now(), Actor: event.Actor{ID: "alice"}, Action: "secret.read", Outcome: event.Success},
		{Time: time.Now(), Actor: event.Actor{ID: "mallory"}, Action: "secret.read", Outcome: event.Success},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ix.Next() > idxs[1] })
	auditor := newClient(t, s, "auditor-1", tlsconf.RoleAuditor)
	if page, err := auditor.Search(ctx, client.SearchQuery{Actor: "mallory"}); err != nil || len(page.Results) != 1 || page.Results[0].Index != idxs[1] {
		t.Fatalf("before tampering: %+v, %v, want entry %d", page, err, idxs[1])
	}
	// The posting of actor=mallory now names alice's entry.
	ix.noMerge.Store(true)
	if err := ix.flush(ctx); err != nil {
		t.Fatal(err)
	}
	alterPosting(t, ix, string(fieldActor)+"mallory", idxs[0])
	_, err = auditor.Search(ctx, client.SearchQuery{Actor: "mallory"})
	if !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), fmt.Sprintf("entry %d does not satisfy actor", idxs[0])) {
		t.Fatalf("Search after tampering = %v, want a verification error naming entry %d and actor", err, idxs[0])
	}
}

func TestBadQueries(t *testing.T) {
	s, _ := startServer(t)
	hc := s.Client(t, "auditor-1", tlsconf.RoleAuditor)
	for _, c := range []struct{ query, param string }{
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"received_since=-5h", "received_since"},
		{"received_until=soon", "received_until"},
		{"colour=red", "colour"},
		{"limit=1001", "limit"},
		{"limit=0", "limit"},
		{"cursor=%21%21", "cursor"},
		{"cursor=" + base64Cursor("1.5.000000000000"), "cursor"},
		{"order=sideways", "order"},
		{"outcome=maybe", "outcome"},
		{"q=%22unbalanced", "q"},
		{"q=-only", "q"},
		{"q=OR", "q"},
		{"q=...", "q"},
		{"actor=a&actor=b", "actor"},
		{"since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z", "until"},
	} {
		resp, err := hc.Get(s.URL + "/v1/events?" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(body.Error, c.param+": ") {
			t.Errorf("GET /v1/events?%s = %d %q, want 400 naming %s", c.query, resp.StatusCode, body.Error, c.param)
		}
	}
}

func base64Cursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// alterPosting rewrites, in its segment file, the one-entry postings of
// term to name entry idx instead, as someone with write access to the data
// directory could.
func alterPosting(t *testing.T, ix *Index, term string, idx int64) {
	t.Helper()
	v := ix.acquire()
	defer ix.releaseView(v)
	for _, s := range v.segs[:v.disk] {
		rec, ok, err := s.find([]byte(term))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		b := binary.AppendUvarint(nil, uint64(idx-s.base))
		if rec.count != 1 || len(b) != len(rec.postings) || idx < s.base || idx >= s.end() {
			t.Fatalf("can't alter the postings of %q (%d entries, %d bytes) in [%d, %d) to %d", term, rec.count, len(rec.postings), s.base, s.end(), idx)
		}
		f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, int64(rec.at)); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no segment file holds %q", term)
}

// FuzzParseQuery: any query string parses or fails with a *ParamError
// naming a parameter, and the index reads the terms of what parses.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"actor=a&since=24h", "q=%22a+b%22*+OR+c+-d", "limit=5&order=oldest&cursor=MS41LmFiYw", "since=7d&until=2026-11-01T00:00:00Z", "x=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := ParseQuery(v, time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) || pe.Param == "" {
				t.Fatalf("ParseQuery(%q) = %v, want a *ParamError naming a parameter", raw, err)
			}
			return
		}
		if q.Text != nil {
			if _, err := planText(q.Text); err != nil {
				t.Fatalf("ParseQuery(%q): %v", raw, err)
			}
		}
		if _, err := parseCursor(q.cursor(42), q); err != nil {
			t.Fatalf("a cursor of %q does not parse back: %v", raw, err)
		}
	})
}
