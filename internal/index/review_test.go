package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ledger"
)

// oracle answers searches by reading every entry, as a client checks a
// result: DocOf, then Mismatch.
type oracle struct {
	docs []*client.SearchDoc // nil: not an event envelope
}

func newOracle(t *testing.T, l *ledger.Log, n int64) *oracle {
	t.Helper()
	leaves, err := l.ReadEntries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	o := &oracle{}
	for _, leaf := range leaves {
		body, err := l.Body(t.Context(), leaf)
		if err != nil {
			t.Fatal(err)
		}
		if doc, err := client.DocOf(body); err == nil {
			o.docs = append(o.docs, &doc)
		} else {
			o.docs = append(o.docs, nil)
		}
	}
	return o
}

// search returns the entries below bound that satisfy cq, in its order.
func (o *oracle) search(t *testing.T, cq client.SearchQuery, bound int64) []int64 {
	t.Helper()
	var tq *client.TextQuery
	if cq.Text != "" {
		var err error
		if tq, err = client.ParseText(cq.Text); err != nil {
			t.Fatal(err)
		}
	}
	v := cq.Values()
	v.Del("order")
	v.Del("limit")
	filtered := len(v) > 0
	out := []int64{}
	for i, d := range o.docs[:bound] {
		if d == nil && !filtered || d != nil && cq.Mismatch(d, tq) == "" {
			out = append(out, int64(i))
		}
	}
	if cq.Order != client.Oldest {
		slices.Reverse(out)
	}
	return out
}

