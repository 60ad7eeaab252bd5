package bundle

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
)

// Report is what Verify found in a bundle that verified.
type Report struct {
	Origin   string
	From, To int64 // the entries proven, inclusive
	TreeSize int64
	Root     tlog.Hash
	// Checkpoint is the signed checkpoint note, all signature lines.
	Checkpoint []byte
	// Unverified names the signers of signature lines the verifier had no
	// key for (a witness's cosignatures): those lines were not checked.
	Unverified []string
	// Cosigned are the cosignatures of VerifyOptions.Witnesses that
	// verified.
	Cosigned []Cosigned
	Entries  int64
	Large    int64 // large entries, their bodies checked
	Tiles    int64 // hash tiles checked
	Bytes    int64 // the bundle's size
	// FirstReceived and LastReceived are the received times of the first
	// and last entry, if they are trail envelopes.
	FirstReceived, LastReceived time.Time
	Duration                    time.Duration
}

// Progress reports how far Verify or Export has come.
type Progress struct {
	Entries, TotalEntries int64
	Bytes                 int64
}

// VerifyOptions configures Verify.
type VerifyOptions struct {
	// Progress, if not nil, is called after each entry bundle.
	Progress func(Progress)
	// Witnesses, if it has keys, is checked against the checkpoint's
	// cosignatures.
	Witnesses Witnesses
}

// ErrNoKey is returned when Verify or VerifyReceipt is given no key.
var ErrNoKey = errors.New("no verifier key")

// Verify reads a bundle from r and checks it against the log's verifier
// key (as "trail key" prints it). It returns a *Failure naming the member,
// entry or byte at fault if the bundle does not verify, and another error
// only if r fails.
func Verify(ctx context.Context, r io.Reader, verifierKey string, opts VerifyOptions) (*Report, error) {
	start := time.Now()
	if verifierKey == "" {
		return nil, ErrNoKey
	}
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("bad verifier key: %w", err)
	}
	cr := newCanonReader(bufio.NewReaderSize(r, 64<<10))
	rep, err := verifyBundle(ctx, cr, v, opts)
	if err != nil {
		return nil, err
	}
	rep.Bytes = cr.off
	rep.Duration = time.Since(start)
	return rep, nil
}

