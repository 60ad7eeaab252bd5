package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage"
	"github.com/trailaudit/trail/internal/storage/fs"
)

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
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// refTree computes RFC 6962 roots and proofs directly from the leaf hashes,
// independently of the ledger's tiles.
type refTree []tlog.Hash

func (r refTree) root(lo, hi int64) tlog.Hash {
	if hi-lo == 1 {
		return r[lo]
	}
	k := int64(1)
	for k*2 < hi-lo {
		k *= 2
	}
	return tlog.NodeHash(r.root(lo, lo+k), r.root(lo+k, hi))
}

func (r refTree) hashReader() tlog.HashReaderFunc {
	return func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			level, n := tlog.SplitStoredHashIndex(x)
			out[i] = r.root(n<<level, (n+1)<<level)
		}
		return out, nil
	}
}

func TestAppendProveProperty(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	var ref refTree
	var all [][]byte
	sizes := []int64{}
	total := 70000 // past one level-1 tile (65,536 entries)
	if testing.Short() {
		total = 3000
	}
	for len(all) < total {
		n := 1 + rng.IntN(600)
		if rng.IntN(4) == 0 {
			n = 1
		}
		batch := make([][]byte, n)
		for i := range batch {
			batch[i] = fmt.Appendf(nil, `{"i":%d,"r":%d}`, len(all)+i, rng.Uint64())
		}
		first, err := l.Append(ctx, batch...)
		if err != nil {
			t.Fatal(err)
		}
		if first != int64(len(all)) {
			t.Fatalf("Append returned %d, want %d", first, len(all))
		}
		for _, e := range batch {
			ref = append(ref, tlog.RecordHash(e))
		}
		all = append(all, batch...)
		sizes = append(sizes, int64(len(all)))
		if rng.IntN(8) == 0 {
			l.Close()
			l = openLog(t, dir)
		}
	}
	defer l.Close()
	for range 300 {
		size := sizes[rng.IntN(len(sizes))]
		root, err := l.TreeHash(ctx, size)
		if err != nil {
			t.Fatal(err)
		}
		if want := ref.root(0, size); root != want {
			t.Fatalf("TreeHash(%d) = %x, want %x", size, root, want)
		}
		idx := rng.Int64N(size)
		p, err := l.ProveInclusion(ctx, idx, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, size, root, idx, ref[idx]); err != nil {
			t.Fatalf("CheckRecord(%d in %d): %v", idx, size, err)
		}
		want, _ := tlog.ProveRecord(size, idx, ref.hashReader())
		if fmt.Sprint(want) != fmt.Sprint(p) {
			t.Fatalf("ProveInclusion(%d, %d) differs from the reference proof", idx, size)
		}
		from := sizes[rng.IntN(len(sizes))]
		if from > size {
			from, size = size, from
			root = ref.root(0, size)
		}
		tp, err := l.ProveConsistency(ctx, from, size)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckTree(tp, size, root, from, ref.root(0, from)); err != nil {
			t.Fatalf("CheckTree(%d to %d): %v", from, size, err)
		}
		e, err := l.ReadEntry(ctx, idx)
		if err != nil || !bytes.Equal(e, all[idx]) {
			t.Fatalf("ReadEntry(%d) = %q, %v; want %q", idx, e, err, all[idx])
		}
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := note.NewVerifier(mustVKey(t, dir))
	n, err := note.Open(cp.Note, note.VerifierList(verifier))
	if err != nil {
		t.Fatal(err)
	}
	c, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil || c.Size != int64(len(all)) || c.Hash != ref.root(0, c.Size) {
		t.Fatalf("checkpoint %+v, %v; want size %d", c, err, len(all))
	}
}

func mustVKey(t *testing.T, dir string) string {
	k, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	return k.VerifierKey
}

func TestConcurrentAppend(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	var wg sync.WaitGroup
	got := make([]map[int64]string, 16)
	for w := range got {
		got[w] = map[int64]string{}
		wg.Go(func() {
			for i := range 200 {
				e := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				idx, err := l.Append(t.Context(), []byte(e))
				if err != nil {
					t.Error(err)
					return
				}
				got[w][idx] = e
			}
		})
	}
	wg.Wait()
	if l.Size() != 16*200 {
		t.Fatalf("Size() = %d, want %d", l.Size(), 16*200)
	}
	for _, m := range got {
		for idx, want := range m {
			e, err := l.ReadEntry(t.Context(), idx)
			if err != nil || string(e) != want {
				t.Fatalf("ReadEntry(%d) = %q, %v; want %q", idx, e, err, want)
			}
		}
	}
}

func TestLargeEntry(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	big := bytes.Repeat([]byte("0123456789"), 20000)
	idx, err := l.Append(t.Context(), []byte("small"), big)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := l.ReadEntry(t.Context(), idx+1)
	if err != nil {
		t.Fatal(err)
	}
	ref, ok, err := ledger.ParseLargeRef(leaf)
	if !ok || err != nil || ref.SHA256 != sha256.Sum256(big) || ref.Size != int64(len(big)) {
		t.Fatalf("ParseLargeRef(%q) = %+v, %v, %v", leaf, ref, ok, err)
	}
	body, err := l.Body(t.Context(), leaf)
	if err != nil || !bytes.Equal(body, big) {
		t.Fatalf("Body = %d bytes, %v; want %d bytes", len(body), err, len(big))
	}
	if _, err := l.Append(t.Context(), leaf); !errors.Is(err, ledger.ErrReserved) {
		t.Fatalf("Append(reference) = %v, want ErrReserved", err)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	ctx := t.Context()
	if _, err := l.Append(ctx); !errors.Is(err, ledger.ErrEmpty) {
		t.Errorf("Append() = %v, want ErrEmpty", err)
	}
	if _, err := l.Append(ctx, []byte("a"), nil); !errors.Is(err, ledger.ErrEmpty) {
		t.Errorf("Append(a, nil) = %v, want ErrEmpty", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(cctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Append(cancelled) = %v, want context.Canceled", err)
	}
	if _, err := l.Append(ctx, make([]byte, ledger.MaxEntrySize+1)); !errors.Is(err, ledger.ErrTooBig) {
		t.Errorf("Append(huge) = %v, want ErrTooBig", err)
	}
	if l.Size() != 0 {
		t.Errorf("Size() = %d after rejected appends, want 0", l.Size())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, []byte("x")); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	l = openLog(t, dir)
	defer l.Close()
	if l.Size() != 0 {
		t.Errorf("reopened Size() = %d, want 0", l.Size())
	}
}

func TestLeafHash(t *testing.T) {
	ctx := t.Context()
	l := openLog(t, t.TempDir())
	t.Cleanup(func() { l.Close() })
	var leaves [][]byte
	for i := range 600 {
		leaves = append(leaves, fmt.Appendf(nil, "entry %d", i))
	}
	if _, err := l.Append(ctx, leaves...); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int64{0, 255, 256, 511, 599} {
		got, err := l.LeafHash(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if want := tlog.RecordHash(leaves[i]); got != want {
			t.Errorf("LeafHash(%d) = %x, want %x", i, got, want)
		}
	}
	if _, err := l.LeafHash(ctx, 600); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("LeafHash(600) = %v, want ErrNotFound", err)
	}
}

// TestReadEntryAt reads entries at their places in sealed and staged
// bundles, and refuses every wrong place: the places come from the search
// index, which is not trusted.
func TestReadEntryAt(t *testing.T) {
	ctx := t.Context()
	l := openLog(t, t.TempDir())
	t.Cleanup(func() { l.Close() })
	rng := rand.New(rand.NewPCG(5, 6))
	var leaves [][]byte
	for i := range 600 { // two sealed bundles and a staged one
		leaves = append(leaves, fmt.Appendf(nil, "entry %d %s", i, bytes.Repeat([]byte{'x'}, rng.IntN(300))))
	}
	if _, err := l.Append(ctx, leaves...); err != nil {
		t.Fatal(err)
	}
	// Each entry's data follows its 2-byte length in the bundle.
	offs := make([]int64, len(leaves))
	var at int64
	for i, leaf := range leaves {
		if i%c2sp.TileWidth == 0 {
			at = 0
		}
		offs[i] = at + 2
		at += 2 + int64(len(leaf))
	}
	for _, i := range []int64{0, 1, 255, 256, 300, 511, 512, 599} {
		got, err := l.ReadEntryAt(ctx, i, offs[i], len(leaves[i]))
		if err != nil || !bytes.Equal(got, leaves[i]) {
			t.Errorf("ReadEntryAt(%d) = %q, %v; want %q", i, got, err, leaves[i])
		}
	}
	for _, tc := range []struct {
		name  string
		index int64
		off   int64
		n     int
	}{
		{"another entry's place", 3, offs[4], len(leaves[4])},
		{"one byte off", 300, offs[300] + 1, len(leaves[300])},
		{"one byte short", 300, offs[300], len(leaves[300]) - 1},
		{"beyond the bundle", 599, 1 << 20, 10},
		{"negative offset", 5, -1, 10},
	} {
		if got, err := l.ReadEntryAt(ctx, tc.index, tc.off, tc.n); !errors.Is(err, ledger.ErrMisplaced) {
			t.Errorf("%s: ReadEntryAt = %q, %v; want ErrMisplaced", tc.name, got, err)
		}
	}
	if _, err := l.ReadEntryAt(ctx, 600, 2, 5); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReadEntryAt(600) = %v, want ErrNotFound", err)
	}
}

// TestInterior covers the derived copy of each full level-0 tile's hashes of
// height 4 (storage.InteriorStore): written as tiles fill, used for proofs
// after a restart, rebuilt when missing or wrong, and never trusted over
// the tree. The copy serves the tiles under full level-1 tiles: those under
// the edge are read whole when the log opens.
func TestInterior(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	l := openLog(t, dir)
	const tiles = c2sp.TileWidth + 1 // one full level-1 tile, and one more
	var ref refTree
	for len(ref) < tiles*c2sp.TileWidth+10 {
		batch := make([][]byte, min(1000, tiles*c2sp.TileWidth+10-len(ref)))
		for i := range batch {
			batch[i] = fmt.Appendf(nil, `{"i":%d}`, len(ref)+i)
		}
		if _, err := l.Append(ctx, batch...); err != nil {
			t.Fatal(err)
		}
		for _, e := range batch {
			ref = append(ref, tlog.RecordHash(e))
		}
	}
	size := int64(len(ref))
	l.Close()

	path := filepath.Join(dir, "state", "interior")
	want := func(n int) []byte {
		var b []byte
		for g := range storage.InteriorWidth {
			lo := int64(n*c2sp.TileWidth + g*16)
			h := ref.root(lo, lo+16)
			b = append(b, h[:]...)
		}
		return b
	}
	checkFile := func(when string, n int) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < n*512 {
			t.Fatalf("%s: state/interior holds %d bytes, want at least %d", when, len(got), n*512)
		}
		for k := range n {
			if !bytes.Equal(got[k*512:(k+1)*512], want(k)) {
				t.Fatalf("%s: state/interior of tile %d differs from the tree's hashes of height 4", when, k)
			}
		}
	}
	checkFile("after appends", tiles)
	root := ref.root(0, size)
	// prove proves every entry of the first five tiles.
	prove := func(l *ledger.Log, skip func(int64) bool) {
		t.Helper()
		for idx := range int64(5 * c2sp.TileWidth) {
			if skip != nil && skip(idx) {
				continue
			}
			p, err := l.ProveInclusion(ctx, idx, size)
			if err != nil {
				t.Fatalf("ProveInclusion(%d): %v", idx, err)
			}
			if err := tlog.CheckRecord(p, size, root, idx, ref[idx]); err != nil {
				t.Fatalf("CheckRecord(%d): %v", idx, err)
			}
		}
	}
	l = openLog(t, dir)
	prove(l, nil)
	l.Close()

	// Tile 1's record garbage, tile 2's zeros (a hole), the others beyond
	// the end: the proofs are still right, and the records are rewritten.
	b, _ := os.ReadFile(path)
	for i := 512; i < 1024; i++ {
		b[i] ^= 0x5a
	}
	clear(b[1024:1536])
	if err := os.WriteFile(path, b[:3*512], 0o600); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir)
	prove(l, nil)
	l.Close()
	checkFile("after proofs over a damaged copy", 5)

	// A damaged leaf hash in tile 0 is found by the proofs that hash it,
	// named as corruption of the tile; the other groups still prove.
	tile := filepath.Join(dir, "log", "tile", "0", "000")
	tb, err := os.ReadFile(tile)
	if err != nil {
		t.Fatal(err)
	}
	tb[3*32] ^= 1
	if err := os.WriteFile(tile, tb, 0o644); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir)
	defer l.Close()
	prove(l, func(idx int64) bool { return idx < 16 })
	_, err = l.ProveInclusion(ctx, 5, size)
	var ce *storage.CorruptionError
	if !errors.As(err, &ce) || ce.Where != "tile/0/000" {
		t.Fatalf("ProveInclusion over a damaged leaf hash: %v, want corruption of tile/0/000", err)
	}
}
