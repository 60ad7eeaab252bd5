// Package index is trail's search index: a SQLite database (with FTS5, in
// pure Go through modernc.org/sqlite) derived from the log, which it
// follows. It holds, per entry, the fields the search filters compare and
// the entry's words for free text, never the entry itself: results are read
// from the log and proven against a signed checkpoint (see http.go), and
// clients check each result against their query (client.Search). The index
// is not trusted; an altered row yields a result that fails on the client.
//
// The index lives in <data>/index/search.db (with SQLite's -wal and -shm
// files). It is derived data: deleting the directory, with the server
// stopped, is always safe; the next start rebuilds it from the log.
//
// A follower goroutine reads new entries from the log, polling its size
// (the append path does no work for it), and indexes them in large
// transactions; each transaction also stores how far the index goes, so
// after a crash it resumes from the last committed transaction. An index
// that does not fit its log (another log's, one ahead of the log, an older
// schema, a damaged file, or a missing progress row) is discarded and
// rebuilt.
package index

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/storage"
)

// DirName is the index's directory in the data directory; FileName its
// database in that directory.
const (
	DirName  = "index"
	FileName = "search.db"
)

// schemaVersion changes whenever the schema or what is indexed changes: an
// index of another version is rebuilt.
const schemaVersion = "2"

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
	// Batch is the most entries indexed in one transaction. Default
	// DefaultBatch.
	Batch int
}

// Index is an open search index. Its methods are safe for concurrent use.
type Index struct {
	opts Options
	log  *slog.Logger
	path string
	w    *sql.DB // one connection: all writes
	r    *sql.DB // readers

	writeMu sync.Mutex // one indexer at a time: the follower or CatchUp
	next    atomic.Int64

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	started  atomic.Bool
	wake     chan struct{}

	progressMu sync.Mutex
	progress   chan struct{} // closed and replaced at each commit

	// beforeCommit, if set, runs before each batch's commit; an error
	// aborts the batch (tests inject crashes with it).
	beforeCommit func(start, end int64) error
}

// Open opens the index in opts.Dir, creating it, or discarding and
// recreating it when it does not fit opts.Source. It does not index
// anything: call CatchUp, or Start to follow the log.
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
	ix := &Index{opts: opts, log: opts.Logger, path: filepath.Join(opts.Dir, FileName), stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1), progress: make(chan struct{})}
	if ix.log == nil {
		ix.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("couldn't create the index directory: %w", err)
	}
	reason, err := ix.open(ctx)
	if err == nil && reason == "" {
		return ix, nil
	}
	if err != nil {
		reason = err.Error()
	}
	ix.closeDBs()
	ix.log.Warn("rebuilding the search index from the log", "reason", reason, "path", ix.path)
	if err := ix.remove(); err != nil {
		return nil, err
	}
	if reason, err = ix.open(ctx); err != nil || reason != "" {
		ix.closeDBs()
		return nil, fmt.Errorf("couldn't create the search index %s: %v%s", ix.path, err, reason)
	}
	return ix, nil
}

func dsn(path string, extra ...string) string {
	p := []string{"page_size(16384)", "journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(10000)", "temp_store(MEMORY)"}
	p = append(p, extra...)
	return "file:" + path + "?_pragma=" + strings.Join(p, "&_pragma=")
}

const schema = `
CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(
	idx      INTEGER PRIMARY KEY,
	time     INTEGER,
	received INTEGER,
	actor    TEXT,
	action   TEXT,
	rtype    TEXT,
	rid      TEXT,
	outcome  TEXT,
	source   TEXT,
	via      TEXT
);
CREATE INDEX IF NOT EXISTS events_actor ON events(actor, time);
CREATE INDEX IF NOT EXISTS events_action ON events(action);
CREATE INDEX IF NOT EXISTS events_rid ON events(rid, time);
CREATE INDEX IF NOT EXISTS events_source ON events(source);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(text, content='', columnsize=0, tokenize='unicode61 remove_diacritics 0');
INSERT INTO fts(fts, rank) VALUES ('pgsz', 16000);
INSERT INTO fts(fts, rank) VALUES ('automerge', 8);
`