// leafAt returns an envelope of the given times.
func leafAt(t *testing.T, when, received time.Time, actor, reason string) []byte {
	t.Helper()
	leaf, err := event.Encode(event.Envelope{Received: received, Source: "api", Via: "json",
		Event: event.Event{Time: when, Actor: event.Actor{ID: actor}, Action: "user.login", Outcome: event.Success, Reason: reason}})
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestReviewTimeBounds: events and bounds outside the years int64
// nanoseconds reach, and at exact boundaries, are found as [since, until)
// says.
func TestReviewTimeBounds(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	var times []time.Time
	for _, y := range []int{1, 1500, 1677, 1678, 2000, 2261, 2262, 3000, 9999} {
		times = append(times, time.Date(y, 6, 1, 0, 0, 0, 0, time.UTC))
	}
	times = append(times,
		time.Date(2262, 1, 1, 0, 30, 0, 0, time.UTC),                       // saturated, though int64 reaches it
		time.Date(2261, 12, 31, 22, 0, 0, 0, time.FixedZone("x", -3*3600)), // the same year in UTC
		time.Date(2026, 11, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	)
	var leaves [][]byte
	for i, a := range times {
		for j, b := range times {
			if (i+j)%3 == 0 {
				leaves = append(leaves, leafAt(t, a, b, "alice", ""))
			}
		}
	}
	appendLeaves(t, l, leaves)
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 7})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	o := newOracle(t, l, l.Size())
	var bounds []time.Time
	for _, x := range times {
		bounds = append(bounds, x, x.Add(time.Nanosecond), x.Add(-time.Nanosecond), x.Add(time.Hour))
	}
	bounds = append(bounds, time.Date(2262, 1, 1, 1, 0, 0, 0, time.UTC), time.Date(2261, 12, 31, 23, 0, 0, 0, time.FixedZone("y", -2*3600)))
	n := 0
	for i, lo := range bounds {
		for j, hi := range bounds {
			if (i*7+j)%11 != 0 {
				continue
			}
			for k := range 4 {
				cq := client.SearchQuery{Limit: 1000, Order: []string{client.Oldest, client.Newest}[k%2]}
				switch k {
				case 0:
					cq.Until = hi
				case 1:
					cq.Since, cq.Until = lo, hi
					if !lo.Before(hi) {
						continue
					}
				case 2:
					cq.ReceivedUntil = hi
				case 3:
					cq.ReceivedSince, cq.ReceivedUntil, cq.Actor = lo, hi, "alice"
					if !lo.Before(hi) {
						continue
					}
				}
				n++
				// Exactly: the client takes an entry that does not satisfy
				// the query for an altered index (ErrVerification).
				if got, want := searchAll(t, ix, cq, l.Size()), o.search(t, cq, l.Size()); !slices.Equal(got, want) {
					t.Fatalf("query %v:\n got %v\nwant %v", cq.Values(), got, want)
				}
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d queries", n)
	}
}

// TestReviewConcurrent: searches paging with cursors, in both orders,
// while the follower indexes, flushes and merges, find what a scan finds
// below their bound, every page of a search read from a newer view.
func TestReviewConcurrent(t *testing.T) {
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor, ix.quiet = 150, 2, 20*time.Millisecond })
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(21, 22)
	const total = 3000
	leaves := make([][]byte, total)
	for i := range leaves {
		switch {
		case i%101 == 0:
			leaves[i] = []byte(`{"not":"an envelope","quartz":"quartz"}`)
		case i%2 == 0:
			leaves[i] = g.taggedLeaf()
		default:
			leaves[i] = g.leaf()
		}
	}
	var queries []client.SearchQuery
	for range 60 {
		cq := g.query()
		if g.rng.IntN(2) == 0 {
			cq.Text = []string{"t0*", `"zebra deploy"`, "quartz -roll*", "t123 OR t124", "t*", `"user l"*`}[g.rng.IntN(6)]
		}
		cq.Limit = 1 + g.rng.IntN(7)
		queries = append(queries, cq)
	}
	queries = append(queries, client.SearchQuery{Limit: 97}, client.SearchQuery{Limit: 13, Order: client.Oldest})
	// The oracle of all entries: searches below a bound use a prefix.
	appendLeaves(t, l, leaves[:1])
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 64, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ix.Start()
	var wg sync.WaitGroup
	var appended atomic.Bool
	wg.Go(func() {
		defer appended.Store(true)
		for i := 1; i < total; {
			n := 1 + g.rng.IntN(90)
			if _, err := l.Append(context.Background(), leaves[i:min(i+n, total)]...); err != nil {
				t.Error(err)
				return
			}
			i += n
			time.Sleep(time.Millisecond)
		}
	})
	type check struct {
		cq    client.SearchQuery
		bound int64
		loose bool // bound is past Next: the search found those below some B >= Next
		got   []int64
	}
	var mu sync.Mutex
	var checks []check
	for w := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for k := 0; k < 400 && (k < 20 || !appended.Load()); k++ {
				cq := queries[rng.IntN(len(queries))]
				bound, loose := ix.Next(), false
				if rng.IntN(3) == 0 && bound > 0 {
					bound = rng.Int64N(bound)
				} else if rng.IntN(4) == 0 {
					bound, loose = bound+500, true // beyond Next: only what is indexed is searched
				}
				got := searchAll(t, ix, cq, bound)
				mu.Lock()
				checks = append(checks, check{cq, min(bound, total), loose, got})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if !ix.WaitFor(t.Context(), total, 10*time.Second) {
		t.Fatalf("indexed %d of %d", ix.Next(), total)
	}
	o := newOracle(t, l, total)
	for _, c := range checks {
		want := o.search(t, c.cq, c.bound)
		if !slices.Equal(c.got, want) && !(c.loose && belowSome(c.got, want, c.cq.Order)) {
			t.Fatalf("query %v below %d:\n got %v\nwant %v", c.cq.Values(), c.bound, c.got, want)
		}
	}
	for _, cq := range queries {
		if got, want := searchAll(t, ix, cq, total), o.search(t, cq, total); !slices.Equal(got, want) {
			t.Fatalf("after indexing: query %v:\n got %v\nwant %v", cq.Values(), got, want)
		}
	}
	t.Logf("%d concurrent searches checked", len(checks))
}

// belowSome reports whether got is, in order, the entries of want below
// some index.
func belowSome(got, want []int64, order string) bool {
	asc := slices.Clone(want)
	slices.Sort(asc)
	if len(got) > len(asc) {
		return false
	}
	below := slices.Clone(asc[:len(got)])
	if order != client.Oldest {
		slices.Reverse(below)
	}
	return slices.Equal(got, below)
}

// snapshot copies the files of dir into a new directory: what a crash at
// this instant leaves on disk (every file the index renames into place is
// synced first).
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Error(err)
		return dst
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			t.Error(err)
			continue
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Error(err)
		}
	}
	return dst
}

