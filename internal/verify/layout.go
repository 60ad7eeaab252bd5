package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	fsstore "github.com/trailaudit/trail/internal/storage/fs"
)

// Files of a data directory, relative to its root. The formats are fixed
// (docs/DESIGN.md); package fs writes them.
const (
	checkpointFile  = "log/checkpoint"
	historyFile     = "state/checkpoints"
	stagingDir      = "state/staging"
	journalFile     = "state/journal"
	largeDir        = "log/large"
	verifierKeyFile = "keys/log.vkey"
)

const tileBytes = c2sp.TileWidth * tlog.HashSize

// layout names the files of the data directory dir.
type layout struct{ dir string }

func (l layout) path(rel string) string { return filepath.Join(l.dir, filepath.FromSlash(rel)) }

func (l layout) tile(t c2sp.Tile) string { return l.path("log/" + t.Path()) }

func (l layout) fullTile(level int, n int64) string {
	return l.tile(c2sp.Tile{Level: level, N: n, Width: c2sp.TileWidth})
}

func (l layout) staged(kind string, n int64) string {
	return l.path(fmt.Sprintf("%s/%s-%012d", stagingDir, kind, n))
}

func (l layout) large(sum [32]byte) string { return l.path(fmt.Sprintf("%s/%x", largeDir, sum)) }

// inventory is what files the directory holds.
type inventory struct {
	// full holds the indexes of the full tiles of each level, and of the
	// sealed entry bundles under c2sp.EntriesLevel, sorted.
	full     map[int][]int64
	partials []c2sp.Tile
	// stagedEntries and stagedHashes hold the size of each staging file.
	stagedEntries, stagedHashes map[int64]int64
	warnings                    []string
}

func (inv *inventory) has(level int, n int64) bool {
	_, ok := slices.BinarySearch(inv.full[level], n)
	return ok
}

