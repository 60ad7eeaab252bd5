// Package index is trail's search index: an inverted index derived from
// the log, which it follows. It holds, per entry, the fields the search
// filters compare and the entry's words for free text, never the entry
// itself: results are read from the log and proven against a signed
// checkpoint (see http.go), and clients check each result against their
// query (client.Search). The index is not trusted; an altered posting
// yields a result that fails on the client.
//
// The index lives in <data>/index: segment files, each indexing a
// contiguous range of entries (see segment.go for the format), and a
// manifest (FileName) that names them and says how far the index goes. It
// is derived data: deleting the directory, with the server stopped, is
// always safe; the next start rebuilds it from the log.
//
// A follower goroutine reads new entries from the log, polling its size
// (the append path does no work for it), decodes them on every core and
// indexes each batch into a segment in memory, searchable at once. What is
// in memory is written to a segment file every defaultFlushEntries entries
// or after a quiet second, and the manifest replaced (synced, renamed):
// after a crash the index resumes from the last manifest. Adjacent segment
// files are merged in the background, so that there are few. An index that
// does not fit its log (another log's, one ahead of the log, another
// format version, a damaged file, or a missing manifest) is discarded and
// rebuilt.
package index

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trailaudit/trail/internal/durable"
)

// DirName is the index's directory in the data directory; FileName its
// manifest in that directory (the name of the SQLite database the index
// used to be, so that an old index is found, and replaced).
const (
	DirName  = "index"
	FileName = "search.db"
)

// formatVersion changes whenever the format or what is indexed changes: an
// index of another version is rebuilt.
const formatVersion = "4"

// Defaults of Options.
const (
	DefaultPoll  = 50 * time.Millisecond
	DefaultBatch = 8192
)

// Source is the log the index follows. *ledger.Log is one.
type Source interface {
	// Origin names the log.
	Origin() string
	// Size returns the number of durable entries.
	Size() int64
	// ReadEntries returns the leaves of entries [start, end) as stored.
	ReadEntries(ctx context.Context, start, end int64) ([][]byte, error)
	// Body returns the entry a leaf stands for (a large entry's body).
	Body(ctx context.Context, leaf []byte) ([]byte, error)
}

// Options configure Open.
type Options struct {
	// Dir is the index's directory, <data>/index. Required; created 0700.
	Dir string
	// Source is the log. Required.
	Source Source
	// Logger receives warnings and errors. Default: discard.
	Logger *slog.Logger
	// Poll is how often the follower looks for new entries. Default
	// DefaultPoll.
	Poll time.Duration
	// Batch bounds the entries indexed into one segment in memory (at
	// most 2,048 are, each batch by one core). Default DefaultBatch.
	Batch int
}

// Index is an open search index. Its methods are safe for concurrent use.
type Index struct {
	opts Options
	log  *slog.Logger
	dir  string
	path string

	writeMu sync.Mutex // one indexer at a time: the follower or CatchUp
	next    atomic.Int64

	viewMu     sync.RWMutex
	view       *view
	manifestMu sync.Mutex // changes of the segment files and the manifest
	flushMu    sync.Mutex // one flush at a time
	flushedMu  sync.Mutex
	flushed    chan struct{} // closed and replaced at each flush
	lastAdd    atomic.Int64  // Unix nanoseconds of the last batch indexed
	flushKick  chan struct{}
	mergeKick  chan struct{}
	bg         sync.WaitGroup // the flusher and the merger
	bgCancel   context.CancelFunc

	stopOnce  sync.Once
	stop      chan struct{}
	done      chan struct{}
	started   atomic.Bool
	wake      chan struct{}
	closeOnce sync.Once
	closeErr  error

	progressMu sync.Mutex
	progress   chan struct{} // closed and replaced at each batch indexed

	// Tuning; tests shrink them.
	flushEntries int
	maxMemory    int // entries in memory beyond which indexing waits for a flush
	quiet        time.Duration
	mergeFactor  int
	maxSegment   int
	noMerge      atomic.Bool

	// beforeManifest, if set, runs before each write of the manifest with
	// how far it would say the index goes; an error aborts the write, as a
	// crash would (tests inject crashes with it). beforeMergeManifest is
	// the same for merges only.
	beforeManifest      func(next int64) error
	beforeMergeManifest func() error
}

