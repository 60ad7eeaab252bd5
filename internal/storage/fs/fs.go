// Package fs is the default storage backend: a data directory whose log/
// folder is a C2SP tlog-tiles tree that any static file server can publish.
//
// Layout under the root:
//
//	log/checkpoint                 newest signed checkpoint
//	log/tile/<L>/<N>[.p/<W>]       hash tiles
//	log/tile/entries/<N>[.p/<W>]   entry bundles
//	log/large/<sha256 hex>         bodies of entries too large for a bundle
//	state/staging/entries-<N>      the bundle being filled, appended in place
//	state/staging/hashes-<N>       its leaf hashes: the level-0 tile being filled
//	state/checkpoints              every signed checkpoint, append-only
//	state/journal                  small commits, until the staging files are synced
//	state/interior                 derived: each full level-0 tile's hashes of height 4
//	state/lock                     held while a process has the log open
//
// Write appends a batch's entries and leaf hashes to the two staging files
// of each bundle it touches, and a small batch also to state/journal (see
// journal.go). Sync makes everything written so far durable: by flushing
// the journal alone when it holds every batch since the last Sync, else by
// syncing the staging files (one syncfs on Linux when more than one file is
// dirty). After a sync of the staging files it renames those of full bundles
// to their C2SP paths, where they are sealed and never written again, and
// writes the full hash tiles of level 1 and above that the batches
// completed, durably, before Sync returns: never before the entries under
// them are durable. Large batches, whose cost is their data, are written
// once.
//
// Recovery (Open) relies on this: once the journal is replayed, a staging
// file holds acknowledged entries followed, after a crash, by at most a torn
// tail. Every staged entry is checked against its stored leaf hash. A
// mismatch with nothing intact after it is a torn tail, dropped; a mismatch
// followed by intact entries is damage, reported as a
// storage.CorruptionError and never repaired.
package fs

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/durable"
	"github.com/trailaudit/trail/internal/storage"
)

var _ storage.Backend = (*FS)(nil)

// FS is a log stored in a directory.
type FS struct {
	root    string
	logDir  string
	stgDir  string
	logger  *slog.Logger
	lock    *os.File
	stgSync *os.File // the staging directory, for syncing new names

	size atomic.Int64

	// Writer state, owned by Write.
	cur     *staged
	buf     []byte
	written int64 // entries written, durable or not

	// What Write has done and Sync has yet to make durable.
	pendMu sync.Mutex
	pend   pending
	syncMu sync.Mutex
	dirs   map[string]bool // directories known to exist; owned by Sync

	// journal takes small commits (see journal.go); unsynced are the
	// staging files written by commits that only it made durable. Owned by
	// Sync.
	journal   *journal
	unsynced  []*os.File
	unsealed  []*staged // full bundles, sealed once their staging files are synced
	syncedSeq uint64    // the journal's last record that a completed Sync covers
	// failed is the error of a failed sync of the staging files: after it
	// the page cache's state is unknown, and every later Sync fails.
	failed error

	cpMu   sync.Mutex
	hist   *os.File
	closed atomic.Bool

	// interior holds storage.InteriorWidth hashes per full level-0 tile,
	// at n·512 (see storage.InteriorStore); never synced.
	interior *os.File

	// Staging files are created ahead of need by a goroutine: creating a
	// file costs more than writing and syncing a bundle's worth of data.
	spareMu   sync.Mutex
	spare     map[int64]*staged // by bundle index
	spareCond *sync.Cond        // on spareMu: a batch of spares was published
	taken     int64             // the highest bundle Write has claimed
	making    int64             // the highest bundle being created, or -1
	spareWant chan int64        // the bundle being filled now
	spareDone chan struct{}

	// Partial tiles written for checkpoints, removed when their tile is full.
	partMu   sync.Mutex
	partials map[string]bool
}

// spareAhead is how many bundles' staging files are kept created in advance.
const spareAhead = 8

type pending struct {
	files []*os.File
	full  []*staged
	tiles []storage.Tile
	size  int64
	// all is set when a write is not in the journal: Sync must then make
	// the staging files durable.
	all bool
	seq uint64 // the journal's last record at the last write
}

// staged is the open pair of staging files for the bundle being filled.
type staged struct {
	n        int64
	count    int
	entries  *os.File
	hashes   *os.File
	entryLen int64 // bytes in entries
}