// checkIndex checks every query against the oracle, and Locate against
// the log's leaves.
func checkIndex(t *testing.T, ix *Index, l *ledger.Log, o *oracle, queries []client.SearchQuery, when string) {
	t.Helper()
	n := int64(len(o.docs))
	for _, cq := range queries {
		if got, want := searchAll(t, ix, cq, n), o.search(t, cq, n); !slices.Equal(got, want) {
			t.Fatalf("%s: query %v:\n got %v\nwant %v", when, cq.Values(), got, want)
		}
	}
	leaves, err := l.ReadEntries(t.Context(), 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		off, size, ok := ix.Locate(i)
		if !ok {
			t.Fatalf("%s: Locate(%d) found nothing", when, i)
		}
		leaf, err := l.ReadEntryAt(t.Context(), i, off, size)
		if err != nil || !bytes.Equal(leaf, leaves[i]) {
			t.Fatalf("%s: ReadEntryAt(%d, Locate) = %q, %v", when, i, leaf, err)
		}
	}
}

// TestReviewCrashes: a crash at any write of the manifest, of a flush or
// of a merge, while the follower indexes and merges run, leaves an index
// that opens without leftovers, and catches up to answer as a scan does.
func TestReviewCrashes(t *testing.T) {
	var (
		mu    sync.Mutex
		snaps []string
		calls int
		dir   string
	)
	take := func() {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls%3 == 1 && len(snaps) < 8 {
			snaps = append(snaps, snapshot(t, dir))
		}
	}
	tune(t, func(ix *Index) {
		ix.flushEntries, ix.mergeFactor, ix.quiet = 120, 2, 10*time.Millisecond
		ix.beforeManifest = func(int64) error { take(); return nil }
		ix.beforeMergeManifest = func() error { take(); return nil }
	})
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(31, 32)
	const total = 1500
	leaves := make([][]byte, total)
	for i := range leaves {
		leaves[i] = g.taggedLeaf()
		if i%97 == 5 {
			leaves[i] = []byte(`{"not":"an envelope"}`)
		}
	}
	dir = t.TempDir()
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 50, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ix.Start()
	for i := 0; i < total; i += 100 {
		appendLeaves(t, l, leaves[i:i+100])
		if i < 1000 {
			// Let the follower keep pace, so that the manifest is written
			// at least ten times however loaded the machine is; the last
			// appends it is still indexing when Close comes.
			if !ix.WaitFor(t.Context(), int64(i+100), 10*time.Second) {
				t.Fatalf("the index did not reach %d entries in 10 s", i+100)
			}
			// At least one manifest write per 100 entries, wherever the
			// background flusher's own writes fall.
			if err := ix.flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Close while the follower indexes: it flushes what is in memory.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor, ix.quiet = 120, 2, 10*time.Millisecond })
	o := newOracle(t, l, total)
	var queries []client.SearchQuery
	for range 25 {
		cq := g.query()
		if g.rng.IntN(2) == 0 {
			cq.Text = []string{"t0*", `"zebra deploy"`, "quartz -roll*", "t123 OR t124", "t*"}[g.rng.IntN(5)]
		}
		cq.Limit = 1 + g.rng.IntN(50)
		queries = append(queries, cq)
	}
	queries = append(queries, client.SearchQuery{Limit: 500}, client.SearchQuery{Limit: 300, Order: client.Oldest})
	mu.Lock()
	defer mu.Unlock()
	if len(snaps) < 4 {
		t.Fatalf("only %d crashes", len(snaps))
	}
	for k, d := range append(snaps, dir) {
		ix, err := Open(t.Context(), Options{Dir: d, Source: l, Batch: 50})
		if err != nil {
			t.Fatal(err)
		}
		// The files are checked after Close: merges write files meanwhile.
		if err := ix.CatchUp(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		checkIndex(t, ix, l, o, queries, fmt.Sprintf("crash %d", k))
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
		checkFiles(t, d)
	}
}

// TestReviewCloseDuringCatchUp: Close while CatchUp indexes ends it soon,
// and what CatchUp reported durable is; reopened, the index catches up.
func TestReviewCloseDuringCatchUp(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(41, 42)
	leaves := make([][]byte, 4000)
	for i := range leaves {
		leaves[i] = g.leaf()
	}
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor = 100, 2 })
	dir := t.TempDir()

	// A CatchUp that starts after Close does nothing: it used to index
	// into the closed index and write a manifest of only what it indexed,
	// which the next start found damaged, and rebuilt.
	appendLeaves(t, l, leaves[:50])
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, l, leaves[50:100])
	if err := ix.CatchUp(t.Context(), nil); !errors.Is(err, errClosed) {
		t.Errorf("CatchUp after Close = %v, want errClosed", err)
	}
	var logs bytes.Buffer
	if ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
		t.Fatal(err)
	}
	if ix.Next() != 50 || logs.Len() > 0 {
		t.Fatalf("reopened after a CatchUp after Close: at %d (want 50), logged %q", ix.Next(), logs.String())
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, l, leaves[100:])

	// Close while CatchUp indexes: what CatchUp reported indexed before
	// Close returned is durable.
	for k := range 4 {
		ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 10})
		if err != nil {
			t.Fatal(err)
		}
		from := ix.Next()
		var durable atomic.Int64
		done := make(chan error, 1)
		go func() { done <- ix.CatchUp(context.Background(), func(n, _ int64) { durable.Store(n) }) }()
		time.Sleep(time.Duration(k*3) * time.Millisecond)
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
		var cerr error
		select {
		case cerr = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("CatchUp goes on after Close")
		}
		// Before reopening: Open clears stray files, and the reopened
		// index may start a merge (a temporary file) at once.
		checkFiles(t, dir)
		ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Batch: 10})
		if err != nil {
			t.Fatal(err)
		}
		if cerr == nil && ix.Next() != l.Size() || ix.Next() < durable.Load() {
			t.Fatalf("CatchUp from %d = %v, indexed %d before Close; reopened at %d", from, cerr, durable.Load(), ix.Next())
		}
		t.Logf("round %d: CatchUp from %d = %v after %d; reopened at %d", k, from, cerr, durable.Load(), ix.Next())
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReviewOddEntries: large entries (their leaf a reference), entries
// that are not envelopes, empty fields, non-ASCII words, phrases across
// fields, and cursors at the ends.
func TestReviewOddEntries(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	big := func(i int, words string) []byte {
		leaf, err := event.Encode(event.Envelope{Received: base, Source: "api", Via: "json", Event: event.Event{
			Time: base.Add(time.Duration(i) * time.Second), Actor: event.Actor{ID: "björk"}, Action: "blob.put", Outcome: event.Success,
			Reason: words, Details: []byte(`{"pad":"` + strings.Repeat("ab ", 11000) + ` zz"}`),
			Original: []byte(`"` + strings.Repeat("ab ", 11000) + `"`)}})
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	var leaves [][]byte
	for i := range 330 {
		switch i % 6 {
		case 0:
			if i%80 == 0 { // Match of their text is slow with -race
				leaves = append(leaves, big(i, "Ünïcödé Straße 東京"))
			} else {
				leaves = append(leaves, leafAt(t, base, base, "björk", "Ünïcödé ab zz Straße 東京"))
			}
		case 1:
			leaves = append(leaves, []byte(`{"source":"api","via":"json","event":{"actor":{"id":"ghost"}}}`))
		case 2:
			leaves = append(leaves, []byte(`["not", "an", "envelope", "ab"]`))
		case 3:
			leaves = append(leaves, leafAt(t, base.Add(time.Duration(i)*time.Second), base, "björk", "straße zz"))
		default:
			leaves = append(leaves, leafAt(t, base.Add(time.Duration(i)*time.Second), base, "x", ""))
		}
	}
	appendLeaves(t, l, leaves)
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor = 100, 2 })
	dir := t.TempDir()
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	o := newOracle(t, l, l.Size())
	var queries []client.SearchQuery
	for _, text := range []string{"", "ab", "zz", "straße", "strasse", `"straße zz"`, `"zz ünïcödé"`, "東京", "ün*", `"ab ab ab"`, "ab -zz", "ghost", "björk", `"ab zz"`} {
		queries = append(queries, client.SearchQuery{Text: text, Order: []string{client.Oldest, client.Newest}[len(queries)%2], Limit: 7})
		queries = append(queries, client.SearchQuery{Text: text, Order: []string{client.Oldest, client.Newest}[len(queries)%3%2], Limit: 50, Actor: "björk"})
	}
	queries = append(queries, client.SearchQuery{Action: "blob.put", Limit: 3}, client.SearchQuery{Limit: 11, Order: client.Oldest})
	checkIndex(t, ix, l, o, queries, "indexed")
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Batch: 40}); err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for range 20 {
		if did, err := ix.mergeOnce(t.Context()); err != nil || !did {
			break
		}
	}
	checkIndex(t, ix, l, o, queries[len(queries)-10:], "reopened and merged")

	// A cursor at either end continues with nothing.
	for _, order := range []string{client.Oldest, client.Newest} {
		for _, cq := range []client.SearchQuery{{Order: order}, {Order: order, Text: "ab"}} {
			q, err := ParseQuery(cq.Values(), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			after := int64(math.MaxInt64)
			if order == client.Newest {
				after = 0
			}
			v := cq.Values()
			v.Set("cursor", q.cursor(after))
			if q, err = ParseQuery(v, time.Now()); err != nil {
				t.Fatal(err)
			}
			if got, _, err := ix.Search(t.Context(), q, math.MaxInt64); err != nil || len(got) > 0 {
				t.Errorf("query %v after %d = %v, %v; want nothing", v, after, got, err)
			}
		}
	}
}