// testTune, if set, adjusts an index's tuning and hooks as Open makes it,
// before its goroutines start.
var testTune func(*Index)

// view is the segments a search reads: immutable, replaced whole.
type view struct {
	segs []*segment // by base: the segment files, then those in memory
	disk int        // segs[:disk] are files
	next int64      // entries [0, next) are indexed
}

// durable returns how far the segment files go.
func (v *view) durable() int64 {
	if v.disk == 0 {
		return 0
	}
	return v.segs[v.disk-1].end()
}

// manifest is the JSON of FileName.
type manifest struct {
	Version  string         `json:"version"`
	Origin   string         `json:"origin"`
	Next     int64          `json:"next"`
	Segments []manifestFile `json:"segments"`
}

type manifestFile struct {
	Name  string `json:"name"`
	Base  int64  `json:"base"`
	Count int64  `json:"count"`
	Size  int64  `json:"size"`
}

// Open opens the index in opts.Dir, creating it, or discarding and
// recreating it when it does not fit opts.Source. It checks every segment
// file's checksum. It does not index anything: call CatchUp, or Start to
// follow the log.
func Open(ctx context.Context, opts Options) (*Index, error) {
	if opts.Dir == "" || opts.Source == nil {
		return nil, errors.New("index: Dir and Source are required")
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	ix := &Index{opts: opts, log: opts.Logger, dir: opts.Dir, path: filepath.Join(opts.Dir, FileName),
		stop: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1), progress: make(chan struct{}),
		flushed: make(chan struct{}), flushKick: make(chan struct{}, 1), mergeKick: make(chan struct{}, 1),
		flushEntries: defaultFlushEntries, quiet: defaultQuiet, mergeFactor: defaultMergeFactor, maxSegment: defaultMaxSegment}
	if testTune != nil {
		testTune(ix)
	}
	ix.maxMemory = 4 * ix.flushEntries
	if ix.log == nil {
		ix.log = slog.New(slog.DiscardHandler)
	}
	// It holds what the events say: as private as the log's state.
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("couldn't create the index directory: %w", err)
	}
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("couldn't make the index directory private: %w", err)
	}
	segs, reason, err := ix.load()
	if err != nil {
		return nil, err
	}
	if reason != "" {
		ix.log.Warn("rebuilding the search index from the log", "reason", reason, "path", ix.dir)
		if err := ix.clear(true, nil); err != nil {
			return nil, err
		}
		segs = nil
	}
	if reason != "" || !exists(ix.path) {
		if err := ix.writeManifest(nil); err != nil {
			return nil, fmt.Errorf("couldn't create the search index in %s: %w", ix.dir, err)
		}
	}
	if err := ix.clear(false, segs); err != nil { // leftovers of a crash
		for _, s := range segs {
			s.release()
		}
		return nil, err
	}
	ix.view = &view{segs: segs, disk: len(segs)}
	ix.view.next = ix.view.durable()
	ix.next.Store(ix.view.next)
	bgCtx, cancel := context.WithCancel(context.Background())
	ix.bgCancel = cancel
	ix.bg.Add(2)
	go ix.flusher(bgCtx)
	go ix.merger(bgCtx)
	ix.mergeKick <- struct{}{}
	return ix, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// load opens the segment files the manifest names, checking that they fit
