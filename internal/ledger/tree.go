package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/storage"
)

// edge is the right edge of the tree: for each tile level L, the hashes (of
// Merkle level 8·L) in the tile not yet full. Everything left of the edge is
// in full tiles in storage.
//
// The committer appends to its own edge and publishes copies of the slice
// headers. Elements below a published length are never written again: a
// full tile's slice is replaced, not reused. So readers use a snapshot
// without locks.
type edge struct {
	size   int64
	levels [][]tlog.Hash
}

func (e *edge) snapshot() edge {
	return edge{size: e.size, levels: append([][]tlog.Hash(nil), e.levels...)}
}

// push adds one leaf hash, collecting the full tiles of level 1 and above
// that it completes into tiles, and the interior (see interiorOf) of the
// level-0 tile it completes into interiors.
func (e *edge) push(h tlog.Hash, tiles *[]storage.Tile, interiors *[]interior) {
	e.size++
	for level := 0; ; level++ {
		if len(e.levels) <= level {
			e.levels = append(e.levels, make([]tlog.Hash, 0, c2sp.TileWidth))
		}
		e.levels[level] = append(e.levels[level], h)
		if len(e.levels[level]) < c2sp.TileWidth {
			return
		}
		full := e.levels[level]
		n := (e.size>>(c2sp.TileHeight*level))/c2sp.TileWidth - 1
		e.levels[level] = make([]tlog.Hash, 0, c2sp.TileWidth)
		if level > 0 {
			*tiles = append(*tiles, storage.Tile{Level: level, N: n, Hashes: full})
			h = subtreeHash(full)
			continue
		}
		// The tile's root costs the same 255 hashes either way.
		in := interiorOf(full)
		*interiors = append(*interiors, interior{n: n, hashes: in})
		h = subtreeHash(in)
	}
}

// interior is the interior of full level-0 tile n (see interiorOf).
type interior struct {
	n      int64
	hashes []tlog.Hash
}

// interiorOf returns the storage.InteriorWidth hashes of height 4 of a full
// level-0 tile, each the root of 16 leaves.
func interiorOf(leaves []tlog.Hash) []tlog.Hash {
	const group = c2sp.TileWidth / storage.InteriorWidth
	hs := make([]tlog.Hash, storage.InteriorWidth)
	for g := range hs {
		hs[g] = subtreeHash(leaves[g*group : (g+1)*group])
	}
	return hs
}

// partials returns the partial tiles of every level at the edge's size: what a
// C2SP reader fetches for a checkpoint of that size.
func (e *edge) partials() []storage.Tile {
	var out []storage.Tile
	for level, hs := range e.levels {
		if len(hs) > 0 {
			n := (e.size >> (c2sp.TileHeight * level)) / c2sp.TileWidth
			out = append(out, storage.Tile{Level: level, N: n, Hashes: hs})
		}
	}
	return out
}