// TestReviewDamage: damaged or inconsistent files make Open rebuild, with
// a warning, never panic; segment files damaged with their checksum made
// right again (what the checksum cannot see) make searches and merges
// fail or answer, never panic or hang.
func TestReviewDamage(t *testing.T) {
	tune(t, func(ix *Index) {
		ix.flushEntries, ix.quiet = 1<<30, time.Hour
		ix.noMerge.Store(true)
	})
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(51, 52)
	leaves := g.taggedLeaves(600)
	appendLeaves(t, l, leaves)
	dir := t.TempDir()
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, ix, 200, 600)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 3 {
		t.Fatalf("segment files %v, want 3", segs)
	}
	var m manifest
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	writeManifest := func(d string, edit func(m *manifest)) {
		m2 := m
		m2.Segments = slices.Clone(m.Segments)
		edit(&m2)
		b, _ := json.Marshal(m2)
		if err := os.WriteFile(filepath.Join(d, FileName), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	name := func(k int) string { return filepath.Base(segs[k]) }
	o := newOracle(t, l, 600)
	queries := []client.SearchQuery{{Limit: 100}, {Text: "t0*", Limit: 30, Order: client.Oldest}, {Text: `"zebra deploy"`, Limit: 9}, {Actor: "alice", Limit: 20}}
	rebuilds := func(what string, damage func(d string)) {
		t.Helper()
		d := snapshot(t, dir)
		damage(d)
		var logs bytes.Buffer
		ix, err := Open(t.Context(), Options{Dir: d, Source: l, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("%s: Open: %v", what, err)
		}
		defer ix.Close()
		if ix.Next() != 0 || !strings.Contains(logs.String(), "rebuilding the search index") {
			t.Fatalf("%s: opened at %d, logged %q; want a rebuild", what, ix.Next(), logs.String())
		}
		if err := ix.CatchUp(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		checkIndex(t, ix, l, o, queries, what)
	}
	rebuilds("overlapping ranges", func(d string) {
		writeManifest(d, func(m *manifest) { m.Segments[1].Base -= 10; m.Segments[1].Count += 10 })
	})
	rebuilds("a gap", func(d string) {
		writeManifest(d, func(m *manifest) { m.Segments = slices.Delete(m.Segments, 1, 2) })
	})
	rebuilds("a segment twice", func(d string) {
		writeManifest(d, func(m *manifest) { m.Segments[1] = m.Segments[0] })
	})
	rebuilds("another origin", func(d string) { writeManifest(d, func(m *manifest) { m.Origin = "example.com/other" }) })
	rebuilds("negative progress", func(d string) {
		writeManifest(d, func(m *manifest) { m.Next = -1; m.Segments = nil })
	})
	rebuilds("swapped files", func(d string) {
		a, b := filepath.Join(d, name(0)), filepath.Join(d, name(1))
		os.Rename(a, a+".x")
		os.Rename(b, a)
		os.Rename(a+".x", b)
	})
	rebuilds("a file swapped with one of the same range", func(d string) {
		// A segment of [0, 200) of the same size but other bytes.
		b, _ := os.ReadFile(filepath.Join(d, name(0)))
		b[len(b)/2] ^= 1
		os.WriteFile(filepath.Join(d, name(0)), b, 0o600)
	})
	rebuilds("an empty segment file", func(d string) { os.WriteFile(filepath.Join(d, name(2)), nil, 0o600) })
	rebuilds("a directory in place of a file", func(d string) {
		os.Remove(filepath.Join(d, name(2)))
		os.Mkdir(filepath.Join(d, name(2)), 0o700)
	})
	rebuilds("an empty manifest", func(d string) { os.WriteFile(filepath.Join(d, FileName), nil, 0o600) })
	rebuilds("a manifest with unknown fields", func(d string) {
		os.WriteFile(filepath.Join(d, FileName), []byte(`{"version":"4","extra":1}`), 0o600)
	})

	// Every tenth byte of a segment file flipped: the checksum finds it.
	seg, err := os.ReadFile(segs[1])
	if err != nil {
		t.Fatal(err)
	}
	for at := 0; at < len(seg); at += 1 + len(seg)/60 {
		b := slices.Clone(seg)
		b[at] ^= 0x10
		if s, err := parseSegment(b, true); err == nil {
			t.Fatalf("a segment with byte %d flipped parsed: %d entries", at, s.n)
		}
	}

	// Damage the checksum cannot see: bytes changed and the checksum
	// made right. Open may accept the file; then searches and merges
	// must fail or answer, not panic.
	rng := rand.New(rand.NewPCG(53, 54))
	for round := range damageRounds() {
		d := snapshot(t, dir)
		path := filepath.Join(d, name(round%3))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for range 1 + rng.IntN(4) {
			at := rng.IntN(len(b) - footerSize)
			if rng.IntN(2) == 0 {
				at = headerSize + 200*bytesPerEntry + rng.IntN(len(b)-footerSize-headerSize-200*bytesPerEntry) // the terms
			}
			b[at] ^= byte(1 + rng.IntN(255))
		}
		binary.LittleEndian.PutUint32(b[len(b)-16:], crc32.Checksum(b[:len(b)-16], crcTable))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			tune(t, func(ix *Index) {
				ix.flushEntries, ix.mergeFactor, ix.quiet = 1<<30, 3, time.Hour
				ix.noMerge.Store(true)
			})
			ix, err := Open(t.Context(), Options{Dir: d, Source: l})
			if err != nil {
				t.Fatalf("round %d: Open: %v", round, err)
			}
			defer ix.Close()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for _, cq := range append(queries, client.SearchQuery{Text: "t1*", Limit: 50}, client.SearchQuery{Text: "quartz -t0*", Since: g.base.Add(time.Hour), Limit: 50}) {
					for _, order := range []string{client.Oldest, client.Newest} {
						cq.Order = order
						q, err := ParseQuery(cq.Values(), time.Now())
						if err != nil {
							t.Error(err)
							return
						}
						for page := 0; page < 50; page++ {
							idxs, more, err := ix.Search(t.Context(), q, 600)
							if err != nil || !more {
								break
							}
							q.After = idxs[len(idxs)-1]
						}
					}
				}
				for range 3 {
					ix.mergeOnce(t.Context())
				}
				for i := range int64(600) {
					ix.Locate(i)
				}
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: searches on a damaged segment do not end", round)
			}
		}()
	}
}

// damageRounds is how many damaged segments TestReviewDamage searches:
// $TRAIL_DAMAGE_ROUNDS, default 40.
func damageRounds() int { return envInt("TRAIL_DAMAGE_ROUNDS", 40) }

// TestReviewSearchDuringClose: searches racing merges and Close neither
// panic nor keep files: a merged-away file a search holds is removed when
// it lets go, and after Close searches find nothing.
func TestReviewSearchDuringClose(t *testing.T) {
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor, ix.quiet = 60, 2, 5*time.Millisecond })
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(61, 62)
	leaves := g.taggedLeaves(1200)
	appendLeaves(t, l, leaves)
	for round := range 3 {
		dir := t.TempDir()
		ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 30, Poll: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ix.Start()
		var wg sync.WaitGroup
		var closed atomic.Bool
		for w := range 3 {
			wg.Go(func() {
				for k := 0; k < 2000 && !closed.Load(); k++ {
					cq := client.SearchQuery{Text: []string{"t0*", "quartz", `"zebra deploy"`}[(k+w)%3], Limit: 5}
					if k%2 == 0 {
						cq.Order = client.Oldest
					}
					q, err := ParseQuery(cq.Values(), time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					if _, _, err := ix.Search(context.Background(), q, 1<<40); err != nil {
						t.Error(err)
						return
					}
					ix.Locate(int64(k))
				}
			})
		}
		time.Sleep(time.Duration(20+round*40) * time.Millisecond)
		err = ix.Close()
		closed.Store(true)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		q, _ := ParseQuery(url.Values{"q": {"quartz"}}, time.Now())
		if got, _, err := ix.Search(t.Context(), q, 1<<40); err != nil || len(got) > 0 {
			t.Errorf("Search after Close = %v, %v; want nothing", got, err)
		}
		checkFiles(t, dir)
	}
}