// the source. It returns why the index must be rebuilt, or "".
func (ix *Index) load() ([]*segment, string, error) {
	b, err := os.ReadFile(ix.path)
	if errors.Is(err, fs.ErrNotExist) {
		names, err := ix.files()
		if err != nil {
			return nil, "", err
		}
		for _, n := range names {
			if strings.HasSuffix(n, ".seg") {
				return nil, fmt.Sprintf("its manifest %s is missing", FileName), nil
			}
		}
		return nil, "", nil
	}
	if err != nil {
		return nil, fmt.Sprintf("its manifest is unreadable: %v", err), nil
	}
	if bytes.HasPrefix(b, []byte("SQLite format 3\x00")) {
		return nil, "it is an index of an earlier version (SQLite)", nil
	}
	var m manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Sprintf("its manifest is damaged: %v", err), nil
	}
	src := ix.opts.Source
	switch {
	case m.Version != formatVersion:
		return nil, fmt.Sprintf("format version %q, want %q", m.Version, formatVersion), nil
	case m.Origin != src.Origin():
		return nil, fmt.Sprintf("it indexes log %q, not %q", m.Origin, src.Origin()), nil
	case m.Next < 0:
		return nil, "its manifest is damaged: negative progress", nil
	case m.Next > src.Size():
		return nil, fmt.Sprintf("it indexes %d entries, the log holds %d", m.Next, src.Size()), nil
	}
	var segs []*segment
	fail := func(reason string) ([]*segment, string, error) {
		for _, s := range segs {
			s.release()
		}
		return nil, reason, nil
	}
	at := int64(0)
	for _, f := range m.Segments {
		if f.Base != at || f.Count <= 0 || f.Name != segName(f.Base, f.Base+f.Count) {
			return fail(fmt.Sprintf("its manifest is damaged: segment %q of entries [%d, %d) after %d", f.Name, f.Base, f.Base+f.Count, at))
		}
		s, err := openSegmentFile(filepath.Join(ix.dir, f.Name), true)
		if err != nil {
			return fail(fmt.Sprintf("segment %s: %v", f.Name, err))
		}
		segs = append(segs, s)
		if s.base != f.Base || int64(s.n) != f.Count || int64(len(s.data)) != f.Size {
			return fail(fmt.Sprintf("segment %s holds entries [%d, %d) in %d bytes, not what the manifest says", f.Name, s.base, s.end(), len(s.data)))
		}
		at += f.Count
	}
	if at != m.Next {
		return fail(fmt.Sprintf("its manifest is damaged: segments up to %d, progress %d", at, m.Next))
	}
	return segs, "", nil
}