func verifyBundle(ctx context.Context, cr *canonReader, v note.Verifier, opts VerifyOptions) (*Report, error) {
	// The manifest.
	size, err := cr.next(ManifestName)
	if err != nil {
		return nil, err
	}
	if size > maxManifest {
		return nil, fail(ManifestName, "%d bytes, at most %d", size, maxManifest)
	}
	b, err := cr.readAll(size)
	if err != nil {
		return nil, err
	}
	m, err := parseManifest(b)
	if err != nil {
		return nil, fail(ManifestName, "%v", err)
	}
	if m.Origin != v.Name() {
		return nil, fail(ManifestName, "a bundle of log %q, and the key given is of %q", m.Origin, v.Name())
	}

	// The checkpoint.
	if size, err = cr.next(CheckpointName); err != nil {
		return nil, err
	}
	if size > maxCheckpoint {
		return nil, fail(CheckpointName, "%d bytes, at most %d", size, maxCheckpoint)
	}
	signed, err := cr.readAll(size)
	if err != nil {
		return nil, err
	}
	cp, unverified, err := openCheckpoint(signed, v)
	if err != nil {
		return nil, fail(CheckpointName, "%v", err)
	}
	cosigned, unverified, err := opts.Witnesses.check(signed, unverified)
	if err != nil {
		return nil, fail(CheckpointName, "%v", err)
	}
	if cp.Size != m.TreeSize {
		return nil, fail(ManifestName, "tree size %d, and the checkpoint's is %d", m.TreeSize, cp.Size)
	}
	rep := &Report{Origin: cp.Origin, From: m.From, To: m.To, TreeSize: cp.Size, Root: cp.Hash, Checkpoint: signed, Unverified: unverified, Cosigned: cosigned}

	// The hash tiles before the entries, authenticated against the root.
	p, err := makePlan(m.TreeSize, m.From, m.To)
	if err != nil {
		return nil, fail(ManifestName, "%v", err)
	}
	tiles := &tileSet{data: map[[2]int64][]byte{}}
	for _, t := range p.head {
		size, err := cr.next(tilePath(t))
		if err != nil {
			return nil, err
		}
		if size != int64(t.W*tlog.HashSize) {
			return nil, fail(tilePath(t), "%d bytes, want %d", size, t.W*tlog.HashSize)
		}
		b, err := cr.readAll(size)
		if err != nil {
			return nil, err
		}
		tiles.data[[2]int64{int64(t.L), t.N}] = b
	}
	if err := tiles.authenticate(p, cp); err != nil {
		return nil, err
	}
	rep.Tiles = int64(len(p.head))

	// The entries, bundle by bundle.
	seen := map[[32]byte]bool{}
	total := m.To - m.From + 1
	var tileBuf, entriesBuf []byte // reused: nothing read into them is kept
	for n := p.first; n <= p.last; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var level0 []byte
		if p.fullLevel0(n) {
			t := tlog.Tile{H: tileHeight, L: 0, N: n, W: c2sp.TileWidth}
			name := tilePath(t)
			size, err := cr.next(name)
			if err != nil {
				return nil, err
			}
			if size != c2sp.TileWidth*tlog.HashSize {
				return nil, fail(name, "%d bytes, want %d", size, c2sp.TileWidth*tlog.HashSize)
			}
			if level0, err = cr.readInto(&tileBuf, size); err != nil {
				return nil, err
			}
			if err := tiles.checkLevel0(p, n, level0); err != nil {
				return nil, err
			}
			rep.Tiles++
		} else if level0 = tiles.data[[2]int64{0, n}]; len(level0) != p.width(n)*tlog.HashSize {
			return nil, fmt.Errorf("bundle: no level-0 tile for bundle %d in the plan", n) // cannot happen: tlog plans it
		}

		name := entriesPath(n)
		size, err := cr.next(name)
		if err != nil {
			return nil, err
		}
		if size > maxEntries {
			return nil, fail(name, "%d bytes, at most %d", size, maxEntries)
		}
		b, err := cr.readInto(&entriesBuf, size)
		if err != nil {
			return nil, err
		}
		lo, hi := p.entryRange(n)
		es, err := splitEntries(b, int(hi-lo+1))
		if err != nil {
			return nil, fail(name, "%v", err)
		}
		var large []ledger.LargeRef
		for i, e := range es {
			idx := lo + int64(i)
			j := idx - n*c2sp.TileWidth
			var want tlog.Hash
			copy(want[:], level0[j*tlog.HashSize:])
			if got := tlog.RecordHash(e); got != want {
				return nil, fail(fmt.Sprintf("entry %d (%s, entry %d of it)", idx, name, i+1),
					"its hash is %s, and the tile %s holds %s for it: the entry was altered", got, tilePath(tlog.Tile{L: 0, N: n, W: p.width(n)}), want)
			}
			ref, isRef, err := ledger.ParseLargeRef(e)
			if isRef && err != nil {
				return nil, fail(fmt.Sprintf("entry %d", idx), "%v", err)
			}
			if isRef {
				rep.Large++
				if !seen[ref.SHA256] {
					seen[ref.SHA256] = true
					large = append(large, ref)
				}
			}
			if idx == m.From {
				rep.FirstReceived = Received(e)
			}
			if idx == m.To {
				rep.LastReceived = Received(e)
			}
		}
		rep.Entries += int64(len(es))
		for _, ref := range large {
			if err := checkLarge(cr, ref); err != nil {
				return nil, err
			}
		}
		if opts.Progress != nil {
			opts.Progress(Progress{Entries: rep.Entries, TotalEntries: total, Bytes: cr.off})
		}
	}
	if err := cr.end(); err != nil {
		return nil, err
	}
	return rep, nil
}

func checkLarge(cr *canonReader, ref ledger.LargeRef) error {
	name := largePath(ref.SHA256)
	size, err := cr.next(name)
	if err != nil {
		return err
	}
	if size != ref.Size {
		return fail(name, "%d bytes, and its reference says %d", size, ref.Size)
	}
	h := sha256.New()
	if err := cr.stream(func(b []byte) { h.Write(b) }); err != nil {
		return err
	}
	if got := [32]byte(h.Sum(nil)); got != ref.SHA256 {
		return fail(name, "its SHA-256 is %x: the body was altered", got)
	}
	return nil
}

