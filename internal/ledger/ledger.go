// Package ledger is trail's log engine: it sequences appends, makes them
// durable with group commit, keeps the RFC 6962 Merkle tree over them (as
// C2SP tiles, through golang.org/x/mod/sumdb/tlog), signs C2SP checkpoints
// with Ed25519, and proves inclusion and consistency.
//
// Append returns only once its entries are durable. Callers that append
// concurrently share one fsync: the committer takes everything queued while
// the previous commit was syncing. A lone caller is committed at once; nothing
// ever waits for a timer.
package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/storage"
)

var (
	// ErrClosed is returned by operations on a closed Log.
	ErrClosed = errors.New("log is closed")
	// ErrEmpty is returned by Append with no entries, or with an empty entry.
	ErrEmpty = errors.New("empty entry or batch")
	// ErrReserved is returned by Append for an entry that looks like a
	// large-entry reference, which only the ledger may write.
	ErrReserved = errors.New("entry uses the reserved large-entry form")
	// ErrTooBig is returned by Append for an entry over MaxEntrySize.
	ErrTooBig = errors.New("entry too large")
)

// MaxEntrySize bounds one entry. Entries over c2sp.MaxEntrySize are stored as
// blobs referenced from their leaf (see large.go).
const MaxEntrySize = 64 << 20

// maxBatchEntries bounds one group commit, so that one commit's memory and
// latency stay bounded under any load.
const maxBatchEntries = 1 << 16

// mergeEntries is how many entries a sync must carry before the sync loop
// stops waiting for the committer's next batch.
const mergeEntries = 256

// Options configure Open.
type Options struct {
	// Store holds the log. Required.
	Store storage.Backend
	// Signer signs checkpoints; its name is the log's origin. Required.
	Signer note.Signer
	// Verifier checks the stored checkpoints at open. Required.
	Verifier note.Verifier
	// CheckpointInterval is the least time between two signed checkpoints.
	// A checkpoint is signed whenever the tree has grown, at most this often.
	// Default 1s; negative means only on Checkpoint and Close.
	CheckpointInterval time.Duration
	// Logger receives warnings and errors. Default: discard.
	Logger *slog.Logger
	// OnCheckpoint, if not nil, is called with each checkpoint signed from
	// now on, once it is stored and published, in order, from the goroutine
	// that signed it. It must return quickly (hand the checkpoint to a
	// goroutine of its own): checkpoints are not signed while it runs.
	OnCheckpoint func(*Checkpoint)
}

// Log is an open log. Its methods are safe for concurrent use.
type Log struct {
	store      storage.Backend
	signer     note.Signer
	verifier   note.Verifier
	origin     string
	interval   time.Duration
	logger     *slog.Logger
	onCP       func(*Checkpoint)
	tiles      tileCache
	edgeHashes hashMemo // interior hashes of the edge, computed once

	// Appends queue on reqs; closeMu orders them against Close.
	closeMu sync.RWMutex
	closed  bool
	reqs    chan *request
	writes  chan written // from commitLoop to syncLoop
	failed  atomic.Pointer[error]
	w       edge // the committer's edge
	// gathering is set while the committer holds requests it has not yet
	// handed to the sync loop (see syncLoop).
	gathering atomic.Bool
	queued    atomic.Int64 // requests ever queued

	mu  sync.RWMutex
	pub edge // the durable tree, as readers see it

	cpMu   sync.Mutex
	latest atomic.Pointer[Checkpoint]
	grown  chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
}

type request struct {
	entries [][]byte
	hashes  []tlog.Hash
	first   int64
	err     error
	done    chan struct{}
}