// open opens the database and checks that it fits the source. It returns
// why the index must be rebuilt, or "".
func (ix *Index) open(ctx context.Context) (string, error) {
	// It holds what the events say: as private as the log's state. SQLite
	// gives its -wal and -shm files the database's mode.
	f, err := os.OpenFile(ix.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", err
	}
	f.Close()
	if ix.w, err = sql.Open("sqlite", dsn(ix.path, "cache_size(-262144)")); err != nil {
		return "", err
	}
	ix.w.SetMaxOpenConns(1)
	if _, err := ix.w.ExecContext(ctx, schema); err != nil {
		return "", fmt.Errorf("schema: %w", err)
	}
	meta := map[string]string{}
	rows, err := ix.w.QueryContext(ctx, `SELECT k, v FROM meta`)
	if err != nil {
		return "", err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return "", err
		}
		meta[k] = v
	}
	if err := rows.Close(); err != nil {
		return "", err
	}
	src := ix.opts.Source
	var next int64
	if len(meta) == 0 {
		var any int
		if err := ix.w.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM events LIMIT 1)`).Scan(&any); err != nil {
			return "", err
		}
		if any > 0 {
			return "its progress record is missing", nil
		}
		if _, err := ix.w.ExecContext(ctx, `INSERT INTO meta(k, v) VALUES ('version', ?), ('origin', ?), ('next', '0')`, schemaVersion, src.Origin()); err != nil {
			return "", err
		}
	} else {
		switch {
		case meta["version"] != schemaVersion:
			return fmt.Sprintf("schema version %q, want %q", meta["version"], schemaVersion), nil
		case meta["origin"] != src.Origin():
			return fmt.Sprintf("it indexes log %q, not %q", meta["origin"], src.Origin()), nil
		}
		if _, err := fmt.Sscan(meta["next"], &next); err != nil || next < 0 {
			return "its progress record is missing or malformed", nil
		}
		if size := src.Size(); next > size {
			return fmt.Sprintf("it indexes %d entries, the log holds %d", next, size), nil
		}
	}
	ix.next.Store(next)
	if ix.r, err = sql.Open("sqlite", dsn(ix.path, "query_only(1)")); err != nil {
		return "", err
	}
	ix.r.SetMaxOpenConns(8)
	ix.r.SetMaxIdleConns(8)
	return "", nil
}

func (ix *Index) closeDBs() error {
	var err error
	if ix.r != nil {
		err = ix.r.Close()
		ix.r = nil
	}
	if ix.w != nil {
		err = errors.Join(err, ix.w.Close())
		ix.w = nil
	}
	return err
}

func (ix *Index) remove() error {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(ix.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("couldn't remove the old search index: %w", err)
		}
	}
	return nil
}

// Next returns the number of entries indexed: entries [0, Next()) are.
func (ix *Index) Next() int64 { return ix.next.Load() }

// Path returns the database file.
func (ix *Index) Path() string { return ix.path }

// CatchUp indexes every entry of the source not yet indexed, up to its size
// when called, in transactions of Options.Batch entries, calling progress
// (if not nil) after each.
func (ix *Index) CatchUp(ctx context.Context, progress func(done, total int64)) error {
	ix.writeMu.Lock()
	defer ix.writeMu.Unlock()
	total := ix.opts.Source.Size()
	for next := ix.next.Load(); next < total; next = ix.next.Load() {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(total, next+int64(ix.opts.Batch))
		if err := ix.indexRange(ctx, next, end); err != nil {
			return err
		}
		if progress != nil {
			progress(end, total)
		}
	}
	return nil
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
		err := ix.CatchUp(ctx, nil)
		switch {
		case err == nil:
			wait = ix.opts.Poll
		case ctx.Err() != nil:
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

// Close stops the follower, waiting for a batch in progress to commit, and
// closes the database.
func (ix *Index) Close() error {
	ix.stopOnce.Do(func() { close(ix.stop) })
	if ix.started.Load() {
		<-ix.done
	}
	ix.writeMu.Lock()
	defer ix.writeMu.Unlock()
	return ix.closeDBs()
}

// nanos returns t as Unix nanoseconds, saturated outside the years 1678 to
// 2261 that int64 nanoseconds reach.
func nanos(t time.Time) int64 {
	switch y := t.Year(); {
	case y < 1678:
		return math.MinInt64
	case y > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// row is one entry as the index holds it; text is "" for none.
type row struct {
	args [10]any
	text string
}

// rowsPerInsert is how many rows one INSERT statement carries: fewer
// statements, less overhead per row.
const rowsPerInsert = 64

// indexRange indexes entries [start, end) in one transaction, which also
// records end as the progress.
func (ix *Index) indexRange(ctx context.Context, start, end int64) error {
	src := ix.opts.Source
	leaves, err := src.ReadEntries(ctx, start, end)
	if err != nil {
		return fmt.Errorf("couldn't read entries [%d, %d): %w", start, end, err)
	}
	rows, err := ix.rows(ctx, start, leaves)
	if err != nil {
		return err
	}
	tx, err := ix.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmts := map[string]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	exec := func(head, tuple string, n int, args []any) error {
		key := fmt.Sprint(head, n)
		st := stmts[key]
		if st == nil {
			q := head + strings.TrimSuffix(strings.Repeat(tuple+",", n), ",")
			if st, err = tx.PrepareContext(ctx, q); err != nil {
				return err
			}
			stmts[key] = st
		}
		_, err := st.ExecContext(ctx, args...)
		return err
	}
	args := make([]any, 0, rowsPerInsert*10)
	texts := make([]any, 0, rowsPerInsert*2)
	for i := 0; i < len(rows); i += rowsPerInsert {
		chunk := rows[i:min(i+rowsPerInsert, len(rows))]
		args, texts = args[:0], texts[:0]
		for _, r := range chunk {
			args = append(args, r.args[:]...)
			if r.text != "" {
				texts = append(texts, r.args[0], r.text)
			}
		}
		if err := exec("INSERT INTO events(idx, time, received, actor, action, rtype, rid, outcome, source, via) VALUES ", "(?,?,?,?,?,?,?,?,?,?)", len(chunk), args); err != nil {
			return fmt.Errorf("couldn't index entries [%d, %d): %w", start+int64(i), start+int64(i+len(chunk)), err)
		}
		if len(texts) > 0 {
			if err := exec("INSERT INTO fts(rowid, text) VALUES ", "(?,?)", len(texts)/2, texts); err != nil {
				return fmt.Errorf("couldn't index the text of entries [%d, %d): %w", start+int64(i), start+int64(i+len(chunk)), err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET v = ? WHERE k = 'next'`, fmt.Sprint(end)); err != nil {
		return err
	}
	if ix.beforeCommit != nil {
		if err := ix.beforeCommit(start, end); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("couldn't commit entries [%d, %d) to the index: %w", start, end, err)
	}
	ix.next.Store(end)
	ix.progressMu.Lock()
	close(ix.progress)
	ix.progress = make(chan struct{})
	ix.progressMu.Unlock()
	return nil
}

