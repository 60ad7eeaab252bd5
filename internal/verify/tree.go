package verify

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
)

var _ tlog.HashReader = (*tree)(nil)

// tree is the Merkle tree rebuilt from the entries, as far as they have been
// checked. It serves tlog's stored-hash requests, so that tree hashes and
// consistency proofs are computed from the rebuilt data, never from stored
// tiles.
type tree struct {
	// levels[L], for L >= 1, holds the hashes of Merkle level 8·L rebuilt so
	// far: the contents of tile level L. levels[0] is unused.
	levels [][]tlog.Hash
	// retained holds the leaf hashes of the bundles where checkpoints end,
	// until no later checkpoint needs them.
	retained map[int64][]tlog.Hash
}

// ReadHashes implements tlog.HashReader.
func (t *tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		level, k := tlog.SplitStoredHashIndex(x)
		tl, sub := level/c2sp.TileHeight, level%c2sp.TileHeight
		lo, hi := k<<sub, (k+1)<<sub
		var hs []tlog.Hash
		if tl == 0 {
			n := lo / c2sp.TileWidth
			leaves, ok := t.retained[n]
			lo, hi = lo-n*c2sp.TileWidth, hi-n*c2sp.TileWidth
			if !ok || hi > int64(len(leaves)) {
				return nil, fmt.Errorf("leaf hashes of bundle %d were not kept", n)
			}
			hs = leaves[lo:hi]
		} else {
			if tl >= len(t.levels) || hi > int64(len(t.levels[tl])) {
				return nil, fmt.Errorf("hash %d/%d is beyond the rebuilt tree", level, k)
			}
			hs = t.levels[tl][lo:hi]
		}
		out[i] = subtreeHash(hs, make([]tlog.Hash, len(hs)/2))
	}
	return out, nil
}