// openCheckpoint checks a signed checkpoint against v and parses it; it
// also returns the names of signature lines v does not verify.
func openCheckpoint(signed []byte, v note.Verifier) (c2sp.Checkpoint, []string, error) {
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return c2sp.Checkpoint{}, nil, fmt.Errorf("not signed by the log's key %s", v.Name())
		case errors.As(err, &invalid):
			return c2sp.Checkpoint{}, nil, fmt.Errorf("the signature by the log's key %s is invalid: the checkpoint was altered", v.Name())
		}
		return c2sp.Checkpoint{}, nil, fmt.Errorf("not a signed note: %v", err)
	}
	// note.Open decodes signatures leniently: bits past the end of the
	// last base64 character could change unnoticed.
	for i, line := range strings.Split(strings.TrimSuffix(string(signed[len(n.Text)+1:]), "\n"), "\n") {
		_, sig, _ := strings.Cut(strings.TrimPrefix(line, "— "), " ")
		if _, err := base64.StdEncoding.Strict().DecodeString(sig); err != nil {
			return c2sp.Checkpoint{}, nil, fmt.Errorf("signature line %d is not canonical base64", i+1)
		}
	}
	cp, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return cp, nil, err
	}
	if cp.Origin != v.Name() {
		return cp, nil, fmt.Errorf("a checkpoint of log %q, signed by the key of %q", cp.Origin, v.Name())
	}
	var names []string
	for _, s := range n.UnverifiedSigs {
		names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
	}
	return cp, names, nil
}

// tileSet holds the head tiles of a bundle by level and index.
type tileSet struct {
	data map[[2]int64][]byte
}

func (s *tileSet) Height() int { return tileHeight }

func (s *tileSet) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, ok := s.data[[2]int64{int64(t.L), t.N}]
		if !ok || len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("no tile %s in the bundle", tilePath(t))
		}
		out[i] = b
	}
	return out, nil
}

func (s *tileSet) SaveTiles([]tlog.Tile, [][]byte) {}

// authenticate checks the head tiles against the checkpoint's root: first
// those of the tree's right edge, which together give the root, then each
// other one against its parent, parents first, so that a failure names the
// tile at fault.
func (s *tileSet) authenticate(p *plan, cp c2sp.Checkpoint) error {
	thr := tlog.TileHashReader(tlog.Tree{N: cp.Size, Hash: cp.Hash}, s)
	if _, err := thr.ReadHashes(nil); err != nil {
		var edge []string
		for _, t := range p.head {
			edge = append(edge, tilePath(t))
		}
		return fail("hash tiles "+strings.Join(edge, ", "), "they do not hash to the checkpoint's root %s: one of them was altered (%v)", cp.Hash, err)
	}
	for _, t := range p.head {
		if _, err := thr.ReadHashes([]int64{tlog.StoredHashIndex(t.L*tileHeight, t.N*c2sp.TileWidth)}); err != nil {
			return fail(tilePath(t), "it does not hash to the root through its parent tiles: it was altered (%v)", err)
		}
	}
	return nil
}

// checkLevel0 checks a full level-0 tile against the hash its parent tile,
// already authenticated, holds for it.
func (s *tileSet) checkLevel0(p *plan, n int64, data []byte) error {
	parentN := n / c2sp.TileWidth
	pd, ok := s.data[[2]int64{1, parentN}]
	if !ok {
		return fmt.Errorf("bundle: no parent tile for level-0 tile %d in the plan", n)
	}
	parent := tlog.Tile{H: tileHeight, L: 1, N: parentN, W: len(pd) / tlog.HashSize}
	want, err := tlog.HashFromTile(parent, pd, tlog.StoredHashIndex(tileHeight, n))
	if err != nil {
		return fmt.Errorf("bundle: %v", err)
	}
	if got := subtreeRoot(data); got != want {
		return fail(tilePath(tlog.Tile{L: 0, N: n, W: c2sp.TileWidth}), "its hashes give %s, and its parent %s holds %s: the tile was altered", got, tilePath(parent), want)
	}
	return nil
}

// Received returns the received time of an entry that is a trail envelope,
// or the zero time.
func Received(leaf []byte) time.Time {
	const pre = `{"received":"`
	s, ok := strings.CutPrefix(string(leaf[:min(len(leaf), 64)]), pre)
	if !ok {
		return time.Time{}
	}
	end := strings.IndexByte(s, '"')
	if end < 0 {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s[:end])
	if err != nil {
		return time.Time{}
	}
	return t
}