// Open opens or creates the log stored under root, recovering from a crash if
// there was one. It returns a *storage.CorruptionError if stored data is
// damaged.
func Open(root string, logger *slog.Logger) (*FS, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &FS{
		root:   root,
		logDir: filepath.Join(root, "log"),
		stgDir: filepath.Join(root, "state", "staging"),
		logger: logger,
		dirs:   map[string]bool{},
	}
	for _, d := range []string{root, filepath.Join(root, "state"), s.stgDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("couldn't create data directory: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.logDir, "tile", "entries"), 0o755); err != nil {
		return nil, fmt.Errorf("couldn't create data directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(root, "state", "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockDir(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s: %w", root, err)
	}
	s.lock = lock
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if s.stgSync, err = os.Open(s.stgDir); err != nil {
		return nil, err
	}
	journaled, err := s.replayJournal()
	if err != nil {
		return nil, err
	}
	if err := s.recoverEntries(); err != nil {
		return nil, err
	}
	if s.Size() < journaled {
		return nil, &storage.CorruptionError{
			Where: fmt.Sprintf("%s (entry %d)", s.stagePath("entries", s.Size()/c2sp.TileWidth), s.Size()),
			What:  fmt.Sprintf("the journal holds entries up to %d, durable only if every entry before them was", journaled),
		}
	}
	if err := s.openHistory(); err != nil {
		return nil, err
	}
	if err := s.openJournal(); err != nil {
		return nil, err
	}
	if s.interior, err = os.OpenFile(filepath.Join(root, "state", "interior"), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, err
	}
	ok = true
	s.spare = map[int64]*staged{}
	s.spareCond = sync.NewCond(&s.spareMu)
	s.taken, s.making = -1, -1
	s.partials = map[string]bool{}
	s.spareWant = make(chan int64, 1)
	s.spareDone = make(chan struct{})
	go s.prepare()
	s.findPartials()
	s.wantSpare(s.Size() / c2sp.TileWidth)
	return s, nil
}

func (s *FS) tilePath(level int, n int64) string {
	return filepath.Join(s.logDir, filepath.FromSlash(c2sp.Tile{Level: level, N: n, Width: c2sp.TileWidth}.Path()))
}

func (s *FS) stagePath(kind string, n int64) string {
	return filepath.Join(s.stgDir, fmt.Sprintf("%s-%012d", kind, n))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// recoverEntries finds the durable entries and leaves the staging area
// holding exactly the partial bundle after them.
func (s *FS) recoverEntries() error {
	// Sealed bundles are contiguous from 0: find how many with a galloping
	// binary search on their existence.
	sealed := func(n int64) bool { return exists(s.tilePath(c2sp.EntriesLevel, n)) }
	var lo, hi int64 = 0, 1
	for sealed(hi - 1) {
		lo, hi = hi, hi*2
	}
	for lo < hi { // first unsealed bundle is in [lo, hi)
		mid := lo + (hi-lo)/2
		if sealed(mid) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	n := lo
	if n > 0 && !exists(s.tilePath(0, n-1)) {
		// The entries were renamed into place but the hashes' rename did not
		// survive the crash: finish sealing.
		if err := os.Rename(s.stagePath("hashes", n-1), s.tilePath(0, n-1)); err != nil {
			return &storage.CorruptionError{Where: s.tilePath(0, n-1), What: "hash tile of a sealed bundle is missing"}
		}
	}

	names, err := os.ReadDir(s.stgDir)
	if err != nil {
		return err
	}
	var partial *staged
	for {
		ep, hp := s.stagePath("entries", n), s.stagePath("hashes", n)
		eb, err := os.ReadFile(ep)
		if errors.Is(err, fs.ErrNotExist) {
			break
		} else if err != nil {
			return err
		}
		hb, err := os.ReadFile(hp)
		if errors.Is(err, fs.ErrNotExist) {
			hb, err = os.ReadFile(s.tilePath(0, n)) // renamed first when sealing
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		entries, ebytes, err := checkStaged(n, ep, eb, hb)
		if err != nil {
			return err
		}
		if len(entries) == c2sp.TileWidth {
			if err := s.seal(n); err != nil {
				return err
			}
			n++
			continue
		}
		if int64(len(eb)) > ebytes || int64(len(hb)) > int64(len(entries))*tlog.HashSize {
			s.logger.Warn("dropping torn tail of unacknowledged entries",
				"bundle", n, "kept_entries", len(entries), "dropped_bytes", int64(len(eb))-ebytes)
		}
		partial = &staged{n: n, count: len(entries), entryLen: ebytes}
		if partial.entries, err = openTruncated(ep, ebytes); err != nil {
			return err
		}
		if partial.hashes, err = openTruncated(hp, int64(len(entries))*tlog.HashSize); err != nil {
			partial.entries.Close()
			return err
		}
		break
	}
	size := n * c2sp.TileWidth
	if partial != nil {
		size += int64(partial.count)
		if partial.count == 0 {
			// Nothing durable in it: remove both files by name, including
			// one that a kill between their creations left alone.
			s.closeStaged(partial)
			for _, kind := range []string{"entries", "hashes"} {
				if err := os.Remove(s.stagePath(kind, partial.n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			partial = nil
		}
	}
	s.cur = partial
	// Anything staged beyond the partial bundle is the torn tail of a commit
	// that spanned bundles and never completed.
	for _, de := range names {
		kind, num, ok := strings.Cut(de.Name(), "-")
		idx, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || (kind != "entries" && kind != "hashes") {
			continue
		}
		if idx > n || (idx == n && s.cur == nil) {
			// Empty ones were created ahead of need; others held a commit
			// that never completed.
			if info, err := de.Info(); err == nil && info.Size() > 0 {
				s.logger.Warn("dropping staged data of an unacknowledged commit", "file", de.Name())
			}
			if err := os.Remove(filepath.Join(s.stgDir, de.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	s.size.Store(size)
	s.written = size
	return s.stgSync.Sync()
}

// checkStaged validates a staging bundle against its staged leaf hashes and
// returns the intact entries and the bytes they span.
func checkStaged(n int64, path string, eb, hb []byte) ([][]byte, int64, error) {
	entries, _, _ := c2sp.ParseBundle(eb)
	if len(entries) > c2sp.TileWidth {
		return nil, 0, &storage.CorruptionError{Where: path, What: fmt.Sprintf("%d entries in one bundle", len(entries))}
	}
	m := min(len(entries), len(hb)/tlog.HashSize)
	hashAt := func(i int) tlog.Hash { return tlog.Hash(hb[i*tlog.HashSize : (i+1)*tlog.HashSize]) }
	for i := range m {
		if tlog.RecordHash(entries[i]) == hashAt(i) {
			continue
		}
		for j := i + 1; j < m; j++ {
			if tlog.RecordHash(entries[j]) == hashAt(j) {
				return nil, 0, &storage.CorruptionError{
					Where: fmt.Sprintf("%s (entry %d)", path, n*c2sp.TileWidth+int64(i)),
					What:  fmt.Sprintf("leaf hash %s, stored hash %s, and later entries are intact", tlog.RecordHash(entries[i]), hashAt(i)),
				}
			}
		}
		m = i
		break
	}
	entries = entries[:m]
	var span int64
	for _, e := range entries {
		span += 2 + int64(len(e))
	}
	return entries, span, nil
}

func openTruncated(path string, size int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(size, 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := durable.Datasync(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (s *FS) closeStaged(st *staged) {
	if st.entries != nil {
		st.entries.Close()
	}
	if st.hashes != nil {
		st.hashes.Close()
	}
}

// seal moves a full, synced bundle and its level-0 tile to their C2SP paths.
// The renames need not be durable: recovery finds either name.
func (s *FS) seal(n int64) error {
	tp, ep := s.tilePath(0, n), s.tilePath(c2sp.EntriesLevel, n)
	for _, p := range []string{tp, ep} {
		if err := s.mkdirFor(p); err != nil {
			return err
		}
	}
	if err := os.Rename(s.stagePath("hashes", n), tp); err != nil && !(errors.Is(err, fs.ErrNotExist) && exists(tp)) {
		return err
	}
	if err := os.Rename(s.stagePath("entries", n), ep); err != nil {
		return err
	}
	s.removePartials(tp, ep)
	return nil
}

// findPartials notes the partial tiles left by an earlier process at the
// edge of the tree, the only place they can be, so that they are removed
// when their tiles fill up (or now, if a crash kept that from happening).
func (s *FS) findPartials() {
	size := s.Size()
	levels := []int{c2sp.EntriesLevel}
	for l := 0; l == 0 || size>>(c2sp.TileHeight*l) > 0; l++ {
		levels = append(levels, l)
	}
	for _, l := range levels {
		shift := c2sp.TileHeight * max(l, 0)
		edge := (size >> shift) / c2sp.TileWidth
		for _, n := range []int64{edge - 1, edge} {
			if n < 0 || !exists(s.tilePath(l, n)+".p") {
				continue
			}
			s.partMu.Lock()
			s.partials[s.tilePath(l, n)] = true
			s.partMu.Unlock()
			if exists(s.tilePath(l, n)) {
				s.removePartials(s.tilePath(l, n))
			}
		}
	}
}

// removePartials removes the partial tiles of full tiles, if any were written.
func (s *FS) removePartials(full ...string) {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	for _, f := range full {
		if s.partials[f] {
			os.RemoveAll(f + ".p")
			delete(s.partials, f)
		}
	}
}

func (s *FS) mkdirFor(path string) error {
	dir := filepath.Dir(path)
	if s.dirs[dir] {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.dirs[dir] = true
	return nil
}

// Size implements storage.Backend.
func (s *FS) Size() int64 { return s.size.Load() }

var errClosed = errors.New("storage is closed")

// Write implements storage.Backend: it appends the batch to the staging
// files and leaves syncing them, writing its upper tiles and sealing full
// bundles to Sync.
func (s *FS) Write(ctx context.Context, b *storage.Batch) error {
	if s.closed.Load() {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.Start != s.written {
		return fmt.Errorf("batch starts at %d, log size is %d", b.Start, s.written)
	}
	if len(b.Entries) != len(b.Hashes) {
		return fmt.Errorf("batch has %d entries and %d hashes", len(b.Entries), len(b.Hashes))
	}
	for _, e := range b.Entries {
		if len(e) == 0 || len(e) > c2sp.MaxEntrySize {
			return fmt.Errorf("entry of %d bytes cannot be stored in a bundle", len(e))
		}
	}
	var (
		dirty   []*os.File
		full    []*staged
		created bool
		off     int64 // the first entry's byte offset in its bundle
	)
	s.buf = s.buf[:0] // the batch's entries in bundle format, for the journal
	for i := 0; i < len(b.Entries); {
		if s.cur == nil {
			n := (b.Start + int64(i)) / c2sp.TileWidth
			st, made, err := s.takeStaged(n)
			if err != nil {
				return err
			}
			s.cur, created = st, created || made
		}
		st := s.cur
		k := min(c2sp.TileWidth-st.count, len(b.Entries)-i)
		if i == 0 {
			off = st.entryLen
		}
		from := len(s.buf)
		for _, e := range b.Entries[i : i+k] {
			s.buf = c2sp.AppendEntry(s.buf, e)
		}
		if _, err := st.entries.Write(s.buf[from:]); err != nil {
			return err
		}
		st.entryLen += int64(len(s.buf) - from)
		if _, err := st.hashes.Write(hashBytes(b.Hashes[i : i+k])); err != nil {
			return err
		}
		st.count += k
		dirty = append(dirty, st.entries, st.hashes)
		if st.count == c2sp.TileWidth {
			full = append(full, st)
			s.cur = nil
		}
		i += k
	}
	// A commit that creates no staging file (whose name would need a sync
	// of the directory) and completes no upper tile can be made durable by
	// the journal alone.
	journaled := false
	if !created && len(b.Tiles) == 0 {
		var err error
		if journaled, err = s.journal.record(b.Start, off, len(b.Entries), s.buf); err != nil {
			return fmt.Errorf("couldn't write journal: %w", err)
		}
	}
	s.written += int64(len(b.Entries))
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	s.pend.all = s.pend.all || !journaled
	s.pend.seq = s.journal.seq
	for _, f := range dirty {
		if !slices.Contains(s.pend.files, f) {
			s.pend.files = append(s.pend.files, f)
		}
	}
	if created && !slices.Contains(s.pend.files, s.stgSync) {
		s.pend.files = append(s.pend.files, s.stgSync)
	}
	s.pend.full = append(s.pend.full, full...)
	s.pend.tiles = append(s.pend.tiles, b.Tiles...)
	s.pend.size = s.written
	return nil
}

// Sync implements storage.Backend.
func (s *FS) Sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	s.pendMu.Lock()
	p := s.pend
	s.pend = pending{size: p.size, seq: p.seq}
	s.pendMu.Unlock()
	if err := s.syncPending(p); err != nil {
		return err
	}
	// Upper tiles only once the entries under them are durable: a tile
	// must never cover entries that a crash could still take away.
	for _, t := range p.tiles {
		path := s.tilePath(t.Level, t.N)
		if err := writeFileDurable(path, hashBytes(t.Hashes), 0o644); err != nil {
			return fmt.Errorf("couldn't write tile: %w", err)
		}
		s.removePartials(path)
	}
	if p.size > s.size.Load() {
		s.size.Store(p.size)
	}
	return nil
}

// syncPending makes p's writes durable: with the journal alone if it holds
// them all, else by syncing the staging files written since the last such
// sync (flushLocked). A full bundle is sealed only once its staging files
// are synced: a sealed bundle is never read back from the journal.
func (s *FS) syncPending(p pending) error {
	if s.failed != nil {
		return s.failed
	}
	for _, f := range p.files {
		if !slices.Contains(s.unsynced, f) {
			s.unsynced = append(s.unsynced, f)
		}
	}
	s.unsealed = append(s.unsealed, p.full...)
	if p.all {
		return s.flushLocked(p.seq)
	}
	if p.seq != s.syncedSeq { // records written since the last Sync
		if err := durable.Datasync(s.journal.f); err != nil {
			return fmt.Errorf("couldn't sync journal: %w", err)
		}
	}
	s.syncedSeq = p.seq
	return nil
}

// flushLocked syncs the staging files that only the journal made durable,
// seals the full bundles among them, and lets the journal start again from
// its beginning: every record up to seq is now redundant. s.syncMu is held.
func (s *FS) flushLocked(seq uint64) error {
	if s.failed != nil {
		return s.failed
	}
	if err := syncMany(s.unsynced); err != nil {
		s.failed = fmt.Errorf("couldn't sync entries: %w", err)
		return s.failed
	}
	s.unsynced = s.unsynced[:0]
	s.syncedSeq = seq
	s.journal.covered.Store(seq)
	for len(s.unsealed) > 0 {
		st := s.unsealed[0]
		s.closeStaged(st)
		if err := s.seal(st.n); err != nil {
			return fmt.Errorf("couldn't seal bundle %d: %w", st.n, err)
		}
		s.unsealed = s.unsealed[1:]
	}
	return nil
}

// wantSpare asks the preparer to have the staging files of the bundles after
// n ready.
func (s *FS) wantSpare(n int64) {
	select {
	case <-s.spareWant:
	default:
	}
	s.spareWant <- n
}

// prepare creates staging files ahead of Write, syncing the directory so
// that their names are durable before Write writes to them.
func (s *FS) prepare() {
	defer close(s.spareDone)
	for n := range s.spareWant {
		var made []*staged
		for i := n + 1; i <= n+spareAhead; i++ {
			s.spareMu.Lock()
			skip := s.spare[i] != nil || i <= s.taken
			if !skip {
				s.making = i
			}
			s.spareMu.Unlock()
			if skip {
				continue
			}
			st, err := s.create(i)
			if err != nil {
				break // Write will create it itself and report the error
			}
			made = append(made, st)
		}
		err := s.stgSync.Sync()
		s.spareMu.Lock()
		for _, st := range made {
			if err == nil {
				s.spare[st.n] = st
			} else {
				s.closeStaged(st)
				os.Remove(st.entries.Name())
				os.Remove(st.hashes.Name())
			}
		}
		s.making = -1
		s.spareCond.Broadcast()
		s.spareMu.Unlock()
	}
}

// takeStaged returns the staging files of bundle n, and whether they were
// created just now (so the directory needs a sync).
func (s *FS) takeStaged(n int64) (*staged, bool, error) {
	s.spareMu.Lock()
	for s.making >= n && s.spare[n] == nil {
		s.spareCond.Wait() // the preparer is creating it, or one before it
	}
	st := s.spare[n]
	delete(s.spare, n)
	s.taken = n
	s.spareMu.Unlock()
	s.wantSpare(n)
	if st != nil {
		return st, false, nil
	}
	st, err := s.create(n)
	return st, true, err
}

func (s *FS) create(n int64) (*staged, error) {
	st := &staged{n: n}
	var err error
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL | os.O_APPEND
	if st.entries, err = os.OpenFile(s.stagePath("entries", n), flags, 0o644); err != nil {
		return nil, err
	}
	if st.hashes, err = os.OpenFile(s.stagePath("hashes", n), flags, 0o644); err != nil {
		st.entries.Close()
		return nil, err
	}
	return st, nil
}

func hashBytes(h []tlog.Hash) []byte {
	if len(h) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), len(h)*tlog.HashSize)
}

// readBundle returns the stored bytes of bundle n, sealed or staged.
func (s *FS) readBundle(n int64) ([]byte, error) {
	b, _, err := sealedOrStaged(s.tilePath(c2sp.EntriesLevel, n), s.stagePath("entries", n), os.ReadFile)
	return b, err
}

// sealedOrStaged reads a bundle or level-0 tile with read: from its sealed
// file, else from its staging file, else from the sealed file again (it
// was sealed between the two reads). It returns the path it read.
func sealedOrStaged[T any](sealed, staged string, read func(path string) (T, error)) (T, string, error) {
	v, err := read(sealed)
	if !errors.Is(err, fs.ErrNotExist) {
		return v, sealed, err
	}
	if v, err = read(staged); !errors.Is(err, fs.ErrNotExist) {
		return v, staged, err
	}
	v, err = read(sealed)
	return v, sealed, err
}

// ReadEntries implements storage.Backend.
func (s *FS) ReadEntries(ctx context.Context, start, end int64) ([][]byte, error) {
	if start < 0 || end < start || end > s.Size() {
		return nil, fmt.Errorf("entries [%d, %d): %w", start, end, storage.ErrNotFound)
	}
	out := make([][]byte, 0, end-start)
	for n := start / c2sp.TileWidth; n*c2sp.TileWidth < end; n++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := s.readBundle(n)
		if err != nil {
			return nil, fmt.Errorf("couldn't read bundle %d: %w", n, err)
		}
		entries, _, _ := c2sp.ParseBundle(b)
		lo := max(start-n*c2sp.TileWidth, 0)
		hi := min(end-n*c2sp.TileWidth, c2sp.TileWidth)
		if int64(len(entries)) < hi {
			return nil, &storage.CorruptionError{
				Where: c2sp.Tile{Level: c2sp.EntriesLevel, N: n, Width: c2sp.TileWidth}.Path(),
				What:  fmt.Sprintf("holds %d entries, want at least %d", len(entries), hi),
			}
		}
		out = append(out, entries[lo:hi]...)
	}
	return out, nil
}

// ReadEntryAt implements storage.EntryAtReader.
func (s *FS) ReadEntryAt(ctx context.Context, index, off int64, n int) ([]byte, error) {
	if index < 0 || index >= s.Size() || off < 0 || n < 0 || n > math.MaxUint16 {
		return nil, fmt.Errorf("entry %d at %d+%d: %w", index, off, n, storage.ErrNotFound)
	}
	bundle := index / c2sp.TileWidth
	b := make([]byte, n)
	got, _, err := sealedOrStaged(s.tilePath(c2sp.EntriesLevel, bundle), s.stagePath("entries", bundle),
		func(path string) (int, error) { return readAt(path, b, off) })
	switch {
	case err != nil:
		return nil, fmt.Errorf("couldn't read bundle %d: %w", bundle, err)
	case got < n:
		return nil, fmt.Errorf("entry %d at %d+%d: beyond bundle %d: %w", index, off, n, bundle, storage.ErrNotFound)
	}
	return b, nil
}

// readAt reads up to len(b) bytes at off of the file at path, with three
// system calls: open, pread, close. os.Open and os.ReadFile add the
// poller's registration, a stat and a second read, and a page of search
// results reads a hundred tiles and entries this way.
func readAt(path string, b []byte, off int64) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(b) {
		m, err := syscall.Pread(fd, b[n:], off+int64(n))
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return n, &fs.PathError{Op: "read", Path: path, Err: err}
		case m == 0:
			return n, nil
		}
		n += m
	}
	return n, nil
}

const interiorBytes = storage.InteriorWidth * tlog.HashSize

// WriteInterior implements storage.InteriorStore.
func (s *FS) WriteInterior(n int64, hs []tlog.Hash) error {
	if len(hs) != storage.InteriorWidth || n < 0 {
		return fmt.Errorf("interior of tile %d: %d hashes, want %d", n, len(hs), storage.InteriorWidth)
	}
	_, err := s.interior.WriteAt(hashBytes(hs), n*interiorBytes)
	return err
}

// ReadInterior implements storage.InteriorStore. A record never written
// reads as zeros (a hole, or past the end of the file): not found.
func (s *FS) ReadInterior(n int64) ([]tlog.Hash, error) {
	hs := make([]tlog.Hash, storage.InteriorWidth)
	b := hashBytes(hs)
	got, err := s.interior.ReadAt(b, n*interiorBytes)
	if got < len(b) && (err == nil || errors.Is(err, io.EOF)) || hs[0] == (tlog.Hash{}) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return hs, nil
}

// ReadTile implements storage.Backend.
func (s *FS) ReadTile(ctx context.Context, level int, n int64) ([]tlog.Hash, error) {
	// One byte more than a tile, to see a file that is too long.
	var buf [c2sp.TileWidth*tlog.HashSize + 1]byte
	read := func(path string) ([]byte, error) {
		got, err := readAt(path, buf[:], 0)
		return buf[:got], err
	}
	var b []byte
	var err error
	if level == 0 {
		var from string
		staged := s.stagePath("hashes", n)
		if b, from, err = sealedOrStaged(s.tilePath(level, n), staged, read); from == staged {
			b = b[:len(b)/tlog.HashSize*tlog.HashSize] // a write may be in flight
		}
	} else {
		b, err = read(s.tilePath(level, n))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("tile %d/%d: %w", level, n, storage.ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	if len(b)%tlog.HashSize != 0 || len(b) > c2sp.TileWidth*tlog.HashSize {
		return nil, &storage.CorruptionError{Where: s.tilePath(level, n), What: fmt.Sprintf("%d bytes is not a tile", len(b))}
	}
	h := make([]tlog.Hash, len(b)/tlog.HashSize)
	copy(hashBytes(h), b)
	return h, nil
}

func (s *FS) blobPath(sum [32]byte) string {
	return filepath.Join(s.logDir, "large", hex.EncodeToString(sum[:]))
}

// PutBlob implements storage.Backend.
func (s *FS) PutBlob(ctx context.Context, sum [32]byte, body []byte) error {
	p := s.blobPath(sum)
	if exists(p) {
		return nil
	}
	return writeFileDurable(p, body, 0o644)
}

// ReadBlob implements storage.Backend.
func (s *FS) ReadBlob(ctx context.Context, sum [32]byte) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(sum))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("large entry body %x: %w", sum, storage.ErrNotFound)
	}
	return b, err
}

func (s *FS) historyPath() string { return filepath.Join(s.root, "state", "checkpoints") }

func (s *FS) openHistory() error {
	b, err := os.ReadFile(s.historyPath())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	bodies, n, err := parseRecords(b)
	if err != nil {
		// Only the last record can be torn; anything after a bad record
		// that parses again is damage.
		if rest, _, _ := parseRecords(b[n+1:]); err == errCorruptRecord && len(rest) > 0 {
			return &storage.CorruptionError{Where: s.historyPath(), What: fmt.Sprintf("checkpoint record at byte %d fails its checksum", n)}
		}
		s.logger.Warn("dropping torn checkpoint record", "file", s.historyPath(), "offset", n)
	}
	f, err := openTruncated(s.historyPath(), int64(n))
	if err != nil {
		return err
	}
	s.hist = f
	if len(bodies) == 0 {
		return nil
	}
	// The published checkpoint is written after the history: bring it up to
	// date if a crash came in between.
	last := bodies[len(bodies)-1]
	cur, err := os.ReadFile(filepath.Join(s.logDir, "checkpoint"))
	if err != nil || string(cur) != string(last) {
		if err == nil && !slices.ContainsFunc(bodies, func(b []byte) bool { return string(b) == string(cur) }) {
			return &storage.CorruptionError{Where: filepath.Join(s.logDir, "checkpoint"), What: "is not a checkpoint this log signed"}
		}
		s.logger.Warn("log/checkpoint is not the newest checkpoint in the history; publishing the newest",
			"found", len(cur), "err", err)
		return writeFileDurable(filepath.Join(s.logDir, "checkpoint"), last, 0o644)
	}
	return nil
}

// AddCheckpoint implements storage.Backend.
func (s *FS) AddCheckpoint(ctx context.Context, c *storage.Checkpoint) error {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	if s.closed.Load() {
		return errClosed
	}
	// Every bundle the checkpoint covers whole must be sealed, at its C2SP
	// path, before a reader can see the checkpoint. This also bounds how
	// long entries stay durable in the journal alone to the checkpoint
	// interval.
	s.syncMu.Lock()
	err := s.flushLocked(s.syncedSeq)
	s.syncMu.Unlock()
	if err != nil {
		return err
	}
	// Partial tiles first, so that a reader who sees the checkpoint finds them.
	for _, t := range c.Partials {
		full := s.tilePath(t.Level, t.N)
		p := filepath.Join(s.logDir, filepath.FromSlash(c2sp.Tile{Level: t.Level, N: t.N, Width: len(t.Hashes)}.Path()))
		if err := s.writePartial(p, full, hashBytes(t.Hashes)); err != nil {
			return err
		}
	}
	if w := c.Size % c2sp.TileWidth; w > 0 {
		n := c.Size / c2sp.TileWidth
		b, err := s.readBundle(n)
		if err != nil {
			return err
		}
		entries, _, _ := c2sp.ParseBundle(b)
		if int64(len(entries)) < w {
			return fmt.Errorf("bundle %d holds %d entries, checkpoint needs %d", n, len(entries), w)
		}
		var span int
		for _, e := range entries[:w] {
			span += 2 + len(e)
		}
		p := filepath.Join(s.logDir, filepath.FromSlash(c2sp.Tile{Level: c2sp.EntriesLevel, N: n, Width: int(w)}.Path()))
		if err := s.writePartial(p, s.tilePath(c2sp.EntriesLevel, n), b[:span]); err != nil {
			return err
		}
	}
	if _, err := s.hist.Write(appendRecord(nil, c.Note)); err != nil {
		return fmt.Errorf("couldn't record checkpoint: %w", err)
	}
	if err := durable.Datasync(s.hist); err != nil {
		return fmt.Errorf("couldn't record checkpoint: %w", err)
	}
	return writeFileDurable(filepath.Join(s.logDir, "checkpoint"), c.Note, 0o644)
}

// writePartial writes a partial tile unless it exists, and removes it again
// if the full tile appeared meanwhile (Sync removes partials after sealing,
// so one of the two always does).
func (s *FS) writePartial(path, full string, data []byte) error {
	if exists(path) {
		return nil
	}
	s.partMu.Lock()
	s.partials[full] = true
	s.partMu.Unlock()
	if err := writeFileDurable(path, data, 0o644); err != nil {
		return fmt.Errorf("couldn't write partial tile: %w", err)
	}
	if exists(full) {
		s.removePartials(full)
	}
	return nil
}

// Checkpoints implements storage.Backend.
func (s *FS) Checkpoints(ctx context.Context) ([][]byte, error) {
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	b, err := os.ReadFile(s.historyPath())
	if err != nil {
		return nil, err
	}
	bodies, _, err := parseRecords(b)
	if err != nil {
		return nil, &storage.CorruptionError{Where: s.historyPath(), What: err.Error()}
	}
	return bodies, nil
}

// Close implements storage.Backend.
func (s *FS) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.spareWant != nil {
		close(s.spareWant)
		<-s.spareDone
		for _, st := range s.spare {
			s.closeStaged(st)
		}
	}
	// What only the journal made durable goes to the staging files too,
	// so that a copy of a closed log needs no replay.
	s.syncMu.Lock()
	var err error
	if s.journal != nil {
		err = s.flushLocked(s.syncedSeq)
	}
	if err == nil && s.journal != nil {
		// Nothing depends on the journal now: void its records, and give
		// back their space.
		err = writeJournalHeader(s.journal.f, s.journal.epoch+1)
		if err == nil {
			err = s.journal.f.Truncate(journalHeader)
		}
	}
	s.syncMu.Unlock()
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	if s.cur != nil {
		s.closeStaged(s.cur)
	}
	if s.journal != nil {
		s.journal.f.Close()
	}
	for _, f := range []*os.File{s.hist, s.stgSync, s.interior, s.lock} {
		if f != nil {
			f.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("couldn't close the log durably: %w", err)
	}
	return nil
}