// subtreeHash is the Merkle hash of a power-of-two run of sibling hashes.
func subtreeHash(hs []tlog.Hash) tlog.Hash {
	if len(hs) == 1 {
		return hs[0]
	}
	buf := make([]tlog.Hash, len(hs)/2)
	for i := range buf {
		buf[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
	}
	for len(buf) > 1 {
		for i := range len(buf) / 2 {
			buf[i] = tlog.NodeHash(buf[2*i], buf[2*i+1])
		}
		buf = buf[:len(buf)/2]
	}
	return buf[0]
}

// tileNodes is a full tile with its interior: nodes[k] holds the 256>>k
// hashes of Merkle level 8·L+k, so nodes[0] is the tile itself and nodes[8][0]
// its root. Proofs ask for interior hashes constantly; computing them once
// per tile read makes a proof about 20 times cheaper.
//
// A level-0 tile whose stored interior (storage.InteriorStore) checked out
// is built from it: heights 4 to 8 at once (15 hashes), heights 1 to 3 one
// group of 16 leaves at a time, when a proof first needs them (15 hashes,
// checked against the group's stored root). A proof then costs about 30
// hashes of its level-0 tile instead of 255.
type tileNodes struct {
	nodes [c2sp.TileHeight + 1][]tlog.Hash
	where string // the tile, for errors
	// lazy is set when heights 1 to 3 are in groups, not nodes: each
	// group's computed on first use, under once.
	lazy   bool
	groups [storage.InteriorWidth]*groupNodes
	once   [storage.InteriorWidth]sync.Once
	err    [storage.InteriorWidth]error
}

func newTileNodes(t []tlog.Hash) *tileNodes {
	nodes := &tileNodes{}
	nodes.nodes[0] = t
	nodes.up(1)
	return nodes
}

// up fills the heights from k up to 8, each from the one below.
func (t *tileNodes) up(k int) {
	for ; k <= c2sp.TileHeight; k++ {
		below := t.nodes[k-1]
		t.nodes[k] = make([]tlog.Hash, len(below)/2)
		for i := range t.nodes[k] {
			t.nodes[k][i] = tlog.NodeHash(below[2*i], below[2*i+1])
		}
	}
}

// interiorHeight is the height of the hashes an InteriorStore keeps.
const interiorHeight = 4

// newTileNodesFrom builds level-0 tile t from its stored interior, which
// the caller has checked against the tile's root in the tree.
func newTileNodesFrom(t, in []tlog.Hash, where string) *tileNodes {
	nodes := &tileNodes{lazy: true, where: where}
	nodes.nodes[0] = t
	nodes.nodes[interiorHeight] = in
	nodes.up(interiorHeight + 1)
	return nodes
}

// groupNodes are the hashes of heights 1 to 3 over one group of 16
// leaves: 8, then 4, then 2.
type groupNodes [14]tlog.Hash

// groupOffset is where the hashes of height k (1 to 3) start in a
// groupNodes.
var groupOffset = [interiorHeight]int{1: 0, 2: 8, 3: 12}

// hash returns the k-th hash of height sub in the tile.
func (t *tileNodes) hash(sub int, k int64) (tlog.Hash, error) {
	if !t.lazy || sub == 0 || sub >= interiorHeight {
		return t.nodes[sub][k], nil
	}
	perGroup := int64(storage.InteriorWidth >> sub)
	g := k / perGroup
	t.once[g].Do(func() { t.err[g] = t.fill(int(g)) })
	if t.err[g] != nil {
		return tlog.Hash{}, t.err[g]
	}
	return t.groups[g][groupOffset[sub]+int(k%perGroup)], nil
}

// fill computes heights 1 to 3 over group g of 16 leaves and checks that
// they hash to the group's stored root. The stored interior hashes to the
// tree's root, so a mismatch means the tile's leaf hashes are damaged.
func (t *tileNodes) fill(g int) error {
	const group = c2sp.TileWidth / storage.InteriorWidth
	gn := new(groupNodes)
	below := t.nodes[0][g*group : (g+1)*group]
	for k := 1; k < interiorHeight; k++ {
		here := gn[groupOffset[k] : groupOffset[k]+len(below)/2]
		for i := range here {
			here[i] = tlog.NodeHash(below[2*i], below[2*i+1])
		}
		below = here
	}
	if tlog.NodeHash(below[0], below[1]) != t.nodes[interiorHeight][g] {
		return &storage.CorruptionError{Where: t.where, What: fmt.Sprintf("hashes %d to %d do not hash to the tree's", g*group, (g+1)*group-1)}
	}
	t.groups[g] = gn
	return nil
}

func (t *tileNodes) root() tlog.Hash { return t.nodes[c2sp.TileHeight][0] }

// tileCache keeps recently read full tiles; they never change.
type tileCache struct {
	mu    sync.Mutex
	tiles map[[2]int64]*tileNodes
	order [][2]int64
	max   int
}

func (c *tileCache) get(level int, n int64) (*tileNodes, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tiles[[2]int64{int64(level), n}]
	return t, ok
}

func (c *tileCache) put(level int, n int64, t *tileNodes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]int64{int64(level), n}
	if _, ok := c.tiles[k]; ok {
		return
	}
	if c.tiles == nil {
		c.tiles = map[[2]int64]*tileNodes{}
	}
	if len(c.order) >= c.max {
		delete(c.tiles, c.order[0])
		c.order = c.order[1:]
	}
	c.tiles[k] = t
	c.order = append(c.order, k)
}

