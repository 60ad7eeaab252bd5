// Package storagetest is the conformance suite that every storage.Backend
// must pass. Backends call Run from their own tests.
package storagetest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/storage"
)

// Opener opens the backend under test. Called twice with the same t within a
// subtest, it must return the same stored log (after the first is closed).
type Opener func(t *testing.T) storage.Backend

func entry(i int64) []byte { return fmt.Appendf(nil, `{"entry":%d,"pad":"%0*d"}`, i, int(i%97), 0) }

func batch(start, n int64) *storage.Batch {
	b := &storage.Batch{Start: start}
	for i := start; i < start+n; i++ {
		e := entry(i)
		b.Entries = append(b.Entries, e)
		b.Hashes = append(b.Hashes, tlog.RecordHash(e))
	}
	return b
}

// Run runs the conformance suite.
func Run(t *testing.T, open Opener) {
	t.Run("AppendRead", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		var size int64
		for _, n := range []int64{1, 2, 253, 256, 1000, 1} {
			if err := storage.Append(ctx, s, batch(size, n)); err != nil {
				t.Fatalf("Append(%d at %d): %v", n, size, err)
			}
			size += n
			if s.Size() != size {
				t.Fatalf("Size() = %d, want %d", s.Size(), size)
			}
		}
		got, err := s.ReadEntries(ctx, 0, size)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range got {
			if !bytes.Equal(e, entry(int64(i))) {
				t.Fatalf("entry %d = %q, want %q", i, e, entry(int64(i)))
			}
		}
		if _, err := s.ReadEntries(ctx, size-1, size+1); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ReadEntries past the end = %v, want ErrNotFound", err)
		}
		tile, err := s.ReadTile(ctx, 0, 2)
		if err != nil || len(tile) != c2sp.TileWidth || tile[5] != tlog.RecordHash(entry(2*256+5)) {
			t.Errorf("ReadTile(0, 2) = %d hashes, %v", len(tile), err)
		}
		tile, err = s.ReadTile(ctx, 0, size/c2sp.TileWidth)
		if err != nil || int64(len(tile)) != size%c2sp.TileWidth {
			t.Errorf("ReadTile(0, edge) = %d hashes, %v; want %d", len(tile), err, size%c2sp.TileWidth)
		}
		if _, err := s.ReadTile(ctx, 3, 0); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ReadTile(3, 0) = %v, want ErrNotFound", err)
		}
		if err := storage.Append(ctx, s, batch(size+1, 1)); err == nil {
			t.Errorf("Append with a gap succeeded")
		}
		s.Close()
		s = open(t)
		defer s.Close()
		if s.Size() != size {
			t.Fatalf("reopened Size() = %d, want %d", s.Size(), size)
		}
		if err := storage.Append(ctx, s, batch(size, 300)); err != nil {
			t.Fatal(err)
		}
		got, err = s.ReadEntries(ctx, size-2, size+300)
		if err != nil || !bytes.Equal(got[0], entry(size-2)) || !bytes.Equal(got[301], entry(size+299)) {
			t.Fatalf("ReadEntries across reopen: %v", err)
		}
	})
	t.Run("Tiles", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		b := batch(0, 3)
		hs := make([]tlog.Hash, c2sp.TileWidth)
		hs[7][0] = 7
		b.Tiles = []storage.Tile{{Level: 1, N: 0, Hashes: hs}}
		if err := storage.Append(t.Context(), s, b); err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadTile(t.Context(), 1, 0)
		if err != nil || len(got) != c2sp.TileWidth || got[7] != hs[7] {
			t.Fatalf("ReadTile(1, 0) = %d hashes, %v", len(got), err)
		}
	})
	t.Run("Blobs", func(t *testing.T) {
		s := open(t)
		defer s.Close()
		body := bytes.Repeat([]byte("large "), 20000)
		sum := sha256.Sum256(body)
		for range 2 {
			if err := s.PutBlob(t.Context(), sum, body); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ReadBlob(t.Context(), sum)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("ReadBlob = %d bytes, %v", len(got), err)
		}
		if _, err := s.ReadBlob(t.Context(), [32]byte{1}); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ReadBlob(missing) = %v, want ErrNotFound", err)
		}
	})
	t.Run("Checkpoints", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if cps, err := s.Checkpoints(ctx); err != nil || len(cps) != 0 {
			t.Fatalf("Checkpoints() on a new log = %d, %v", len(cps), err)
		}
		if err := storage.Append(ctx, s, batch(0, 300)); err != nil {
			t.Fatal(err)
		}
		for i, size := range []int64{100, 300} {
			c := &storage.Checkpoint{Size: size, Note: fmt.Appendf(nil, "note %d\n", i)}
			if err := s.AddCheckpoint(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		s.Close()
		s = open(t)
		defer s.Close()
		cps, err := s.Checkpoints(ctx)
		if err != nil || len(cps) != 2 || string(cps[1]) != "note 1\n" {
			t.Fatalf("Checkpoints() = %q, %v", cps, err)
		}
	})
	t.Run("Closed", func(t *testing.T) {
		s := open(t)
		s.Close()
		if err := storage.Append(t.Context(), s, batch(0, 1)); err == nil {
			t.Error("Append after Close succeeded")
		}
	})
}
