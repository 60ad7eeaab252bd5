// Package bundle makes and checks the evidence trail gives auditors to take
// away: export bundles (a range of entries with everything needed to prove
// them offline) and receipts (one entry's C2SP tlog-proof).
//
// A bundle is an uncompressed POSIX tar (ustar) archive whose members come
// in a fixed order, each with fixed header fields (mode 0644, owner 0, time
// 0), so that one range of one checkpoint always makes the same bytes:
//
//	trail-bundle.json      the manifest: format, origin, first and last index, tree size
//	checkpoint             the signed checkpoint note, every signature line kept
//	tile/<L>/<N>[.p/<W>]   the hash tiles that link the range to the root, parents first
//	then, for each C2SP entry bundle N that holds entries of the range:
//	tile/0/<N>             its level-0 hash tile, if full (a partial one came above)
//	entries/<N>            the range's entries of bundle N, each with a 2-byte length
//	large/<sha256>         the bodies of its large entries not given before
//
// Paths under tile/ are C2SP tlog-tiles paths and contents. entries/<N> is
// a C2SP entry bundle cut to the range, so that a bundle never discloses
// events outside it.
//
// Verify checks a bundle with nothing but the log's verifier key, and it
// rejects a bundle with any byte changed: the manifest and the tar framing
// must be exactly what Export writes, every tile must be the one the range
// needs and must hash up to the signed root, every entry must hash to its
// leaf in the tiles, and every large body to its reference. The only bytes
// not covered are signature lines by keys the verifier is not given (a
// witness's cosignatures): Report lists them as unverified.
package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
)

// Format is the manifest's format name.
const Format = "trail-bundle/v1"

// Names of the first two members.
const (
	ManifestName   = "trail-bundle.json"
	CheckpointName = "checkpoint"
)

// Limits on members whose size is not fixed by the format.
const (
	maxManifest   = 4 << 10
	maxCheckpoint = 64 << 10
	maxEntries    = c2sp.TileWidth * (2 + c2sp.MaxEntrySize)
	maxLarge      = 64 << 20 // the ledger's limit on an entry
)

// Manifest is the bundle's first member. It holds only what Verify can
// check against the rest: anything else in it could be changed unnoticed.
type Manifest struct {
	Format string `json:"format"`
	// Origin is the log's origin, the name of its key.
	Origin string `json:"origin"`
	// From and To are the first and last index of the entries, inclusive.
	From int64 `json:"from"`
	To   int64 `json:"to"`
	// TreeSize is the size of the checkpoint's tree.
	TreeSize int64 `json:"tree_size"`
}

// encode returns the manifest as Export writes it: compact JSON and a
// newline. Verify accepts nothing else.
func (m Manifest) encode() []byte {
	b, _ := json.Marshal(m)
	return append(b, '\n')
}

func parseManifest(b []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("not a manifest: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return m, errors.New("not a manifest: data after the JSON object")
	}
	if m.Format != Format {
		return m, fmt.Errorf("format %q, want %q (a bundle made by another version of trail?)", m.Format, Format)
	}
	if m.From < 0 || m.To < m.From || m.TreeSize <= m.To {
		return m, fmt.Errorf("bad range: entries %d to %d of a tree of size %d", m.From, m.To, m.TreeSize)
	}
	if !bytes.Equal(b, m.encode()) {
		return m, errors.New("not as trail writes it (altered, or re-encoded)")
	}
	return m, nil
}

// Failure is a verification failure: Where names the place in the bundle
// or receipt (a member, an entry, a byte offset), What says what differs.
type Failure struct {
	Where string
	What  string
}

func (f *Failure) Error() string { return f.Where + ": " + f.What }

func fail(where, format string, args ...any) *Failure {
	return &Failure{Where: where, What: fmt.Sprintf(format, args...)}
}

// plan is what a bundle of entries from..to under a tree of size holds,
// in order.
type plan struct {
	size, from, to int64
	// head are the hash tiles given before the entries, parents first: all
	// those the range needs except the full level-0 tiles, which come
	// with their entries.
	head []tlog.Tile
	// first and last are the C2SP entry bundles of from and to.
	first, last int64
}

