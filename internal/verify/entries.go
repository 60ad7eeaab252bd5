package verify

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"slices"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
)

// bundleResult is what a worker found in one bundle.
type bundleResult struct {
	n     int64
	count int
	// root is the Merkle hash of the bundle's leaves, if it holds 256.
	root tlog.Hash
	// leaves are the leaf hashes, if the bundle was to be retained.
	leaves []tlog.Hash
	large  int64 // large entries whose bodies were checked
	bytes  int64 // bytes read, all files
	err    error // a *Failure or an I/O error
}

// worker reads and checks bundles. Its buffers are reused from bundle to
// bundle, so that checking an entry allocates nothing.
type worker struct {
	l       layout
	covered int64 // entries covered by the newest checkpoint
	data    []byte
	hashes  []byte
	part    []byte
	offs    [c2sp.TileWidth + 1]int // where each entry starts in data
	leaves  [c2sp.TileWidth]tlog.Hash
	scratch [c2sp.TileWidth / 2]tlog.Hash
	sha     hash.Hash
	buf     []byte
}

func newWorker(l layout, covered int64) *worker {
	return &worker{l: l, covered: covered}
}

func (w *worker) check(b *bundle) bundleResult {
	r := bundleResult{n: b.n, count: b.count}
	r.err = w.checkBundle(b, &r)
	return r
}

func (w *worker) checkBundle(b *bundle, r *bundleResult) error {
	var err error
	if w.data, err = readFile(w.data, b.path); err != nil {
		return fileError(err, b.path, "the bundle vanished while being verified")
	}
	if w.hashes, err = readFile(w.hashes, b.hashPath); err != nil {
		return fileError(err, b.hashPath, "the hash tile vanished while being verified")
	}
	r.bytes += int64(len(w.data) + len(w.hashes))
	if b.count == c2sp.TileWidth && len(w.hashes) != tileBytes {
		return &Failure{Where: b.hashPath, What: sizeWhat(len(w.hashes), tileBytes)}
	}
	if len(w.hashes) < b.count*tlog.HashSize {
		return &Failure{Where: b.hashPath, What: sizeWhat(len(w.hashes), b.count*tlog.HashSize)}
	}
	data, off := w.data, 0
	for i := range b.count {
		idx := b.n*c2sp.TileWidth + int64(i)
		if len(data)-off < 2 {
			return w.entryFailure(b, idx, fmt.Sprintf("missing: the file ends at byte %d, after %d of its %d entries: truncated", len(data), i, b.count))
		}
		n := int(binary.BigEndian.Uint16(data[off:]))
		if n == 0 {
			return w.entryFailure(b, idx, fmt.Sprintf("a zero length prefix at byte %d: damaged", off))
		}
		if len(data)-off-2 < n {
			return w.entryFailure(b, idx, fmt.Sprintf("the file ends at byte %d, inside the entry (%d bytes from byte %d): truncated", len(data), n, off+2))
		}
		w.offs[i] = off
		// The leaf hash is SHA-256(0x00 || entry): hash in place, over the
		// low byte of the length prefix set to zero, rather than copy.
		lo := data[off+1]
		data[off+1] = 0
		h := tlog.Hash(sha256.Sum256(data[off+1 : off+2+n]))
		data[off+1] = lo
		if stored := tlog.Hash(w.hashes[i*tlog.HashSize : (i+1)*tlog.HashSize]); h != stored {
			return w.entryFailure(b, idx, fmt.Sprintf("leaf hash %s, but hash %d of %s is %s", h, i, b.hashPath, stored))
		}
		w.leaves[i] = h
		entry := data[off+2 : off+2+n]
		off += 2 + n
		ref, ok, err := ledger.ParseLargeRef(entry)
		if err != nil {
			return w.entryFailure(b, idx, err.Error())
		}
		if ok {
			if err := w.checkLarge(b, idx, ref, r); err != nil {
				return err
			}
		}
	}
	w.offs[b.count] = off
	if b.sealed && off != len(data) {
		return &Failure{Where: b.path, What: fmt.Sprintf("%d extra bytes after its %d entries (which end at byte %d)", len(data)-off, b.count, off)}
	}
	if b.count == c2sp.TileWidth {
		r.root = subtreeHash(w.leaves[:], w.scratch[:])
	}
	if b.retain {
		r.leaves = slices.Clone(w.leaves[:b.count])
	}
	for _, t := range b.partials {
		if err := w.checkPartial(b, t, r); err != nil {
			return err
		}
	}
	return nil
}

