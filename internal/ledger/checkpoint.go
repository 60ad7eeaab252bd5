package ledger

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/storage"
)

// Checkpoint is a signed checkpoint of this log.
type Checkpoint struct {
	c2sp.Checkpoint
	// Note is the signed note, as stored and served.
	Note []byte
}

// ParseCheckpoint verifies a signed checkpoint note with the log's key and
// checks its origin.
func (l *Log) ParseCheckpoint(signed []byte) (*Checkpoint, error) {
	n, err := note.Open(signed, note.VerifierList(l.verifier))
	if err != nil {
		return nil, fmt.Errorf("checkpoint signature: %w", err)
	}
	c, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	if c.Origin != l.origin {
		return nil, fmt.Errorf("checkpoint origin %q, want %q", c.Origin, l.origin)
	}
	return &Checkpoint{Checkpoint: c, Note: signed}, nil
}

// Latest returns the newest signed checkpoint.
func (l *Log) Latest() *Checkpoint { return l.latest.Load() }

// Checkpoint signs and publishes a checkpoint of the current tree unless the
// newest one already covers it, and returns the newest checkpoint.
func (l *Log) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	l.cpMu.Lock()
	defer l.cpMu.Unlock()
	snap := l.snapshot()
	if cp := l.latest.Load(); cp != nil && cp.Size >= snap.size {
		return cp, nil
	}
	root, err := tlog.TreeHash(snap.size, l.hashReader(ctx, snap))
	if err != nil {
		return nil, fmt.Errorf("couldn't compute tree hash: %w", err)
	}
	body := c2sp.Checkpoint{Origin: l.origin, Size: snap.size, Hash: root}
	signed, err := note.Sign(&note.Note{Text: string(body.Format())}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("couldn't sign checkpoint: %w", err)
	}
	if err := l.store.AddCheckpoint(ctx, &storage.Checkpoint{Size: snap.size, Note: signed, Partials: snap.partials()}); err != nil {
		return nil, fmt.Errorf("couldn't store checkpoint: %w", err)
	}
	cp := &Checkpoint{Checkpoint: body, Note: signed}
	l.latest.Store(cp)
	if l.onCP != nil {
		l.onCP(cp)
	}
	return cp, nil
}

// checkpointLoop signs a checkpoint whenever the tree has grown, at most once
// per interval.
func (l *Log) checkpointLoop() {
	defer l.wg.Done()
	if l.interval < 0 {
		return
	}
	var last time.Time
	for {
		select {
		case <-l.grown:
		case <-l.stop:
			return
		}
		if wait := time.Until(last.Add(l.interval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-l.stop:
				t.Stop()
				return
			}
		}
		last = time.Now()
		if _, err := l.Checkpoint(context.Background()); err != nil {
			l.logger.Error("couldn't publish checkpoint", "err", err)
		}
	}
}

// Checkpoints returns every checkpoint the log has signed, oldest first.
func (l *Log) Checkpoints(ctx context.Context) ([]*Checkpoint, error) {
	notes, err := l.store.Checkpoints(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Checkpoint, 0, len(notes))
	for _, n := range notes {
		cp, err := l.ParseCheckpoint(n)
		if err != nil {
			return nil, err
		}
		out = append(out, cp)
	}
	return out, nil
}