// TestReviewOddTexts: texts with words that are operators elsewhere, case
// and accents, punctuation, and NOTs after a positive term.
func TestReviewOddTexts(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(71, 72)
	leaves := make([][]byte, 700)
	for i := range leaves {
		leaves[i] = g.leaf()
		if i%7 == 0 {
			leaves[i] = leafAt(t, g.base, g.base, "or", []string{"and or not", "NEAR OR", "Ärger ÄRGER ärger", "x-y_z x.y", "o'brien \"quoted\" (paren)", "ǅ ß ﬁ İ"}[i%6])
		}
	}
	appendLeaves(t, l, leaves)
	tune(t, func(ix *Index) { ix.flushEntries = 200 })
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	o := newOracle(t, l, l.Size())
	found := 0
	for _, text := range []string{"or", "and", "not", "OR", "AND", "NOT", "near", `"and or"`, "and OR not", "or -and", "ÄRGER", "ärger*", "Ä*", "x-y", "x.y", "y_z", "x*",
		"o'brien", `"o brien"`, "paren", `"quoted paren"`, "ǅ", "ß", "ss", "ﬁ", "fi", "İ", "i̇", "quartz -zebra -über -deploy", "q* -quartz", `über -"zebra über"`,
		"ÜBER", "uber", "user.login", `"user.login"`, "user*", "日本", "日本語*", `"日本語 quartz"`, "zebra OR über -rollback OR deploy"} {
		if _, err := client.ParseText(text); err != nil {
			t.Logf("ParseText(%q): %v", text, err)
			continue
		}
		for _, order := range []string{client.Oldest, client.Newest} {
			cq := client.SearchQuery{Text: text, Order: order, Limit: 1 + len(text)%9}
			got, want := searchAll(t, ix, cq, l.Size()), o.search(t, cq, l.Size())
			if !slices.Equal(got, want) {
				t.Errorf("query %v:\n got %v\nwant %v", cq.Values(), got, want)
			}
			if len(want) > 0 {
				found++
			}
		}
	}
	if found < 40 {
		t.Errorf("only %d queries found anything", found)
	}
}