// rows derives the rows of entries start... from their leaves, on every
// core: decoding costs as much as storing.
func (ix *Index) rows(ctx context.Context, start int64, leaves [][]byte) ([]row, error) {
	rows := make([]row, len(leaves))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(leaves)/256))
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(leaves); i += workers {
				if errs[w] = ix.row(ctx, start+int64(i), leaves[i], &rows[i]); errs[w] != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	return rows, errors.Join(errs...)
}

func (ix *Index) row(ctx context.Context, idx int64, leaf []byte, r *row) error {
	r.args[0] = idx
	body, err := ix.opts.Source.Body(ctx, leaf)
	if err != nil {
		if _, ok := errors.AsType[*storage.CorruptionError](err); !ok && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("couldn't read entry %d: %w", idx, err)
		}
		ix.log.Error("search index: entry body unreadable; indexed without fields", "index", idx, "err", err)
	}
	doc, err := client.DocOf(body)
	if err != nil {
		return nil // not an event envelope: found only by searches without filters
	}
	r.args = [10]any{idx, nanos(doc.Time), nanos(doc.Received), nullable(doc.Actor), nullable(doc.Action),
		nullable(doc.ResourceType), nullable(doc.ResourceID), nullable(doc.Outcome), nullable(doc.Source), nullable(doc.Via)}
	r.text = doc.Text
	return nil
}
