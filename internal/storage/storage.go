// Package storage defines what the ledger needs from the place it keeps a log:
// a small, transactional-in-spirit interface that the file backend (package
// fs) implements and a PostgreSQL backend will implement later.
//
// A backend stores bytes; it does not sign, hash or decide what is valid. The
// ledger above it computes leaf hashes and tiles and hands them down with the
// entries, so that every backend stores exactly the same C2SP objects.
package storage

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrNotFound is returned for an entry, tile, blob or checkpoint that is not
// stored. Servers map it to 404.
var ErrNotFound = errors.New("not found")

// Tile is the content of a hash tile: Width hashes of level 8·Level.
type Tile struct {
	Level  int
	N      int64
	Hashes []tlog.Hash
}

// Batch is one group commit: entries Start, Start+1, ... with their leaf
// hashes, and the full hash tiles of level 1 and above that it completes.
// (Level-0 tiles are the leaf hashes themselves; every backend builds them.)
// A batch with tiles and no entries restores tiles that a crash kept from
// being written.
type Batch struct {
	Start   int64
	Entries [][]byte
	Hashes  []tlog.Hash
	Tiles   []Tile
}

// Checkpoint is a signed checkpoint note and what a static reader needs to
// use it: the partial tiles at its tree size.
type Checkpoint struct {
	Size     int64
	Note     []byte
	Partials []Tile
}

// Backend stores one log. Its methods are safe for concurrent use, except that
// Write, Sync and AddCheckpoint are each called by one goroutine at a time.
type Backend interface {
	// Size returns the number of entries durably stored: after a crash, the
	// entries that survived recovery.
	Size() int64

	// Write stages a batch that starts where the previous one written
	// ended. It may return before the batch is durable; Size includes the
	// batch only once a Sync after it has returned. On error nothing of the
	// batch may be assumed stored or not stored; the caller must stop
	// writing and reopen.
	Write(ctx context.Context, b *Batch) error

	// Sync makes every batch whose Write returned before the call durable
	// (on stable storage, findable after a crash) and includes it in Size.
	// It may run while the next Write does; calls to Sync are serialized.
	// On error, as for Write.
	Sync(ctx context.Context) error

	// ReadEntries returns entries [start, end), which must be below Size.
	ReadEntries(ctx context.Context, start, end int64) ([][]byte, error)

	// ReadTile returns the stored full tile (level, n) as raw hashes: 256
	// of them, or fewer for the level-0 tile still being filled.
	ReadTile(ctx context.Context, level int, n int64) ([]tlog.Hash, error)

	// PutBlob durably stores the body of an entry too large for a bundle,
	// under its SHA-256 hash. Storing the same blob again is not an error.
	PutBlob(ctx context.Context, sum [32]byte, body []byte) error
	// ReadBlob returns a body stored with PutBlob, or ErrNotFound.
	ReadBlob(ctx context.Context, sum [32]byte) ([]byte, error)

	// AddCheckpoint durably records a signed checkpoint as the newest one and
	// publishes it. Every checkpoint added is kept.
	AddCheckpoint(ctx context.Context, c *Checkpoint) error
	// Checkpoints returns every stored signed checkpoint note, oldest first.
	Checkpoints(ctx context.Context) ([][]byte, error)

	// Close releases the backend. It does not sync: everything acknowledged
	// is already durable.
	Close() error
}

// EntryAtReader is implemented by backends that can read part of an entry
// bundle without reading all of it. A search index knows where each entry
// lies in its bundle; reading those bytes alone saves reading (and
// allocating) the bundle's 256 entries to return one.
type EntryAtReader interface {
	// ReadEntryAt returns the n bytes at byte offset off of the bundle that
	// holds entry index (sealed or still being filled). It checks only that
	// they are stored: the caller hashes them against the tree.
	ReadEntryAt(ctx context.Context, index, off int64, n int) ([]byte, error)
}

// InteriorWidth is the number of hashes an InteriorStore keeps for each
// full level-0 tile: those of height 4, each the root of 16 leaves.
const InteriorWidth = 16

// InteriorStore is implemented by backends that keep, beside each full
// level-0 tile, a derived copy of its interior hashes of height 4. With
// them an inclusion proof hashes about 30 nodes of its level-0 tile
// instead of all 255. The copy is neither durable nor trusted: the log
// writes it after the tile is durable, uses it only when it hashes to the
// tile's root in the tree, and writes it again when it is missing or wrong.
type InteriorStore interface {
	// WriteInterior stores the InteriorWidth hashes of full level-0 tile n.
	WriteInterior(n int64, hs []tlog.Hash) error
	// ReadInterior returns the hashes stored for tile n, or ErrNotFound.
	ReadInterior(n int64) ([]tlog.Hash, error)
}

// CorruptionError reports stored data that does not match what was
// acknowledged or signed: bit rot, or tampering. It is never repaired
// silently.
type CorruptionError struct {
	Where string // a file, tile or entry
	What  string // what differs
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("corrupted log: %s: %s", e.Where, e.What)
}

// Append writes a batch and makes it durable.
func Append(ctx context.Context, s Backend, b *Batch) error {
	if err := s.Write(ctx, b); err != nil {
		return err
	}
	return s.Sync(ctx)
}
