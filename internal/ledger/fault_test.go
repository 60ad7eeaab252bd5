package ledger_test

import (
	"context"
	"errors"
	"testing"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage"
	"github.com/trailaudit/trail/internal/storage/fs"
)

// faultyStore fails its Sync while fail is set, as a disk reporting EIO does.
type faultyStore struct {
	storage.Backend
	fail bool
}

var errDisk = errors.New("injected I/O error")

func (s *faultyStore) Sync(ctx context.Context) error {
	if s.fail {
		return errDisk
	}
	return s.Backend.Sync(ctx)
}

func TestStorageFailure(t *testing.T) {
	dir := t.TempDir()
	keys, err := ledger.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	base, err := fs.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &faultyStore{Backend: base}
	l, err := ledger.Open(t.Context(), ledger.Options{Store: store, Signer: keys.Signer, Verifier: keys.Verifier, CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(t.Context(), []byte("durable")); err != nil {
		t.Fatal(err)
	}
	store.fail = true
	if _, err := l.Append(t.Context(), []byte("lost")); !errors.Is(err, errDisk) {
		t.Fatalf("Append during a disk failure = %v, want the injected error", err)
	}
	store.fail = false
	// The disk answers again, but what reached it is unknown: the log
	// refuses appends until reopened.
	if _, err := l.Append(t.Context(), []byte("after")); !errors.Is(err, errDisk) {
		t.Fatalf("Append after a disk failure = %v, want the original error", err)
	}
	if l.Size() != 1 {
		t.Fatalf("Size() = %d after a failed commit, want 1", l.Size())
	}
	l.Close()
	l = openLog(t, dir)
	defer l.Close()
	if e, err := l.ReadEntry(t.Context(), 0); err != nil || string(e) != "durable" {
		t.Fatalf("entry 0 after reopening = %q, %v", e, err)
	}
	if _, err := l.Append(t.Context(), []byte("again")); err != nil {
		t.Fatalf("Append after reopening: %v", err)
	}
}