// files returns the names in the index directory.
func (ix *Index) files() ([]string, error) {
	ents, err := os.ReadDir(ix.dir)
	if err != nil {
		return nil, fmt.Errorf("couldn't read the index directory: %w", err)
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

// clear removes the index's files: with all, every one; otherwise those
// other than the manifest and keep: segments no manifest names (a crash
// during a flush or a merge), temporary files, an old SQLite index's.
func (ix *Index) clear(all bool, keep []*segment) error {
	names, err := ix.files()
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, s := range keep {
		kept[s.name] = true
	}
	for _, n := range names {
		own := strings.HasSuffix(n, ".seg") || strings.HasPrefix(n, ".tmp-") || strings.HasPrefix(n, FileName)
		if !own || kept[n] || n == FileName && !all {
			continue
		}
		if err := removeIfExists(filepath.Join(ix.dir, n)); err != nil {
			return fmt.Errorf("couldn't remove the old search index: %w", err)
		}
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeManifest records the segment files disk, which cover the entries
// [0, next), as the index: durably, replacing the manifest.
func (ix *Index) writeManifest(disk []*segment) error {
	m := manifest{Version: formatVersion, Origin: ix.opts.Source.Origin(), Segments: []manifestFile{}}
	for _, s := range disk {
		m.Segments = append(m.Segments, manifestFile{Name: s.name, Base: s.base, Count: int64(s.n), Size: int64(len(s.data))})
		m.Next = s.end()
	}
	if ix.beforeManifest != nil {
		if err := ix.beforeManifest(m.Next); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(m, "", "\t")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(ix.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("couldn't write the search index's manifest: %w", err)
	}
	return nil
}

// openSegmentFile maps a segment file; with verify it checks its checksum.
func openSegmentFile(path string, verify bool) (*segment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < headerSize+footerSize || fi.Size() > 1<<40 {
		return nil, corrupt("%d bytes", fi.Size())
	}
	data, unmap, err := mapFile(f, int(fi.Size()))
	if err != nil {
		return nil, fmt.Errorf("couldn't map %s: %w", path, err)
	}
	s, err := parseSegment(data, verify)
	if err != nil {
		unmap()
		return nil, err
	}
	s.name, s.path, s.unmap = filepath.Base(path), path, unmap
	s.refs.Store(1)
	return s, nil
}

// acquire returns the current view, its segment files held until
// releaseView.
func (ix *Index) acquire() *view {
	ix.viewMu.RLock()
	defer ix.viewMu.RUnlock()
	v := ix.view
	for _, s := range v.segs[:v.disk] {
		s.acquire()
	}
	return v
}

func (ix *Index) releaseView(v *view) {
	for _, s := range v.segs[:v.disk] {
		s.release()
	}
}

// Next returns the number of entries indexed: entries [0, Next()) are
// searchable. Those past the last flush are in memory: a crash loses them,
// and the index indexes them again.
func (ix *Index) Next() int64 { return ix.next.Load() }

// Path returns the index's manifest.
func (ix *Index) Path() string { return ix.path }

// Locate returns where entry idx lies in its C2SP entry bundle (bundle
// idx/256): the offset of its data (after its 2-byte length) and its
// length. ok is false if the index does not hold it.
func (ix *Index) Locate(idx int64) (off int64, n int, ok bool) {
	v := ix.acquire()
	defer ix.releaseView(v)
	if idx < 0 || idx >= v.next {
		return 0, 0, false
	}
	k := sort.Search(len(v.segs), func(k int) bool { return v.segs[k].end() > idx })
	if k == len(v.segs) || v.segs[k].base > idx {
		return 0, 0, false
	}
	off, n = v.segs[k].locate(int(idx - v.segs[k].base))
	return off, n, n > 0
}

// buildChunk is the most entries one core indexes into one segment in
// memory: the terms of a few thousand entries stay in the core's cache
// (8,192 took 15% more CPU time).
const buildChunk = 2048

// errClosed is returned by CatchUp once the index is closed.
var errClosed = errors.New("index: closed")

// CatchUp indexes every entry of the source not yet indexed, up to its size
// when called, calling progress (if not nil) after each batch, and writes
// them to disk: when it returns nil, they are durable.
func (ix *Index) CatchUp(ctx context.Context, progress func(done, total int64)) error {
	if err := ix.catchUp(ctx, progress, false); err != nil {
		return err
	}
	return ix.flush(ctx)
}

// catchUp indexes the entries not yet indexed into segments in memory,
// decoding batches on every core at once and publishing them in order; with
// follow, it goes on with what the log gained meanwhile.
func (ix *Index) catchUp(ctx context.Context, progress func(done, total int64), follow bool) error {
	ix.writeMu.Lock()
	defer ix.writeMu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	total := ix.opts.Source.Size()
	workers := max(1, runtime.GOMAXPROCS(0))
	batch := int64(min(ix.opts.Batch, buildChunk))
	type job struct {
		start, end int64
		seg        *segment
		err        error
		done       chan struct{}
	}
	sem := make(chan struct{}, workers)
	var queue []*job
	defer func() {
		cancel()
		for _, j := range queue {
			<-j.done
		}
	}()
	issued := ix.next.Load()
	for {
		// Close flushes and drops the view under writeMu: once it is
		// closing, nothing more is indexed (into a closed index).
		select {
		case <-ix.stop:
			return errClosed
		default:
		}
		if follow && issued == total {
			total = ix.opts.Source.Size()
		}
		for len(queue) < 2*workers && issued < total {
			if len(queue) > 0 && ix.memory() > int64(ix.maxMemory) {
				break
			}
			end := min(issued+batch, total)
			if e := end - end%bundleSize; e > issued {
				end = e // the next batch starts a bundle: no bundle is read twice
			}
			j := &job{start: issued, end: end, done: make(chan struct{})}
			issued = j.end
			queue = append(queue, j)
			go func() {
				defer close(j.done)
				sem <- struct{}{}
				defer func() { <-sem }()
				j.seg, j.err = ix.build(ctx, j.start, j.end)
			}()
		}
		if len(queue) == 0 {
			return nil
		}
		j := queue[0]
		<-j.done
		queue = queue[1:]
		if j.err != nil {
			return j.err
		}
		if err := ix.waitMemory(ctx); err != nil {
			return err
		}
		ix.publish(j.seg)
		if progress != nil {
			progress(j.end, total)
		}
	}
}

// memory returns how many entries are indexed in memory only.
func (ix *Index) memory() int64 {
	ix.viewMu.RLock()
	defer ix.viewMu.RUnlock()
	return ix.view.next - ix.view.durable()
}

// waitMemory waits while more than maxMemory entries wait for a flush.
func (ix *Index) waitMemory(ctx context.Context) error {
	for {
		ix.flushedMu.Lock()
		ch := ix.flushed
		ix.flushedMu.Unlock()
		if ix.memory() <= int64(ix.maxMemory) {
			return nil
		}
		select {
		case ix.flushKick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-ix.stop:
			return errClosed
		}
	}
}

// publish makes a segment in memory searchable.
func (ix *Index) publish(s *segment) {
	ix.viewMu.Lock()
	cur := ix.view
	segs := make([]*segment, len(cur.segs), len(cur.segs)+1)
	copy(segs, cur.segs)
	nv := &view{segs: append(segs, s), disk: cur.disk, next: s.end()}
	ix.view = nv
	ix.viewMu.Unlock()
	ix.next.Store(s.end())
	ix.lastAdd.Store(time.Now().UnixNano())
	if nv.next-nv.durable() >= int64(ix.flushEntries) {
		select {
		case ix.flushKick <- struct{}{}:
		default:
		}
	}
	ix.progressMu.Lock()
	close(ix.progress)
	ix.progress = make(chan struct{})
	ix.progressMu.Unlock()
}

// Start starts the follower: a goroutine that indexes new entries as the
// log grows, until Close. Errors are logged and retried.
func (ix *Index) Start() {
	if !ix.started.CompareAndSwap(false, true) {
		return
	}
	go ix.follow()
}

func (ix *Index) follow() {
	defer close(ix.done)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-ix.stop
		cancel()
	}()
	wait := ix.opts.Poll
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ix.stop:
			return
		case <-t.C:
		case <-ix.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		before := ix.Next()
		err := ix.catchUp(ctx, nil, true)
		switch {
		case err == nil && ix.Next() > before:
			wait = 0 // the log may have grown meanwhile
		case err == nil:
			wait = ix.opts.Poll
		case ctx.Err() != nil || errors.Is(err, errClosed):
			return
		default:
			ix.log.Error("couldn't index entries; retrying", "from", ix.Next(), "err", err)
			wait = min(max(wait*2, time.Second), time.Minute)
		}
		t.Reset(wait)
	}
}

// WaitFor wakes the follower and waits until the index holds the first n
// entries of the log, ctx is done, or timeout passes; it reports whether
// the index got there.
func (ix *Index) WaitFor(ctx context.Context, n int64, timeout time.Duration) bool {
	if ix.Next() >= n {
		return true
	}
	select {
	case ix.wake <- struct{}{}:
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		ix.progressMu.Lock()
		ch := ix.progress
		ix.progressMu.Unlock()
		if ix.Next() >= n {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// Close stops the follower and the background merges, writes what is in
// memory to disk, and closes the segment files. Searches after Close find
// nothing.
func (ix *Index) Close() error {
	ix.closeOnce.Do(func() {
		ix.stopOnce.Do(func() { close(ix.stop) })
		if ix.started.Load() {
			<-ix.done
		}
		ix.bgCancel()
		ix.bg.Wait()
		ix.writeMu.Lock()
		defer ix.writeMu.Unlock()
		err := ix.flush(context.Background())
		ix.manifestMu.Lock()
		defer ix.manifestMu.Unlock()
		ix.viewMu.Lock()
		v := ix.view
		ix.view = &view{}
		ix.viewMu.Unlock()
		for _, s := range v.segs[:v.disk] {
			err = errors.Join(err, s.release())
		}
		ix.closeErr = err
	})
	return ix.closeErr
}
