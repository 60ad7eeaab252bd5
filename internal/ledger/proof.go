package ledger

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/storage"
)

// TreeHash returns the root hash of the tree of the given size, which must
// not exceed Size.
func (l *Log) TreeHash(ctx context.Context, size int64) (tlog.Hash, error) {
	snap := l.snapshot()
	if size < 0 || size > snap.size {
		return tlog.Hash{}, fmt.Errorf("tree size %d: %w (log size %d)", size, storage.ErrNotFound, snap.size)
	}
	return tlog.TreeHash(size, l.hashReader(ctx, snap))
}

// ProveInclusion returns the proof that entry index is in the tree of the
// given size, checkable with tlog.CheckRecord.
func (l *Log) ProveInclusion(ctx context.Context, index, size int64) (tlog.RecordProof, error) {
	snap := l.snapshot()
	if size < 1 || size > snap.size || index < 0 || index >= size {
		return nil, fmt.Errorf("entry %d in tree of size %d: %w (log size %d)", index, size, storage.ErrNotFound, snap.size)
	}
	return tlog.ProveRecord(size, index, l.hashReader(ctx, snap))
}

// ProveConsistency returns the proof that the tree of size from is a prefix
// of the tree of size to, checkable with tlog.CheckTree.
func (l *Log) ProveConsistency(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	snap := l.snapshot()
	if from < 1 || from > to || to > snap.size {
		return nil, fmt.Errorf("consistency %d to %d: %w (log size %d)", from, to, storage.ErrNotFound, snap.size)
	}
	return tlog.ProveTree(to, from, l.hashReader(ctx, snap))
}

// ReadEntries returns the leaves of entries [start, end) as stored: a large
// entry's leaf is its reference (see Body).
func (l *Log) ReadEntries(ctx context.Context, start, end int64) ([][]byte, error) {
	if size := l.Size(); start < 0 || end < start || end > size {
		return nil, fmt.Errorf("entries [%d, %d): %w (log size %d)", start, end, storage.ErrNotFound, size)
	}
	return l.store.ReadEntries(ctx, start, end)
}

// ErrMisplaced is returned by ReadEntryAt when the bytes at the place given
// are not the entry, or the backend cannot read part of a bundle: the
// caller reads the entry with ReadEntries instead.
var ErrMisplaced = errors.New("entry not at the place given")

// ReadEntryAt returns the leaf of entry index, reading only the n bytes at
// byte offset off of its entry bundle: the place a search index recorded.
// The bytes are returned only if they hash to the entry's leaf hash in the
// tree, so a wrong place (a damaged or altered index) yields ErrMisplaced,
// never another entry.
func (l *Log) ReadEntryAt(ctx context.Context, index, off int64, n int) ([]byte, error) {
	ra, ok := l.store.(storage.EntryAtReader)
	if !ok {
		return nil, ErrMisplaced
	}
	// The entry and its leaf hash (a tile) are read at once: each may have
	// to come from the disk.
	type read struct {
		leaf []byte
		err  error
	}
	got := make(chan read, 1)
	go func() {
		leaf, err := ra.ReadEntryAt(ctx, index, off, n)
		got <- read{leaf, err}
	}()
	want, err := l.LeafHash(ctx, index)
	r := <-got
	if err != nil {
		return nil, err
	}
	leaf, err := r.leaf, r.err
	if errors.Is(err, storage.ErrNotFound) || err == nil && tlog.RecordHash(leaf) != want {
		return nil, fmt.Errorf("entry %d at %d+%d: %w", index, off, n, ErrMisplaced)
	}
	return leaf, err
}

// ReadEntry returns the leaf of one entry.
func (l *Log) ReadEntry(ctx context.Context, index int64) ([]byte, error) {
	e, err := l.ReadEntries(ctx, index, index+1)
	if err != nil {
		return nil, err
	}
	return e[0], nil
}

// LeafHash returns the record hash of entry index, as the tree holds it.
func (l *Log) LeafHash(ctx context.Context, index int64) (tlog.Hash, error) {
	snap := l.snapshot()
	if index < 0 || index >= snap.size {
		return tlog.Hash{}, fmt.Errorf("entry %d: %w (log size %d)", index, storage.ErrNotFound, snap.size)
	}
	hs, err := l.hashReader(ctx, snap)([]int64{tlog.StoredHashIndex(0, index)})
	if err != nil {
		return tlog.Hash{}, err
	}
	return hs[0], nil
}