// hashMemo holds interior hashes of the edge's complete subtrees, by
// stored hash index. It forgets everything when full: the hashes a newer
// edge needs are soon computed again.
type hashMemo struct {
	mu sync.Mutex
	m  map[int64]tlog.Hash
}

// hashMemoMax bounds a hashMemo: 32 bytes and a little more per hash.
const hashMemoMax = 1 << 16

func (c *hashMemo) get(x int64) (tlog.Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[x]
	return h, ok
}

func (c *hashMemo) put(x int64, h tlog.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= hashMemoMax {
		c.m = make(map[int64]tlog.Hash)
	}
	c.m[x] = h
}

// fullTile returns the full tile (level, n) from the cache or storage.
func (l *Log) fullTile(ctx context.Context, level int, n int64) (*tileNodes, error) {
	if t, ok := l.tiles.get(level, n); ok {
		return t, nil
	}
	t, err := l.readFullTile(ctx, level, n)
	if err != nil {
		return nil, err
	}
	nodes := newTileNodes(t)
	l.tiles.put(level, n, nodes)
	return nodes, nil
}

func (l *Log) readFullTile(ctx context.Context, level int, n int64) ([]tlog.Hash, error) {
	t, err := l.store.ReadTile(ctx, level, n)
	if err != nil {
		return nil, fmt.Errorf("couldn't read tile %d/%d: %w", level, n, err)
	}
	if len(t) != c2sp.TileWidth {
		return nil, &storage.CorruptionError{
			Where: c2sp.Tile{Level: level, N: n, Width: c2sp.TileWidth}.Path(),
			What:  fmt.Sprintf("holds %d hashes, want %d", len(t), c2sp.TileWidth),
		}
	}
	return t, nil
}

// leafTile returns full level-0 tile n, built from its stored interior
// when that hashes to the tile's root in the snapshot's tree. Otherwise
// the interior is computed and, if it hashes to the root, stored for the
// next time (it is missing after a crash, or in a log written before it
// was kept).
func (l *Log) leafTile(ctx context.Context, snap edge, n int64) (*tileNodes, error) {
	if t, ok := l.tiles.get(0, n); ok {
		return t, nil
	}
	is, ok := l.store.(storage.InteriorStore)
	if !ok {
		return l.fullTile(ctx, 0, n)
	}
	leaves, err := l.readFullTile(ctx, 0, n)
	if err != nil {
		return nil, err
	}
	rs, err := l.hashReader(ctx, snap)([]int64{tlog.StoredHashIndex(c2sp.TileHeight, n)})
	if err != nil {
		return nil, err
	}
	var nodes *tileNodes
	if in, err := is.ReadInterior(n); err == nil && len(in) == storage.InteriorWidth && subtreeHash(in) == rs[0] {
		nodes = newTileNodesFrom(leaves, in, c2sp.Tile{Level: 0, N: n, Width: c2sp.TileWidth}.Path())
	} else {
		nodes = newTileNodes(leaves)
		if nodes.root() == rs[0] {
			if err := is.WriteInterior(n, nodes.nodes[interiorHeight]); err != nil {
				l.logger.Warn("couldn't store a tile's interior hashes (derived; proofs only take longer)", "tile", n, "err", err)
			}
		}
	}
	l.tiles.put(0, n, nodes)
	return nodes, nil
}