// checkData checks every bundle, in parallel, and, in order as results come
// in, rebuilds the tiles of level 1 and above, compares them with the stored
// ones, and checks each checkpoint once the tree has reached its size.
func (v *verifier) checkData(ctx context.Context) error {
	p := v.plan
	t := &tree{levels: make([][]tlog.Hash, 1), retained: map[int64][]tlog.Hash{}}
	next := 0 // the next checkpoint to check
	checkUpTo := func(size int64) error {
		for ; next < len(v.cps) && v.cps[next].Size <= size; next++ {
			if err := v.checkCheckpoint(t, next); err != nil {
				return err
			}
		}
		return nil
	}
	if err := checkUpTo(0); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// A worker takes a token per bundle and the loop below returns it once
	// the result is used: so results never pile up, and sends never block.
	window := 4 * v.opts.Workers
	tokens := make(chan struct{}, window)
	results := make(chan bundleResult, window)
	var taken atomic.Int64
	for range v.opts.Workers {
		wg.Go(func() {
			w := newWorker(v.l, v.cps[len(v.cps)-1].Size)
			for {
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
				i := taken.Add(1) - 1
				if i >= int64(len(p.bundles)) {
					return
				}
				results <- w.check(&p.bundles[i])
			}
		})
	}

	pending := map[int64]bundleResult{}
	var size int64
	for i := range int64(len(p.bundles)) {
		r, ok := pending[i]
		for !ok {
			select {
			case r = <-results:
				ok = r.n == i
				if !ok {
					pending[r.n] = r
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		delete(pending, i)
		<-tokens
		v.rep.Bytes += r.bytes
		v.rep.LargeEntries += r.large
		if r.err != nil {
			return r.err
		}
		b := &p.bundles[i]
		v.rep.Entries += int64(r.count)
		v.rep.Bundles++
		v.rep.Tiles++
		for _, pt := range b.partials {
			if pt.Level == c2sp.EntriesLevel {
				v.rep.Bundles++
			} else {
				v.rep.Tiles++
			}
		}
		size += int64(r.count)
		if r.leaves != nil {
			t.retained[i] = r.leaves
		}
		if r.count == c2sp.TileWidth {
			if err := v.push(t, 1, i, r.root); err != nil {
				return err
			}
		}
		if err := checkUpTo(size); err != nil {
			return err
		}
		if v.opts.Progress != nil {
			v.opts.Progress(Progress{Entries: size, TotalEntries: p.size, Bytes: v.rep.Bytes})
		}
	}
	if next < len(v.cps) {
		if p.short != nil {
			return p.short
		}
		return fmt.Errorf("internal error: checkpoint of size %d left unchecked at size %d", v.cps[next].Size, size)
	}
	for _, pt := range p.upper {
		if err := v.checkUpperPartial(t, pt); err != nil {
			return err
		}
	}
	return nil
}

// push adds hash k of tile level `level` (Merkle level 8·level) to the
// rebuilt tree. When that completes a tile, it compares the tile with the
// stored one and pushes the tile's own hash one level up.
func (v *verifier) push(t *tree, level int, k int64, h tlog.Hash) error {
	for ; ; level++ {
		if len(t.levels) <= level {
			t.levels = append(t.levels, nil)
		}
		t.levels[level] = append(t.levels[level], h)
		if len(t.levels[level])%c2sp.TileWidth != 0 {
			return nil
		}
		n := int64(len(t.levels[level])/c2sp.TileWidth - 1)
		hs := t.levels[level][n*c2sp.TileWidth:]
		if err := v.compareTile(level, n, hs); err != nil {
			return err
		}
		h = subtreeHash(hs, make([]tlog.Hash, c2sp.TileWidth/2))
	}
}

// source names where hash j of tile (level, n) is rebuilt from.
func (v *verifier) source(level int, n int64, j int) string {
	k := n*c2sp.TileWidth + int64(j)
	if level == 1 {
		return fmt.Sprintf("the entries of %s", v.l.fullTile(c2sp.EntriesLevel, k))
	}
	return v.l.fullTile(level-1, k)
}

// compareTile compares a rebuilt full tile with the stored one.
func (v *verifier) compareTile(level int, n int64, rebuilt []tlog.Hash) error {
	path := v.l.fullTile(level, n)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Failure{Where: path, What: "missing: it vanished while being verified"}
	} else if err != nil {
		return err
	}
	v.rep.Tiles++
	v.rep.Bytes += int64(len(b))
	if len(b) != tileBytes {
		return &Failure{Where: path, What: sizeWhat(len(b), tileBytes)}
	}
	for j, h := range rebuilt {
		if stored := tlog.Hash(b[j*tlog.HashSize : (j+1)*tlog.HashSize]); stored != h {
			return &Failure{Where: path, What: fmt.Sprintf("hash %d is %s, but rebuilding it from %s gives %s", j, stored, v.source(level, n, j), h)}
		}
	}
	return nil
}

// checkUpperPartial checks a partial tile of level 1 or above against the
// rebuilt tree.
func (v *verifier) checkUpperPartial(t *tree, pt c2sp.Tile) error {
	path := v.l.tile(pt)
	b, err := os.ReadFile(path)
	if err != nil {
		return fileError(err, path, "the partial tile vanished while being verified")
	}
	v.rep.Tiles++
	v.rep.Bytes += int64(len(b))
	if len(b) != pt.Width*tlog.HashSize {
		return &Failure{Where: path, What: sizeWhat(len(b), pt.Width*tlog.HashSize)}
	}
	rebuilt := t.levels[pt.Level][pt.N*c2sp.TileWidth:]
	for j := range pt.Width {
		if stored := tlog.Hash(b[j*tlog.HashSize : (j+1)*tlog.HashSize]); stored != rebuilt[j] {
			return &Failure{Where: path, What: fmt.Sprintf("hash %d is %s, but rebuilding it from %s gives %s", j, stored, v.source(pt.Level, pt.N, j), rebuilt[j])}
		}
	}
	return nil
}

// checkCheckpoint checks that checkpoint i's root hash is the rebuilt tree's
// at its size, and proves it consistent with checkpoint i-1.
func (v *verifier) checkCheckpoint(t *tree, i int) error {
	cp := v.cps[i]
	root, err := tlog.TreeHash(cp.Size, t)
	if err != nil {
		return fmt.Errorf("internal error: couldn't compute the tree hash at size %d: %w", cp.Size, err)
	}
	if root != cp.Hash {
		return &Failure{Where: cp.where(), What: fmt.Sprintf("root hash %s, but the stored entries give %s", cp.Hash, root)}
	}
	if i > 0 && v.cps[i-1].Size > 0 && v.cps[i-1].Size < cp.Size {
		prev := v.cps[i-1]
		proof, err := tlog.ProveTree(cp.Size, prev.Size, t)
		if err != nil {
			return fmt.Errorf("internal error: couldn't prove size %d consistent with %d: %w", prev.Size, cp.Size, err)
		}
		if err := tlog.CheckTree(proof, cp.Size, cp.Hash, prev.Size, prev.Hash); err != nil {
			lines := make([]string, len(proof))
			for j, h := range proof {
				lines[j] = h.String()
			}
			return &Failure{
				Where:    cp.where(),
				What:     fmt.Sprintf("SECURITY ERROR: not consistent with the checkpoint of size %d (record %d): %v", prev.Size, prev.record, err),
				Evidence: forkEvidence(prev, cp, lines),
			}
		}
	}
	for n := range t.retained {
		if n < cp.Size/c2sp.TileWidth {
			delete(t.retained, n)
		}
	}
	return nil
}

// checkCoverage fails if stored data goes beyond the newest checkpoint.
func (v *verifier) checkCoverage() error {
	newest := v.cps[len(v.cps)-1]
	if p := v.plan; p.size > newest.Size {
		return &Failure{
			Where: fmt.Sprintf("entries %d to %d", newest.Size, p.size-1),
			What: fmt.Sprintf("%s not covered by the newest checkpoint (size %d): an older checkpoint was put back, or the log crashed and was not reopened since — start trail to recover",
				plural(p.size-newest.Size, "entry is", "entries are"), newest.Size),
		}
	}
	if torn := v.plan.torn; len(torn) > 0 {
		return &Failure{
			Where: torn[0].path,
			What: fmt.Sprintf("a torn tail of %d bytes beyond the newest checkpoint (size %d): the log crashed and was not reopened since — start trail to recover",
				torn[0].bytes, newest.Size),
		}
	}
	return nil
}

// nodeHash is tlog.NodeHash without its allocation.
func nodeHash(left, right tlog.Hash) tlog.Hash {
	var b [1 + 2*tlog.HashSize]byte
	b[0] = 1
	copy(b[1:], left[:])
	copy(b[1+tlog.HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// subtreeHash returns the Merkle hash of a power-of-two number of sibling
// hashes, using scratch (at least half as long) for the levels in between.
func subtreeHash(hs, scratch []tlog.Hash) tlog.Hash {
	if len(hs) == 1 {
		return hs[0]
	}
	n := len(hs) / 2
	for i := range n {
		scratch[i] = nodeHash(hs[2*i], hs[2*i+1])
	}
	for ; n > 1; n /= 2 {
		for i := range n / 2 {
			scratch[i] = nodeHash(scratch[2*i], scratch[2*i+1])
		}
	}
	return scratch[0]
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