// TestReviewPostIter: seeks through postings of every size around the
// block size, in both directions, from any start and with any strides,
// give the entry a scan gives.
func TestReviewPostIter(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	const n = 3000
	for _, count := range []int{1, 2, 127, 128, 129, 255, 256, 257, 383, 384, 385, 1000, n} {
		ids := rng.Perm(n)[:count]
		slices.Sort(ids)
		b := newBuilder(0, n)
		for _, id := range ids {
			b.add(id, &client.SearchDoc{Time: time.Unix(1, 0), Actor: "a", Text: "w"})
		}
		s, err := b.finish()
		if err != nil {
			t.Fatal(err)
		}
		rec, ok, err := s.find([]byte{fieldWord, 'w'})
		if err != nil || !ok || rec.count != count {
			t.Fatalf("find(w) = %d entries, %v, %v; want %d", rec.count, ok, err, count)
		}
		for round := range 200 {
			desc := round%2 == 1
			var errp error
			it := newPostIter(rec, n, desc, &errp)
			x := rng.IntN(n + 20)
			if !desc {
				x -= 20
			}
			for step := 0; step < 2*n; step++ {
				want, wok := -1, false
				for _, id := range ids {
					if !desc && id >= x {
						want, wok = id, true
						break
					}
					if desc && id <= x {
						want, wok = id, true
					}
				}
				got, gok := it.seek(x)
				if gok != wok || gok && got != want || errp != nil {
					t.Fatalf("%d entries, desc %v: seek(%d) = %d, %v (%v); want %d, %v", count, desc, x, got, gok, errp, want, wok)
				}
				if !gok {
					break
				}
				// Next target: the entry itself, one past, or a jump.
				switch d := rng.IntN(4); {
				case d == 0:
				case desc:
					x = got - 1 - rng.IntN(1+d*d*40)
				default:
					x = got + 1 + rng.IntN(1+d*d*40)
				}
			}
		}
	}
}