// Open opens the log in opts.Store. It checks that the newest stored
// checkpoint is signed by opts.Verifier and matches the stored tree, and
// signs a new one at once if the tree has grown past it (after a crash).
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.Store == nil || opts.Signer == nil || opts.Verifier == nil {
		return nil, errors.New("ledger: Store, Signer and Verifier are required")
	}
	if opts.Signer.Name() != opts.Verifier.Name() || opts.Signer.KeyHash() != opts.Verifier.KeyHash() {
		return nil, errors.New("ledger: signer and verifier keys differ")
	}
	l := &Log{
		store:    opts.Store,
		signer:   opts.Signer,
		verifier: opts.Verifier,
		origin:   opts.Signer.Name(),
		interval: opts.CheckpointInterval,
		logger:   opts.Logger,
		onCP:     opts.OnCheckpoint,
		tiles:    tileCache{max: 4096},
		reqs:     make(chan *request, 1024),
		writes:   make(chan written, 64),
		grown:    make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if l.interval == 0 {
		l.interval = time.Second
	}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	notes, err := l.store.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("couldn't read checkpoints: %w", err)
	}
	var cp *Checkpoint
	if len(notes) > 0 {
		if cp, err = l.ParseCheckpoint(notes[len(notes)-1]); err != nil {
			return nil, &storage.CorruptionError{Where: "newest checkpoint", What: err.Error()}
		}
	}
	size := l.store.Size()
	if cp != nil && cp.Size > size {
		return nil, &storage.CorruptionError{
			Where: fmt.Sprintf("entries %d to %d", size, cp.Size-1),
			What:  fmt.Sprintf("missing: the newest checkpoint covers %d entries, storage holds %d", cp.Size, size),
		}
	}
	var signed int64
	if cp != nil {
		signed = cp.Size
	}
	if l.w, err = l.rebuildEdge(ctx, size, signed); err != nil {
		return nil, err
	}
	l.pub = l.w.snapshot()
	if cp != nil {
		root, err := tlog.TreeHash(cp.Size, l.hashReader(ctx, l.pub))
		if err != nil {
			return nil, err
		}
		if root != cp.Hash {
			return nil, &storage.CorruptionError{
				Where: fmt.Sprintf("tree of size %d", cp.Size),
				What:  fmt.Sprintf("root hash %s differs from the newest checkpoint's %s", root, cp.Hash),
			}
		}
		l.latest.Store(cp)
	}
	l.wg.Add(3)
	go l.commitLoop()
	go l.syncLoop()
	go l.checkpointLoop()
	if cp := l.latest.Load(); cp == nil || cp.Size < l.pub.size {
		if _, err := l.Checkpoint(ctx); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Origin returns the log's origin, the first line of its checkpoints.
func (l *Log) Origin() string { return l.origin }

// Size returns the number of durable entries.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.pub.size
}

func (l *Log) snapshot() edge {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.pub.snapshot()
}