func (w *worker) entryFailure(b *bundle, idx int64, what string) *Failure {
	if idx >= w.covered {
		what += " (beyond the newest checkpoint: if the log crashed, a torn write; start trail to recover)"
	}
	return &Failure{Where: fmt.Sprintf("entry %d in %s", idx, b.path), What: what}
}

// checkLarge checks the body of a large entry against its reference.
func (w *worker) checkLarge(b *bundle, idx int64, ref ledger.LargeRef, r *bundleResult) error {
	path := w.l.large(ref.SHA256)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Failure{Where: path, What: fmt.Sprintf("missing: the body of entry %d in %s (%d bytes) was deleted", idx, b.path, ref.Size)}
	} else if err != nil {
		return err
	}
	defer f.Close()
	if w.sha == nil {
		w.sha, w.buf = sha256.New(), make([]byte, 1<<20)
	}
	w.sha.Reset()
	var size int64
	for {
		n, err := f.Read(w.buf)
		w.sha.Write(w.buf[:n])
		size += int64(n)
		if err == io.EOF {
			break
		} else if err != nil {
			return err
		}
	}
	r.bytes += size
	r.large++
	if size != ref.Size {
		return &Failure{Where: path, What: fmt.Sprintf("%d bytes, but entry %d says %d: truncated or extended", size, idx, ref.Size)}
	}
	var sum [32]byte
	if w.sha.Sum(sum[:0]); sum != ref.SHA256 {
		return &Failure{Where: path, What: fmt.Sprintf("SHA-256 %x, but entry %d says %x: the body was altered", sum, idx, ref.SHA256)}
	}
	return nil
}

// checkPartial checks that a partial bundle or level-0 tile is the prefix
// of the full data of bundle b.
func (w *worker) checkPartial(b *bundle, t c2sp.Tile, r *bundleResult) error {
	path := w.l.tile(t)
	var err error
	if w.part, err = readFile(w.part, path); err != nil {
		return fileError(err, path, "the partial tile vanished while being verified")
	}
	r.bytes += int64(len(w.part))
	if t.Level == c2sp.EntriesLevel {
		want := w.data[:w.offs[t.Width]]
		if len(w.part) != len(want) {
			return &Failure{Where: path, What: fmt.Sprintf("%d bytes, but the first %d entries of %s span %d: truncated or extended", len(w.part), t.Width, b.path, len(want))}
		}
		if i := firstDiff(w.part, want); i >= 0 {
			j, found := slices.BinarySearch(w.offs[:t.Width], i)
			if !found {
				j--
			}
			return &Failure{Where: path, What: fmt.Sprintf("differs from entry %d of %s at byte %d", b.n*c2sp.TileWidth+int64(j), b.path, i)}
		}
		return nil
	}
	want := w.hashes[:t.Width*tlog.HashSize]
	if len(w.part) != len(want) {
		return &Failure{Where: path, What: sizeWhat(len(w.part), len(want))}
	}
	if i := firstDiff(w.part, want); i >= 0 {
		j := i / tlog.HashSize
		return &Failure{Where: path, What: fmt.Sprintf("hash %d is %s, but entry %d's leaf hash is %s", j, tlog.Hash(w.part[j*tlog.HashSize:]), b.n*c2sp.TileWidth+int64(j), w.leaves[j])}
	}
	return nil
}

// fileError turns a file that vanished into a Failure.
func fileError(err error, path, what string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &Failure{Where: path, What: what}
	}
	return err
}

func sizeWhat(got, want int) string {
	if got < want {
		return fmt.Sprintf("%d bytes, want %d: truncated", got, want)
	}
	return fmt.Sprintf("%d bytes, want %d: %d extra bytes", got, want, got-want)
}

// firstDiff returns the index of the first byte where a and b (of equal
// length) differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
