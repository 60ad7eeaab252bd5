package bench

import (
	"context"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/storage"
)

var (
	_ storage.Backend       = (*timedStore)(nil)
	_ storage.InteriorStore = (*timedStore)(nil)
)

// timedStore wraps the storage backend to time each group commit: how many
// syncs there were, how many entries each made durable, and how long the
// backend took. The rest of an Append's latency is the ledger's own.
type timedStore struct {
	storage.Backend

	mu          sync.Mutex
	commits     []time.Duration // of Syncs that made entries durable
	entries     int64
	unsynced    int64 // entries written since the last Sync
	checkpoints int
	cpTime      time.Duration
}

// WriteInterior and ReadInterior pass the tiles' derived interior hashes
// through, so that the log is written as trail serve writes it.
func (s *timedStore) WriteInterior(n int64, hs []tlog.Hash) error {
	if is, ok := s.Backend.(storage.InteriorStore); ok {
		return is.WriteInterior(n, hs)
	}
	return nil
}

func (s *timedStore) ReadInterior(n int64) ([]tlog.Hash, error) {
	if is, ok := s.Backend.(storage.InteriorStore); ok {
		return is.ReadInterior(n)
	}
	return nil, storage.ErrNotFound
}

func (s *timedStore) Write(ctx context.Context, b *storage.Batch) error {
	err := s.Backend.Write(ctx, b)
	s.mu.Lock()
	s.unsynced += int64(len(b.Entries))
	s.mu.Unlock()
	return err
}

func (s *timedStore) Sync(ctx context.Context) error {
	s.mu.Lock()
	n := s.unsynced
	s.unsynced = 0
	s.mu.Unlock()
	start := time.Now()
	err := s.Backend.Sync(ctx)
	d := time.Since(start)
	if n > 0 {
		s.mu.Lock()
		s.commits = append(s.commits, d)
		s.entries += n
		s.mu.Unlock()
	}
	return err
}

func (s *timedStore) AddCheckpoint(ctx context.Context, c *storage.Checkpoint) error {
	start := time.Now()
	err := s.Backend.AddCheckpoint(ctx, c)
	s.mu.Lock()
	s.checkpoints++
	s.cpTime += time.Since(start)
	s.mu.Unlock()
	return err
}

// report fills in the commit figures of res.
func (s *timedStore) report(res *Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Commits = len(s.commits)
	res.Checkpoints = s.checkpoints
	if s.checkpoints > 0 {
		res.CheckpointMs = ms(s.cpTime / time.Duration(s.checkpoints))
	}
	if len(s.commits) == 0 {
		return
	}
	res.EntriesPerCommit = float64(s.entries) / float64(len(s.commits))
	var total time.Duration
	for _, d := range s.commits {
		total += d
	}
	sorted := slices.Clone(s.commits)
	slices.Sort(sorted)
	res.StoreP50Ms = ms(quantile(sorted, 0.5))
	res.StoreP99Ms = ms(quantile(sorted, 0.99))
	res.StoreBusy = total.Seconds() / res.Seconds
}