// Append adds entries to the log and returns the index of the first; the
// others follow it in order. It returns only once all of them are durable.
// The entries must not be modified until Append returns.
//
// If ctx is done before Append returns, the entries may or may not be in the
// log: they were not acknowledged. After a storage error the log refuses all
// further appends; reopen it to recover.
func (l *Log) Append(ctx context.Context, entries ...[]byte) (int64, error) {
	if len(entries) == 0 {
		return 0, ErrEmpty
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for _, e := range entries { // all checks before anything is stored
		switch {
		case len(e) == 0:
			return 0, ErrEmpty
		case len(e) > MaxEntrySize:
			return 0, fmt.Errorf("%w: %d bytes, at most %d", ErrTooBig, len(e), MaxEntrySize)
		case isLargeRef(e):
			return 0, ErrReserved
		}
	}
	req := &request{entries: entries, hashes: make([]tlog.Hash, len(entries)), done: make(chan struct{})}
	copied := false
	for i, e := range entries {
		if len(e) > c2sp.MaxEntrySize {
			sum := sha256.Sum256(e)
			if err := l.store.PutBlob(ctx, sum, e); err != nil {
				return 0, fmt.Errorf("couldn't store large entry: %w", err)
			}
			if !copied {
				req.entries = append([][]byte(nil), entries...)
				copied = true
			}
			req.entries[i] = largeRef(sum, len(e))
		}
		req.hashes[i] = tlog.RecordHash(req.entries[i])
	}
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return 0, ErrClosed
	}
	select {
	case l.reqs <- req:
		l.closeMu.RUnlock()
		l.queued.Add(1)
	case <-ctx.Done():
		l.closeMu.RUnlock()
		return 0, ctx.Err()
	}
	select {
	case <-req.done:
		return req.first, req.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (l *Log) commitLoop() {
	defer l.wg.Done()
	var batch []*request
	for req := range l.reqs {
		l.gathering.Store(true)
		batch = append(batch[:0], req)
		n := len(req.entries)
		// Take what is queued. Appenders woken by the previous commit are
		// usually about to queue again: yield to let them, for as long as
		// yielding brings more. A lone caller pays one yield, microseconds,
		// never a timer's wait.
		arrived := true
	drain:
		for n < maxBatchEntries {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
				n += len(r.entries)
				arrived = true
			default:
				if !arrived {
					break drain
				}
				arrived = false
				runtime.Gosched()
			}
		}
		l.commit(batch, n)
		l.gathering.Store(len(l.reqs) > 0)
		clear(batch)
	}
	close(l.writes)
}

// written is a batch whose entries were written but are not yet durable.
type written struct {
	reqs      []*request
	snap      edge       // the tree once the batch is durable
	interiors []interior // of the level-0 tiles the batch completes
	err       error      // why the batch was not written
}

// commit writes a batch to storage and hands it to syncLoop. Writing the next
// batch overlaps with syncing this one: the sync after it covers both.
func (l *Log) commit(batch []*request, n int) {
	reqs := slices.Clone(batch)
	if p := l.failed.Load(); p != nil {
		l.writes <- written{reqs: reqs, err: *p}
		return
	}
	b := &storage.Batch{Start: l.w.size, Entries: make([][]byte, 0, n), Hashes: make([]tlog.Hash, 0, n)}
	for _, r := range reqs {
		r.first = l.w.size + int64(len(b.Entries))
		b.Entries = append(b.Entries, r.entries...)
		b.Hashes = append(b.Hashes, r.hashes...)
	}
	var interiors []interior
	for _, h := range b.Hashes {
		l.w.push(h, &b.Tiles, &interiors)
	}
	if err := l.store.Write(context.Background(), b); err != nil {
		l.writes <- written{reqs: reqs, err: l.fail(err)}
		return
	}
	l.writes <- written{reqs: reqs, snap: l.w.snapshot(), interiors: interiors}
}

func (w *written) entries() int {
	n := 0
	for _, r := range w.reqs {
		n += len(r.entries)
	}
	return n
}

// syncLoop makes written batches durable, as many per sync as were written
// while the previous sync ran, then publishes and acknowledges them in order.
// A sync of fewer than mergeEntries entries waits, yielding, for the
// committer's batch in progress and for the callers the previous sync
// acknowledged (docs/DESIGN.md, "Group commit, pipelined").
func (l *Log) syncLoop() {
	defer l.wg.Done()
	var ws []written
	last := 0 // entries the previous sync carried
	for w := range l.writes {
		ws = append(ws[:0], w)
		n := w.entries()
		queued, idle := l.queued.Load(), 0
	drain:
		for {
			select {
			case w, ok := <-l.writes:
				if !ok {
					break drain
				}
				ws = append(ws, w)
				n += w.entries()
			default:
				// Many small appenders: the callers the last sync
				// acknowledged are coming back. Wait, yielding, for the
				// committer to hand them over, so that one sync carries
				// them all instead of alternating in two halves.
				if n >= mergeEntries {
					break drain
				}
				if !l.gathering.Load() {
					if n >= last {
						break drain
					}
					// Fewer than last time: more may be on their
					// way, as long as yielding brings requests.
					if q := l.queued.Load(); q != queued {
						queued, idle = q, 0
					} else if idle++; idle > 2 {
						break drain
					}
				}
				runtime.Gosched()
			}
		}
		last = n
		l.syncAndAck(ws)
		clear(ws)
	}
}

func (l *Log) syncAndAck(ws []written) {
	var err error
	if p := l.failed.Load(); p != nil {
		err = *p
	} else if err = l.store.Sync(context.Background()); err != nil {
		err = l.fail(err)
	} else {
		var last *edge
		for i := range ws {
			if ws[i].err == nil {
				last = &ws[i].snap
			}
		}
		if last != nil {
			l.mu.Lock()
			l.pub = *last
			l.mu.Unlock()
			select {
			case l.grown <- struct{}{}:
			default:
			}
		}
	}
	for _, w := range ws {
		if w.err != nil {
			ack(w.reqs, w.err)
		} else {
			ack(w.reqs, err)
		}
	}
	// The interiors are derived: written after the acknowledgements, never
	// synced, checked when read (see leafTile).
	if is, ok := l.store.(storage.InteriorStore); ok && err == nil {
		for _, w := range ws {
			if w.err != nil {
				continue
			}
			for _, in := range w.interiors {
				if err := is.WriteInterior(in.n, in.hashes); err != nil {
					l.logger.Warn("couldn't store a tile's interior hashes (derived; proofs only take longer)", "tile", in.n, "err", err)
				}
			}
		}
	}
}

// fail records a storage failure: from now on every append gets it.
func (l *Log) fail(err error) error {
	err = fmt.Errorf("couldn't append: %w", err)
	if l.failed.CompareAndSwap(nil, &err) {
		l.logger.Error("storage failed; refusing appends until reopened", "err", err)
	}
	return *l.failed.Load()
}

func ack(reqs []*request, err error) {
	for _, r := range reqs {
		r.err = err
		close(r.done)
	}
}

// Close stops accepting appends, waits for queued ones to commit, signs a
// final checkpoint if the tree has grown, and closes the store.
func (l *Log) Close() error {
	l.closeMu.Lock()
	if l.closed {
		l.closeMu.Unlock()
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.closeMu.Unlock()
	close(l.stop)
	l.wg.Wait()
	var err error
	if l.failed.Load() == nil {
		_, err = l.Checkpoint(context.Background())
	}
	return errors.Join(err, l.store.Close())
}