// takeInventory lists the tiles, bundles and staging files.
func takeInventory(l layout) (*inventory, error) {
	inv := &inventory{
		full:          map[int][]int64{},
		stagedEntries: map[int64]int64{},
		stagedHashes:  map[int64]int64{},
	}
	logDir := l.path("log")
	err := filepath.WalkDir(l.path("log/tile"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == l.path("log/tile") {
				return fs.SkipDir // a log with no entries yet
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(logDir, p)
		if err != nil {
			return err
		}
		t, err := c2sp.ParsePath(filepath.ToSlash(rel))
		if err != nil {
			if !strings.HasPrefix(d.Name(), ".tmp-") { // left by a crash during a durable write
				inv.warnings = append(inv.warnings, fmt.Sprintf("unexpected file %s", p))
			}
			return nil
		}
		if t.Width < c2sp.TileWidth {
			inv.partials = append(inv.partials, t)
			return nil
		}
		inv.full[t.Level] = append(inv.full[t.Level], t.N)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("couldn't list tiles: %w", err)
	}
	for _, ns := range inv.full {
		slices.Sort(ns)
	}
	if fsstore.JournalHolds(l.dir) {
		inv.warnings = append(inv.warnings, fmt.Sprintf("%s holds commits: the log is open or was not closed; "+
			"after a power failure, open it once (trail serve) to replay them into the staging files, then verify", l.path(journalFile)))
	}
	des, err := os.ReadDir(l.path(stagingDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, de := range des {
		kind, num, _ := strings.Cut(de.Name(), "-")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || len(num) != 12 || n < 0 || (kind != "entries" && kind != "hashes") || !de.Type().IsRegular() {
			inv.warnings = append(inv.warnings, fmt.Sprintf("unexpected file %s", filepath.Join(l.path(stagingDir), de.Name())))
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return nil, err
		}
		if kind == "entries" {
			inv.stagedEntries[n] = fi.Size()
		} else {
			inv.stagedHashes[n] = fi.Size()
		}
	}
	return inv, nil
}

// bundle is one entry bundle to check, with its leaf hashes.
type bundle struct {
	n        int64
	path     string // the entries: the sealed bundle or its staging file
	hashPath string // the leaf hashes: the level-0 tile or its staging file
	sealed   bool   // path is the sealed bundle, which must hold exactly 256 entries
	count    int    // entries to check
	// partials are the partial bundles and level-0 tiles of index n.
	partials []c2sp.Tile
	// retain says to keep the leaf hashes for checking checkpoints.
	retain bool
	// end says why a staged bundle's intact entries end early, if they do.
	end string
}

// torn is staged data beyond the stored entries: what a crash leaves
// until the log is reopened.
type torn struct {
	path  string
	bytes int64
}

// plan is the stored entries, bundle by bundle, and what else to check.
type plan struct {
	bundles []bundle
	size    int64  // entries stored
	end     string // where the stored entries end, for messages
	torn    []torn
	upper   []c2sp.Tile // partial tiles of level 1 and above
	// short, if not nil, reports that the newest checkpoint covers more
	// entries than are stored. It is returned after checking those that
	// are: one of them may be the altered entry that cut the data short.
	short *Failure
}

// makePlan finds the stored entries: sealed bundles 0, 1, ..., then staged
// bundles, of which all but the last are full (sealed but not yet renamed
// when the log stopped). It fails on gaps, on missing or surplus tiles, and
// when the newest checkpoint covers more entries than are stored.
func (v *verifier) makePlan(inv *inventory) (*plan, error) {
	l := v.l
	p := &plan{}
	newest := v.cps[len(v.cps)-1]
	usedHashes := map[int64]bool{}
	n := int64(0)   // the next bundle index
	var last bundle // the last bundle of the chain, if it is not full
	for {
		b := bundle{n: n}
		switch {
		case inv.has(c2sp.EntriesLevel, n):
			b.path, b.sealed, b.count = l.fullTile(c2sp.EntriesLevel, n), true, c2sp.TileWidth
			switch {
			case inv.has(0, n):
				b.hashPath = l.fullTile(0, n)
			case inv.stagedHashes[n] > 0:
				// Sealed bundle whose hashes' rename did not survive a crash.
				b.hashPath = l.staged("hashes", n)
				usedHashes[n] = true
			default:
				return nil, &Failure{Where: l.fullTile(0, n), What: fmt.Sprintf("missing: the hash tile of %s was deleted", b.path)}
			}
		case inv.stagedEntries[n] > 0:
			if err := v.stagedBundle(inv, p, &b); err != nil {
				return nil, err
			}
			usedHashes[n] = true
		}
		if b.path == "" {
			break
		}
		if b.count > 0 {
			p.bundles = append(p.bundles, b)
			p.size += int64(b.count)
			p.end = fmt.Sprintf("the last in %s, after %d entries", b.path, b.count)
		}
		if b.end != "" {
			p.end = fmt.Sprintf("%s, after %d entries: %s", b.path, b.count, b.end)
		}
		n++
		if b.count < c2sp.TileWidth {
			last = b
			break
		}
	}
	// n is now the first bundle index past the stored ones.
	if i, _ := slices.BinarySearch(inv.full[c2sp.EntriesLevel], n); i < len(inv.full[c2sp.EntriesLevel]) {
		m := inv.full[c2sp.EntriesLevel][i]
		if last.path != "" {
			return nil, &Failure{Where: l.fullTile(c2sp.EntriesLevel, m), What: fmt.Sprintf("a sealed bundle after %s, which holds only %d entries: entries were deleted", last.path, last.count)}
		}
		return nil, &Failure{Where: l.fullTile(c2sp.EntriesLevel, n), What: fmt.Sprintf("missing, but the later bundle %s exists: bundles were deleted", l.fullTile(c2sp.EntriesLevel, m))}
	}
	if last.path == "" {
		for _, m := range slices.Sorted(maps.Keys(inv.stagedEntries)) {
			if m > n && inv.stagedEntries[m] > 0 {
				return nil, &Failure{Where: l.fullTile(c2sp.EntriesLevel, n), What: fmt.Sprintf("missing, but the later bundle %s exists: bundles were deleted", l.staged("entries", m))}
			}
		}
	}
	if newest.Size > p.size {
		end := ""
		if p.end != "" {
			end = " (" + p.end + ")"
		}
		p.short = &Failure{
			Where: fmt.Sprintf("entries %d to %d", p.size, newest.Size-1),
			What: fmt.Sprintf("missing: the newest checkpoint (size %d, record %d of %s) covers %d entries, but only %d are stored%s: entries were deleted or truncated",
				newest.Size, newest.record, newest.path, newest.Size, p.size, end),
		}
	}
	// Staged data beyond the stored entries is a torn tail.
	for _, m := range slices.Sorted(maps.Keys(inv.stagedEntries)) {
		if m >= n && inv.stagedEntries[m] > 0 {
			p.torn = append(p.torn, torn{l.staged("entries", m), inv.stagedEntries[m]})
		}
	}
	for _, m := range slices.Sorted(maps.Keys(inv.stagedHashes)) {
		switch {
		case m >= n && inv.stagedHashes[m] > 0:
			p.torn = append(p.torn, torn{l.staged("hashes", m), inv.stagedHashes[m]})
		case m < n && !usedHashes[m]:
			v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("stale staging file %s: its bundle is sealed", l.staged("hashes", m)))
		}
	}
	if err := v.checkTileSet(inv, p); err != nil {
		return nil, err
	}
	if err := v.placePartials(inv, p); err != nil {
		return nil, err
	}
	v.checkPublishedPartials(inv, newest.Size)
	// Keep the leaf hashes of the bundles where checkpoints end: the tree
	// hashes and proofs at those sizes need them.
	for _, cp := range v.cps {
		if cp.Size%c2sp.TileWidth != 0 && cp.Size <= p.size {
			p.bundles[cp.Size/c2sp.TileWidth].retain = true
		}
	}
	return p, nil
}

// stagedBundle reads staged bundle b.n and counts its intact entries: those
// with a whole entry and a whole leaf hash. What lies beyond is a torn tail.
func (v *verifier) stagedBundle(inv *inventory, p *plan, b *bundle) error {
	l := v.l
	b.path = l.staged("entries", b.n)
	eb, err := os.ReadFile(b.path)
	if err != nil {
		return err
	}
	switch {
	case inv.stagedHashes[b.n] > 0:
		b.hashPath = l.staged("hashes", b.n)
	case inv.has(0, b.n):
		b.hashPath = l.fullTile(0, b.n) // renamed first when sealing
	default:
		b.hashPath = l.staged("hashes", b.n)
	}
	hb, err := os.ReadFile(b.hashPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	entries, parsed, _ := c2sp.ParseBundle(eb)
	b.count = min(len(entries), len(hb)/tlog.HashSize, c2sp.TileWidth)
	span := 0
	for _, e := range entries[:b.count] {
		span += 2 + len(e)
	}
	// Say why the intact entries end, should the checkpoint need more.
	switch rest := eb[parsed:]; {
	case errors.Is(err, fs.ErrNotExist):
		b.end = fmt.Sprintf("%s is missing", b.hashPath)
	case b.count < len(entries):
		b.end = fmt.Sprintf("%s holds %d bytes, %d whole hashes", b.hashPath, len(hb), len(hb)/tlog.HashSize)
	case len(rest) == 0:
	case len(rest) < 2:
		b.end = fmt.Sprintf("%d bytes follow, too few for a length prefix", len(rest))
	case rest[0] == 0 && rest[1] == 0:
		b.end = fmt.Sprintf("a zero length prefix follows at byte %d", parsed)
	default:
		b.end = fmt.Sprintf("the length prefix at byte %d says %d bytes, but %d follow it", parsed, int(rest[0])<<8|int(rest[1]), len(rest)-2)
	}
	if extra := len(eb) - span; extra > 0 {
		if b.count == c2sp.TileWidth {
			return &Failure{Where: b.path, What: fmt.Sprintf("%d bytes after the bundle's 256 entries", extra)}
		}
		p.torn = append(p.torn, torn{b.path, int64(extra)})
	}
	if extra := len(hb) - b.count*tlog.HashSize; extra > 0 {
		if b.count == c2sp.TileWidth {
			return &Failure{Where: b.hashPath, What: fmt.Sprintf("%d bytes after the tile's 256 hashes", extra)}
		}
		p.torn = append(p.torn, torn{b.hashPath, int64(extra)})
	}
	return nil
}

// checkTileSet checks that exactly the full tiles the stored entries make
// are there: level 0 with each full bundle, level L with every 256^(L+1)
// entries.
func (v *verifier) checkTileSet(inv *inventory, p *plan) error {
	for _, m := range inv.full[0] {
		if m >= int64(len(p.bundles)) || p.bundles[m].count < c2sp.TileWidth {
			if err := p.beyond(&Failure{Where: v.l.fullTile(0, m), What: fmt.Sprintf("a full tile beyond the %d stored entries", p.size)}); err != nil {
				return err
			}
		}
	}
	top := 0
	for level := range inv.full {
		top = max(top, level)
	}
	for level := 1; level <= top || p.size>>(c2sp.TileHeight*(level+1)) > 0; level++ {
		want := p.size >> (c2sp.TileHeight * (level + 1))
		have := inv.full[level]
		for k := range want {
			if k >= int64(len(have)) || have[k] != k {
				return &Failure{Where: v.l.fullTile(level, k), What: fmt.Sprintf("missing, though the %d stored entries fill it: it was deleted, or the log crashed and was not reopened since (start trail to recover)", p.size)}
			}
		}
		if int64(len(have)) > want {
			if err := p.beyond(&Failure{Where: v.l.fullTile(level, have[want]), What: fmt.Sprintf("a full tile beyond the %d stored entries", p.size)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkPublishedPartials warns about missing partial tiles at the newest
// checkpoint's size: C2SP readers fetch them to use the checkpoint. Their
// absence hides nothing (the data they copy is checked where it is stored),
// so it does not fail verification.
func (v *verifier) checkPublishedPartials(inv *inventory, size int64) {
	have := map[c2sp.Tile]bool{}
	for _, t := range inv.partials {
		have[t] = true
	}
	for level := c2sp.EntriesLevel; size>>(c2sp.TileHeight*max(level, 0)) > 0; level++ {
		s := size >> (c2sp.TileHeight * max(level, 0))
		t := c2sp.Tile{Level: level, N: s / c2sp.TileWidth, Width: int(s % c2sp.TileWidth)}
		if t.Width > 0 && !have[t] {
			v.rep.Warnings = append(v.rep.Warnings, fmt.Sprintf("%s is missing: readers of the newest checkpoint (size %d) need it", v.l.tile(t), size))
		}
	}
}

// beyond returns f, a tile beyond the stored entries, unless entries are
// missing, which explains it.
func (p *plan) beyond(f *Failure) error {
	if p.short != nil {
		return nil
	}
	return f
}

// placePartials attaches each partial bundle and tile to what it must be a
// prefix of, and fails for those beyond the stored entries.
func (v *verifier) placePartials(inv *inventory, p *plan) error {
	for _, t := range inv.partials {
		var ok bool
		switch t.Level {
		case c2sp.EntriesLevel, 0:
			ok = t.N < int64(len(p.bundles)) && p.bundles[t.N].count >= t.Width
			if ok {
				p.bundles[t.N].partials = append(p.bundles[t.N].partials, t)
			}
		default:
			ok = (t.N*c2sp.TileWidth+int64(t.Width))<<(c2sp.TileHeight*t.Level) <= p.size
			if ok {
				p.upper = append(p.upper, t)
			}
		}
		if !ok {
			if err := p.beyond(&Failure{Where: v.l.tile(t), What: fmt.Sprintf("a partial tile beyond the %d stored entries", p.size)}); err != nil {
				return err
			}
		}
	}
	return nil
}