// tileHeight is c2sp.TileHeight for tlog.Tile.H.
const tileHeight = c2sp.TileHeight

// makePlan lists the tiles that tlog.TileHashReader needs to prove one
// leaf hash in each level-0 tile of the range: it asks a reader that
// records what it is asked for. The order is the reader's, parents first,
// so a verifier can authenticate each tile as it arrives.
func makePlan(size, from, to int64) (*plan, error) {
	if from < 0 || to < from || size <= to {
		return nil, fmt.Errorf("bad range: entries %d to %d of a tree of size %d", from, to, size)
	}
	p := &plan{size: size, from: from, to: to, first: from / c2sp.TileWidth, last: to / c2sp.TileWidth}
	indexes := make([]int64, 0, p.last-p.first+1)
	for n := p.first; n <= p.last; n++ {
		indexes = append(indexes, tlog.StoredHashIndex(0, n*c2sp.TileWidth))
	}
	rec := &recorder{}
	// The recorder's zero tiles never hash to the (zero) root asked for,
	// so this fails; it has asked for the tiles by then.
	_, _ = tlog.TileHashReader(tlog.Tree{N: size}, rec).ReadHashes(indexes)
	if rec.tiles == nil {
		return nil, fmt.Errorf("no tile plan for entries %d to %d of a tree of size %d", from, to, size)
	}
	for _, t := range rec.tiles {
		if t.L == 0 && t.W == c2sp.TileWidth {
			continue
		}
		p.head = append(p.head, t)
	}
	return p, nil
}

// fullLevel0 reports whether bundle n's level-0 tile is full in p's tree,
// and so comes with the entries rather than in the head.
func (p *plan) fullLevel0(n int64) bool { return (n+1)*c2sp.TileWidth <= p.size }

// entryRange returns the range's indexes in bundle n.
func (p *plan) entryRange(n int64) (lo, hi int64) {
	return max(p.from, n*c2sp.TileWidth), min(p.to, n*c2sp.TileWidth+c2sp.TileWidth-1)
}

// width returns the width of bundle n in p's tree.
func (p *plan) width(n int64) int {
	return int(min(c2sp.TileWidth, p.size-n*c2sp.TileWidth))
}

type recorder struct{ tiles []tlog.Tile }

func (r *recorder) Height() int { return tileHeight }

func (r *recorder) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	r.tiles = append([]tlog.Tile(nil), tiles...)
	data := make([][]byte, len(tiles))
	for i, t := range tiles {
		data[i] = make([]byte, t.W*tlog.HashSize)
	}
	return data, nil
}

func (r *recorder) SaveTiles([]tlog.Tile, [][]byte) {}

// tilePath is the C2SP path of a hash tile.
func tilePath(t tlog.Tile) string {
	return c2sp.Tile{Level: t.L, N: t.N, Width: t.W}.Path()
}

func entriesPath(n int64) string { return "entries/" + c2sp.FormatIndex(n) }

func largePath(sum [32]byte) string { return fmt.Sprintf("large/%x", sum) }

// subtreeRoot returns the Merkle root of a full tile's 256 hashes.
func subtreeRoot(data []byte) tlog.Hash {
	var hs [c2sp.TileWidth]tlog.Hash
	for i := range hs {
		copy(hs[i][:], data[i*tlog.HashSize:])
	}
	for n := len(hs); n > 1; n /= 2 {
		for i := 0; i < n/2; i++ {
			hs[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
		}
	}
	return hs[0]
}

// splitEntries parses the entries of a bundle member, which must hold
// exactly want of them and nothing else.
func splitEntries(b []byte, want int) ([][]byte, error) {
	es, n, err := c2sp.ParseBundle(b)
	switch {
	case err != nil:
		return nil, fmt.Errorf("byte %d: a length prefix runs past the end, or is zero", n)
	case len(es) != want:
		return nil, fmt.Errorf("%d entries, want %d", len(es), want)
	}
	return es, nil
}
