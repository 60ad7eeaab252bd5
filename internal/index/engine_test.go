package index

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/searchdoc"
)

// searchAll returns every result of cq below bound, page by page.
func searchAll(t *testing.T, ix *Index, cq client.SearchQuery, bound int64) []int64 {
	t.Helper()
	var got []int64
	v := cq.Values()
	for pages := 0; ; pages++ {
		if pages > 100_000 {
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
			return got
		}
		v.Set("cursor", q.cursor(idxs[len(idxs)-1]))
	}
}

// appendLeaves appends leaves to l in batches of up to 500.
func appendLeaves(t *testing.T, l *ledger.Log, leaves [][]byte) {
	t.Helper()
	for i := 0; i < len(leaves); i += 500 {
		if _, err := l.Append(t.Context(), leaves[i:min(i+500, len(leaves))]...); err != nil {
			t.Fatal(err)
		}
	}
}

// writeFiles indexes entries [0, total) into files of step entries each.
func writeFiles(t *testing.T, ix *Index, step, total int64) {
	t.Helper()
	for end := step; end <= total; end += step {
		if err := ix.catchUpTo(t.Context(), end); err != nil {
			t.Fatal(err)
		}
		if err := ix.flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// taggedLeaves returns n leaves made by taggedLeaf.
func (g *gen) taggedLeaves(n int) [][]byte {
	leaves := make([][]byte, n)
	for i := range leaves {
		leaves[i] = g.taggedLeaf()
	}
	return leaves
}

// taggedLeaf is a gen leaf with a tag of 200 ("t000" to "t199"): a
// prefix such as t0* expands to many terms.
func (g *gen) taggedLeaf() []byte {
	env, err := event.DecodeLeaf(g.leaf())
	if err != nil {
		panic(err)
	}
	env.Event.Details, _ = json.Marshal(map[string]any{"tag": fmt.Sprintf("t%03d", g.rng.IntN(200)),
		"note": g.pick(genWords) + " " + g.pick(genWords) + " " + g.pick(genWords)})
	leaf, err := event.Encode(env)
	if err != nil {
		panic(err)
	}
	return leaf
}

// TestTextAgainstBruteForce checks prefixes, phrases, ORs and NOTs, alone
// and with filters, against a scan of the log, over segment files and
// segments in memory.
func TestTextAgainstBruteForce(t *testing.T) {
	tune(t, func(ix *Index) { ix.flushEntries, ix.quiet = 1<<30, time.Hour })
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(5, 6)
	leaves := g.taggedLeaves(2500)
	leaves = append(leaves, []byte(`{"not":"an envelope","quartz":"quartz"}`))
	appendLeaves(t, l, leaves)
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for _, end := range []int64{1500, 2000, int64(len(leaves))} {
		if err := ix.catchUpTo(t.Context(), end); err != nil {
			t.Fatal(err)
		}
		if end < int64(len(leaves)) {
			if err := ix.flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries := decodeAll(t, leaves[:len(leaves)-1])
	entries = append(entries, decoded{text: "\x00"}) // matches no text
	texts := []string{"quartz", "roll*", "t0*", "t1*", `"user login"`, `"zebra deploy"`, `"zebra d"*`, `"user l"*`,
		`-"user login" quartz`, `deploy -t0*`, `"db password" OR quartz`, `uber OR "user login"`, `über -zebra -roll*`,
		"日本語", "u* -user", `"quartz quartz"`, "t00* OR t19*", "t199", "10 0", `"10 0 0"`, `"0 0 1"`, "t*", "nosuchword",
		`"alice 10"`, `-"zebra zebra" zebra`, "z* d*"}
	nonEmpty := 0
	for n := range 400 {
		cq := client.SearchQuery{Text: texts[n%len(texts)], Limit: 1 + g.rng.IntN(60)}
		if n >= len(texts) {
			f := g.query()
			f.Text, f.Limit = cq.Text, cq.Limit
			cq = f
		}
		if g.rng.IntN(2) == 0 {
			cq.Order = client.Oldest
		}
		bound := int64(len(leaves))
		if n%7 == 0 {
			bound = int64(g.rng.IntN(len(leaves)))
		}
		want := bruteForce(t, entries[:bound], cq)
		if got := searchAll(t, ix, cq, bound); !slices.Equal(got, want) {
			t.Fatalf("query %v below %d:\n got %v\nwant %v", cq.Values(), bound, got, want)
		}
		if len(want) > 0 {
			nonEmpty++
		}
	}
	if nonEmpty < 150 {
		t.Errorf("only %d of 400 queries matched anything", nonEmpty)
	}
	v := ix.acquire()
	defer ix.releaseView(v)
	if v.disk < 2 || len(v.segs) == v.disk {
		t.Errorf("searched %d segment files and %d in memory; want both kinds", v.disk, len(v.segs)-v.disk)
	}
}

// TestMerges: merging segment files changes no result, and a crash
// during a merge (the merged file written, the manifest not) leaves the
// index as it was, the merged file removed at the next start.
func TestMerges(t *testing.T) {
	crash := errors.New("crash")
	var crashing bool
	tune(t, func(ix *Index) {
		ix.flushEntries, ix.mergeFactor, ix.maxSegment, ix.quiet = 1<<30, 4, 1<<20, time.Hour
		ix.noMerge.Store(true)
		ix.beforeMergeManifest = func() error {
			if crashing {
				return crash
			}
			return nil
		}
	})
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(7, 8)
	leaves := g.taggedLeaves(3000)
	appendLeaves(t, l, leaves)
	dir := t.TempDir()
	ix, err := Open(t.Context(), Options{Dir: dir, Source: l, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	// Index and flush batch by batch: 15 files of 200 entries.
	writeFiles(t, ix, 200, 3000)
	entries := decodeAll(t, leaves)
	var queries []client.SearchQuery
	var want [][]int64
	for range 150 {
		cq := g.query()
		if g.rng.IntN(3) == 0 {
			cq.Text = []string{"t0*", `"zebra deploy"`, "quartz -roll*", "t123 OR t124"}[g.rng.IntN(4)]
		}
		queries = append(queries, cq)
		want = append(want, bruteForce(t, entries, cq))
	}
	check := func(when string, ix *Index) {
		t.Helper()
		for i, cq := range queries {
			if got := searchAll(t, ix, cq, 3000); !slices.Equal(got, want[i]) {
				t.Fatalf("%s: query %v:\n got %v\nwant %v", when, cq.Values(), got, want[i])
			}
		}
	}
	files := func(ix *Index) int {
		v := ix.acquire()
		defer ix.releaseView(v)
		return v.disk
	}
	if n := files(ix); n != 15 {
		t.Fatalf("%d segment files, want 15", n)
	}
	check("before merging", ix)

	crashing = true
	if _, err := ix.mergeOnce(t.Context()); !errors.Is(err, crash) {
		t.Fatalf("mergeOnce = %v, want the injected crash", err)
	}
	check("after a failed merge", ix)
	// The crash left the merged file behind, as a real one would.
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(names) != 15 {
		// The index removes what it wrote when the manifest fails; put
		// back what a crash would have left.
		if err := os.WriteFile(filepath.Join(dir, segName(0, 800)), []byte("half a merge"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	crashing = false
	if ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Batch: 100}); err != nil {
		t.Fatal(err)
	}
	defer func() { ix.Close() }()
	checkFiles(t, dir)
	if n := files(ix); n != 15 {
		t.Fatalf("reopened after a crashed merge: %d segment files, want 15", n)
	}
	check("reopened after a crashed merge", ix)

	for range 20 {
		did, err := ix.mergeOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !did {
			break
		}
	}
	if n := files(ix); n >= 15 || n > 6 {
		t.Fatalf("after merging: %d segment files", n)
	}
	check("after merging", ix)
	checkFiles(t, dir)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Batch: 100}); err != nil {
		t.Fatal(err)
	}
	check("reopened after merging", ix)

	ix.Close()

	// The background merger merges as the follower flushes.
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor = 200, 4 })
	dir = t.TempDir()
	if ix, err = Open(t.Context(), Options{Dir: dir, Source: l, Batch: 100}); err != nil {
		t.Fatal(err)
	}
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return files(ix) <= 6 })
	check("merged in the background", ix)
}

// catchUpTo indexes entries up to end, in memory.
func (ix *Index) catchUpTo(ctx context.Context, end int64) error {
	for next := ix.Next(); next < end; next = ix.Next() {
		s, err := ix.build(ctx, next, min(end, next+int64(ix.opts.Batch)))
		if err != nil {
			return err
		}
		ix.publish(s)
	}
	return nil
}

// TestLocate: the index records where each entry lies in its bundle, also
// when a batch starts in the middle of one.
func TestLocate(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	defer l.Close()
	g := newGen(9, 10)
	var leaves [][]byte
	for i := range 1000 {
		leaf := g.leaf()
		if i%97 == 0 {
			leaf = []byte(`{"not":"an envelope"}`)
		}
		leaves = append(leaves, leaf)
	}
	for i := 0; i < len(leaves); i += 77 { // appends that end mid-bundle
		if _, err := l.Append(t.Context(), leaves[i:min(i+77, len(leaves))]...); err != nil {
			t.Fatal(err)
		}
	}
	// Full bundles are at their C2SP paths, read below, once a checkpoint
	// covers them.
	if _, err := l.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	tune(t, func(ix *Index) { ix.flushEntries = 300 })
	ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.catchUpTo(t.Context(), 130); err != nil { // later batches start at 130, 230, ...
		t.Fatal(err)
	}
	if err := ix.CatchUp(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int64{-1, 1000, 5000} {
		if _, _, ok := ix.Locate(i); ok {
			t.Errorf("Locate(%d) found an entry the index does not hold", i)
		}
	}
	for n := int64(0); n < 1000/c2sp.TileWidth; n++ {
		b, err := os.ReadFile(filepath.Join(dir, "log", filepath.FromSlash(c2sp.Tile{Level: c2sp.EntriesLevel, N: n, Width: c2sp.TileWidth}.Path())))
		if err != nil {
			t.Fatal(err)
		}
		for i := n * c2sp.TileWidth; i < (n+1)*c2sp.TileWidth; i++ {
			off, size, ok := ix.Locate(i)
			if !ok || off < 2 || off+int64(size) > int64(len(b)) || !bytes.Equal(b[off:off+int64(size)], leaves[i]) ||
				int(binary.BigEndian.Uint16(b[off-2:])) != size {
				t.Fatalf("Locate(%d) = %d, %d, %v: not the entry in bundle %d", i, off, size, ok, n)
			}
		}
	}
	for i := range int64(1000) {
		off, size, ok := ix.Locate(i)
		if !ok {
			t.Fatalf("Locate(%d) found nothing", i)
		}
		leaf, err := l.ReadEntryAt(t.Context(), i, off, size)
		if err != nil || !bytes.Equal(leaf, leaves[i]) {
			t.Fatalf("ReadEntryAt(%d, Locate) = %q, %v", i, leaf, err)
		}
	}
}

// TestPlanText: the index reads back every term of a text query from its
// FTS5 rendering.
func TestPlanText(t *testing.T) {
	for _, c := range []struct {
		q    string
		want textPlan
	}{
		{"quartz", textPlan{groups: [][]textTerm{{{words: []string{"quartz"}}}}}},
		{`roll* OR "user login" -"a b"* -c`, textPlan{groups: [][]textTerm{{{words: []string{"roll"}, prefix: true}, {words: []string{"user", "login"}}}},
			not: []textTerm{{words: []string{"a", "b"}, prefix: true}, {words: []string{"c"}}}, verify: true}},
		{"a b OR c d", textPlan{groups: [][]textTerm{{{words: []string{"a"}}}, {{words: []string{"b"}}, {words: []string{"c"}}}, {{words: []string{"d"}}}}}},
		{"日本語 über", textPlan{groups: [][]textTerm{{{words: []string{"日本語"}}}, {{words: []string{"über"}}}}}},
	} {
		tq, err := client.ParseText(c.q)
		if err != nil {
			t.Fatal(err)
		}
		got, err := planText(tq)
		if err != nil {
			t.Fatalf("planText(%q): %v", c.q, err)
		}
		if fmt.Sprint(*got) != fmt.Sprint(c.want) {
			t.Errorf("planText(%q) = %+v, want %+v", c.q, *got, c.want)
		}
	}
}

// testSegment builds a segment in memory of n synthetic entries.
func testSegment(t testing.TB, base int64, n int) []byte {
	b := newBuilder(base, n)
	for i := range n {
		if i%5 == 4 {
			continue
		}
		doc := client.SearchDoc{Time: time.Unix(int64(i), 0), Received: time.Unix(int64(2*i), 0), Actor: fmt.Sprint("a", i%3),
			Outcome: "success", Source: "s", Via: "json", Text: fmt.Sprintf("w%d common x%d", i%7, i)}
		b.add(i, &doc)
	}
	s, err := b.finish()
	if err != nil {
		t.Fatal(err)
	}
	return s.data
}

// TestSegmentRoundTrip: a segment reads back what was written, and a merge
// of segments equals the segment of all their entries.
func TestSegmentRoundTrip(t *testing.T) {
	whole, err := parseSegment(testSegment(t, 0, 700), true)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := whole.find([]byte{fieldWord, 'c', 'o', 'm', 'm', 'o', 'n'})
	if err != nil || !ok || rec.count != 560 {
		t.Fatalf("find(common) = %+v, %v, %v; want 560 entries", rec.count, ok, err)
	}
	ids, err := decodePostings(nil, rec.postings, rec.count, whole.n)
	if err != nil {
		t.Fatal(err)
	}
	for k, id := range ids {
		if id%5 == 4 || k > 0 && id <= ids[k-1] {
			t.Fatalf("postings of common: %v", ids)
		}
	}
	// Seek both ways through the skip table.
	for _, desc := range []bool{false, true} {
		var errp error
		it := newPostIter(rec, whole.n, desc, &errp)
		var got []uint32
		x := 0
		if desc {
			x = whole.n - 1
		}
		for range whole.n {
			v, ok := it.seek(x)
			if !ok {
				break
			}
			got = append(got, uint32(v))
			if x = v + 1; desc {
				x = v - 1
			}
		}
		if desc {
			slices.Reverse(got)
		}
		if errp != nil || !slices.Equal(got, ids) {
			t.Fatalf("iterating (desc %v): %v, %v", desc, errp, got)
		}
	}
	a, _ := parseSegment(testSegment(t, 0, 700), false)
	var parts []*segment
	for base := 0; base < 700; base += 350 {
		b := newBuilder(int64(base), 350)
		for i := base; i < base+350; i++ {
			if i%5 == 4 {
				continue
			}
			doc := client.SearchDoc{Time: time.Unix(int64(i), 0), Received: time.Unix(int64(2*i), 0), Actor: fmt.Sprint("a", i%3),
				Outcome: "success", Source: "s", Via: "json", Text: fmt.Sprintf("w%d common x%d", i%7, i)}
			b.add(i-base, &doc)
		}
		s, err := b.finish()
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, s)
	}
	var merged bytes.Buffer
	if err := mergeSegments(t.Context(), parts, &merged); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(merged.Bytes(), a.data) {
		t.Fatalf("a merge of two halves (%d bytes) differs from the whole (%d bytes)", merged.Len(), len(a.data))
	}
}

// FuzzSegment: no bytes make the segment reader panic, or loop without end.
func FuzzSegment(f *testing.F) {
	f.Add(testSegment(f, 0, 200))
	f.Add(testSegment(f, 7, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseSegment(b, false)
		if err != nil {
			return
		}
		c := s.cursorAt(0)
		for range min(s.nterms, 40) {
			if !c.next() {
				break
			}
			var errp error
			for _, desc := range []bool{false, true} {
				it := newPostIter(c.rec, s.n, desc, &errp)
				for x, k := 0, 0; k < 20; k++ {
					v, ok := it.seek(x)
					if !ok {
						break
					}
					x = v + 1
					if desc {
						x = v - 1
					}
				}
			}
			decodePostings(nil, c.rec.postings, c.rec.count, s.n)
		}
		for _, term := range []string{"5common", "0a1", "7x1", ""} {
			s.find([]byte(term))
			s.prefix([]byte(term), func(termRec) error { return nil })
		}
		mergeSegments(context.Background(), []*segment{s}, io.Discard)
		for i := range s.n {
			s.time(i)
			s.locate(i)
		}
		for k := range (s.n + blockEntries - 1) / blockEntries {
			s.block(k)
		}
	})
}

// FuzzAddFields: the index's terms of an entry searchdoc.Read reads are
// those of client.DocOf's document (whose fast path is checked against
// encoding/json by the client's FuzzFastDocOf).
func FuzzAddFields(f *testing.F) {
	g := newGen(11, 12)
	for i := range 20 {
		f.Add(g.leaf())
		f.Add(g.taggedLeaf())
		ev, _ := benchEvent(nil, int64(i), 1)
		f.Add(ev)
	}
	for _, s := range []string{
		`{"source":"a","via":"b","event":{"details":{"a":"\u00e9t\u00e9","b":[1,2.5e3,-0,true,null]},"original":"x y"}}`,
		`{"source":"a","via":"b","event":{"time":"2026-11-02T10:00:00+01:00","reason":"Zürich ÜBER"}}`,
		`{"source":"S S","via":"b","event":{"actor":{"id":"S","type":"s s"},"resource":{"type":"a.b","id":""}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		f, ok := searchdoc.Read(b)
		if !ok {
			return
		}
		want, err := client.DocOf(b)
		if err != nil {
			t.Fatalf("searchdoc.Read(%q) read an envelope, DocOf fails: %v", b, err)
		}
		byFields, byText := newBuilder(0, 2), newBuilder(0, 2)
		byFields.addFields(1, &f)
		byFields.addFields(0, &f)
		byText.add(1, &want)
		byText.add(0, &want)
		s1, err1 := byFields.finish()
		s2, err2 := byText.finish()
		if err1 != nil || err2 != nil || !bytes.Equal(s1.data, s2.data) {
			t.Fatalf("the segment of %q from its fields differs from the one from DocOf's text (%v, %v)", b, err1, err2)
		}
	})
}

// TestDocOfReadsEnvelopes: the fast reading handles the envelopes the
// server writes, not only leaves them to DocOf, and indexes the terms of
// DocOf's document.
func TestDocOfReadsEnvelopes(t *testing.T) {
	g := newGen(13, 14)
	for i := range 2000 {
		leaf := g.leaf()
		if i%2 == 0 {
			leaf, _ = benchEvent(nil, int64(i), 1)
		}
		f, ok := searchdoc.Read(leaf)
		want, err := client.DocOf(leaf)
		if !ok || err != nil {
			t.Fatalf("searchdoc.Read(%s) = %v; DocOf = %+v, %v", leaf, ok, want, err)
		}
		byFields, byText := newBuilder(0, 1), newBuilder(0, 1)
		byFields.addFields(0, &f)
		byText.add(0, &want)
		s1, _ := byFields.finish()
		s2, _ := byText.finish()
		if !bytes.Equal(s1.data, s2.data) {
			t.Fatalf("the segment of %s from its fields differs from the one from DocOf's text", leaf)
		}
	}
}

// TestCloseStopsGoroutines: Close stops the follower, the flusher and the
// merger.
func TestCloseStopsGoroutines(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := newGen(15, 16)
	leaves := make([][]byte, 600)
	for i := range leaves {
		leaves[i] = g.leaf()
	}
	appendLeaves(t, l, leaves[:300])
	tune(t, func(ix *Index) { ix.flushEntries, ix.mergeFactor = 100, 2 })
	before := runtime.NumGoroutine()
	for range 3 {
		ix, err := Open(t.Context(), Options{Dir: t.TempDir(), Source: l, Batch: 50, Poll: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ix.Start()
		waitFor(t, func() bool { return ix.Next() == l.Size() })
		if err := ix.Close(); err != nil {
			t.Fatal(err)
		}
	}
	appendLeaves(t, l, leaves[300:])
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}