// TestReviewFlushFails: flushes that fail (the manifest not written) lose
// nothing: the entries stay searchable in memory, the flusher retries,
// and no file of the failed flushes is left.
func TestReviewFlushFails(t *testing.T) {
	var fails atomic.Int64
	fails.Store(1) // the flusher retries after a second
	var durableNext atomic.Int64
	tune(t, func(ix *Index) {
		ix.flushEntries, ix.mergeFactor, ix.quiet = 100, 2, 5*time.Millisecond
		ix.beforeManifest = func(next int64) error {
			if next > 0 && fails.Add(-1) >= 0 {
				return errors.New("disk full")
			}
			durableNext.Store(next)
			return nil
		}
	})
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(91, 92)
	leaves := g.taggedLeaves(500)
	dir := t.TempDir()
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 50, Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	ix.Start()
	appendLeaves(t, l, leaves)
	if !ix.WaitFor(t.Context(), 500, 10*time.Second) {
		t.Fatalf("indexed %d of 500", ix.Next())
	}
	o := newOracle(t, l, 500)
	queries := []client.SearchQuery{{Limit: 77}, {Text: "t0*", Limit: 9, Order: client.Oldest}, {Text: `"zebra deploy"`, Limit: 5}}
	checkIndex(t, ix, l, o, queries, "flushes failing")
	waitFor(t, func() bool { return durableNext.Load() == 500 })
	checkIndex(t, ix, l, o, queries, "flushed")
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, dir)
	if fails.Load() >= 0 {
		t.Fatal("no flush failed")
	}
}