// hashReader serves tlog's stored-hash requests for any tree size up to the
// snapshot's, from the snapshot's edge and full tiles.
func (l *Log) hashReader(ctx context.Context, snap edge) tlog.HashReaderFunc {
	return func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			level, k := tlog.SplitStoredHashIndex(x)
			tl, sub := level/c2sp.TileHeight, level%c2sp.TileHeight
			lo := k << sub
			n, off, cnt := lo/c2sp.TileWidth, int(lo%c2sp.TileWidth), 1<<sub
			if n != (snap.size>>(c2sp.TileHeight*tl))/c2sp.TileWidth {
				var t *tileNodes
				var err error
				if tl == 0 {
					t, err = l.leafTile(ctx, snap, n)
				} else {
					t, err = l.fullTile(ctx, tl, n)
				}
				if err != nil {
					return nil, err
				}
				if out[i], err = t.hash(sub, int64(off>>sub)); err != nil {
					return nil, err
				}
				continue
			}
			var hs []tlog.Hash // the edge: its tile is not full
			if tl < len(snap.levels) {
				hs = snap.levels[tl]
			}
			if off+cnt > len(hs) {
				return nil, fmt.Errorf("hash %d/%d is beyond the tree of size %d", level, k, snap.size)
			}
			if cnt == 1 {
				out[i] = hs[off]
				continue
			}
			// A stored hash names a complete subtree, whose hash never
			// changes: the edge's interior hashes are computed once, not
			// for every proof against a tree of this size.
			h, ok := l.edgeHashes.get(x)
			if !ok {
				h = subtreeHash(hs[off : off+cnt])
				l.edgeHashes.put(x, h)
			}
			out[i] = h
		}
		return out, nil
	}
}

// rebuildEdge reconstructs the right edge of a stored tree of the given
// size. A full tile of level 1 or above that is missing and covers entries
// past the newest checkpoint (signed) is the work of a commit that a crash
// cut short after its entries were durable: it is recomputed from the level
// below and stored. Any other missing tile is damage.
func (l *Log) rebuildEdge(ctx context.Context, size, signed int64) (edge, error) {
	e := edge{size: size}
	for level := 0; size>>(c2sp.TileHeight*level) > 0; level++ {
		count := int((size >> (c2sp.TileHeight * level)) % c2sp.TileWidth)
		hs := make([]tlog.Hash, 0, c2sp.TileWidth)
		if count > 0 {
			base := (size >> (c2sp.TileHeight * level)) / c2sp.TileWidth * c2sp.TileWidth
			if level == 0 {
				t, err := l.store.ReadTile(ctx, 0, base/c2sp.TileWidth)
				if err != nil {
					return e, fmt.Errorf("couldn't read the newest hashes: %w", err)
				}
				if len(t) < count {
					return e, &storage.CorruptionError{Where: fmt.Sprintf("level-0 tile %d", base/c2sp.TileWidth), What: fmt.Sprintf("holds %d hashes, want %d", len(t), count)}
				}
				hs = append(hs, t[:count]...)
			} else {
				for j := range int64(count) {
					t, err := l.restoreTile(ctx, level-1, base+j, signed)
					if err != nil {
						return e, err
					}
					hs = append(hs, t.root())
				}
			}
		}
		e.levels = append(e.levels, hs)
	}
	return e, nil
}

// restoreTile reads a full tile, recomputing and storing it if a crash
// prevented its writing (see rebuildEdge).
func (l *Log) restoreTile(ctx context.Context, level int, n, signed int64) (*tileNodes, error) {
	t, err := l.fullTile(ctx, level, n)
	if level == 0 || !errors.Is(err, storage.ErrNotFound) {
		return t, err
	}
	if end := (n + 1) << (c2sp.TileHeight * (level + 1)); end <= signed {
		return nil, &storage.CorruptionError{
			Where: c2sp.Tile{Level: level, N: n, Width: c2sp.TileWidth}.Path(),
			What:  fmt.Sprintf("missing, though the newest checkpoint (size %d) covers it", signed),
		}
	}
	hs := make([]tlog.Hash, c2sp.TileWidth)
	for k := range hs {
		below, err := l.restoreTile(ctx, level-1, n*c2sp.TileWidth+int64(k), signed)
		if err != nil {
			return nil, err
		}
		hs[k] = below.root()
	}
	l.logger.Warn("restoring a tile that a crash kept from being written", "tile", c2sp.Tile{Level: level, N: n, Width: c2sp.TileWidth}.Path())
	tile := storage.Tile{Level: level, N: n, Hashes: hs}
	if err := storage.Append(ctx, l.store, &storage.Batch{Start: l.store.Size(), Tiles: []storage.Tile{tile}}); err != nil {
		return nil, fmt.Errorf("couldn't restore tile: %w", err)
	}
	return newTileNodes(hs), nil
}
