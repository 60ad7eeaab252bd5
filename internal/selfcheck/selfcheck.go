// Package selfcheck is trail serve's continuous self-verification: it
// re-reads what the log stored and checks it against what the log signed,
// while the log runs.
//
// Two loops share one checker:
//
//   - the follower checks new data as checkpoints cover it: every entry
//     read back from storage and re-hashed, every sealed hash tile compared
//     with the hashes of the entries below it, every signed checkpoint's root
//     recomputed from the entries;
//   - the sweeper re-verifies the whole log from entry 0 on a schedule, at a
//     bounded read rate so that appends keep their disk and CPU.
//
// Both read through the storage.Backend interface, not the ledger's caches,
// so they see what is on disk. They compute the tree from the entries
// themselves (a compact range: one hash per level), so a damaged tile cannot
// vouch for a damaged entry. A mismatch is reported through Config.Report
// with its place: the entry bundle and index, the tile, or the checkpoint.
//
// What self-verification cannot see: a log rebuilt whole and re-signed with
// the server's own key (the operator's attack), or an older directory put
// back while the server was stopped. Those are for clients holding a
// trusted checkpoint and for witnesses (docs/tamper.md).
package selfcheck

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage"
)

// Damage is a mismatch between stored data and what was signed.
type Damage struct {
	// Where names the place, as a path in the data directory where one
	// exists ("log/tile/entries/000.p/9 (entry 7)", "log/tile/0/001",
	// "state/checkpoints (checkpoint of size 512)").
	Where string
	// What says what differs.
	What string
	// Index is the first entry concerned, or -1.
	Index int64
}

func (d *Damage) Error() string { return d.Where + ": " + d.What }

// Config configures a Checker.
type Config struct {
	// Store is the log's storage, read directly. Required.
	Store storage.Backend
	// Verifier checks checkpoint signatures. Required.
	Verifier note.Verifier
	// Latest returns the newest signed checkpoint note (ledger.Log.Latest's
	// Note), which the follower checks as it appears. Default: the newest
	// in Store.Checkpoints, read again at every poll.
	Latest func() []byte
	// Published, if not nil, reads the checkpoint the log publishes to
	// readers (the data directory's log/checkpoint); the follower checks
	// its signature at every poll.
	Published func() ([]byte, error)
	// Report receives each damage found. Required. It is called from the
	// checking goroutine and should not block for long.
	Report func(*Damage)
	// Every is the time between two sweeps of the whole log (the first
	// starts after Every). Default 1 hour; negative disables sweeps.
	Every time.Duration
	// Rate bounds the bytes per second a sweep reads. Default 128 MiB/s;
	// negative is unbounded.
	Rate int64
	// Poll is how often the follower looks for a new checkpoint. Default
	// 1 s.
	Poll time.Duration
	// Logger receives progress lines. Default: discard.
	Logger *slog.Logger
}

// Stats describes the checks done so far.
type Stats struct {
	Followed     int64         // entries checked by the follower
	Sweeps       int64         // complete sweeps of the whole log
	LastSweep    time.Duration // duration of the last complete sweep
	LastSweepB   int64         // bytes read by the last complete sweep
	Damages      int64         // damages reported
	FollowerStop string        // why the follower stopped, if it did
}

// Checker runs the follower and the sweeper.
type Checker struct {
	cfg  Config
	log  *slog.Logger
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	stats Stats
}

// Start starts checking; Stop stops it.
func Start(cfg Config) (*Checker, error) {
	if cfg.Store == nil || cfg.Verifier == nil || cfg.Report == nil {
		return nil, errors.New("selfcheck: Store, Verifier and Report are required")
	}
	if cfg.Every == 0 {
		cfg.Every = time.Hour
	}
	if cfg.Rate == 0 {
		cfg.Rate = 128 << 20
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	c := &Checker{cfg: cfg, log: cfg.Logger, stop: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.wg.Add(1)
	go c.follow()
	if cfg.Every > 0 {
		c.wg.Add(1)
		go c.sweepLoop()
	}
	return c, nil
}

// Stop stops both loops and waits for them.
func (c *Checker) Stop() {
	close(c.stop)
	c.wg.Wait()
}

// Stats returns what was checked so far.
func (c *Checker) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Checker) report(d *Damage) {
	c.mu.Lock()
	c.stats.Damages++
	c.mu.Unlock()
	c.cfg.Report(d)
}

// follow checks each new checkpoint's entries as they appear.
func (c *Checker) follow() {
	defer c.wg.Done()
	ctx, cancel := c.context()
	defer cancel()
	// The first walk catches up with the whole log, at the sweep rate.
	w := newWalker(c.cfg.Store, c.cfg.Verifier, c.cfg.Rate)
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	publishedBad := false
	for {
		if c.cfg.Published != nil && !publishedBad {
			if d := c.checkPublished(w); d != nil {
				publishedBad = true
				c.report(d)
			}
		}
		cps, err := c.latest(ctx, w)
		if err == nil && len(cps) > 0 && cps[0].size > w.size {
			err = w.walk(ctx, cps, func(n int64) {
				c.mu.Lock()
				c.stats.Followed += n
				c.mu.Unlock()
			})
		}
		if ctx.Err() != nil {
			return
		}
		if d := (*Damage)(nil); errors.As(err, &d) {
			// The walker's tree is built from damaged data now; the
			// sweeper starts over from entry 0 and finds what else is
			// wrong.
			c.report(d)
			c.mu.Lock()
			c.stats.FollowerStop = d.Error()
			c.mu.Unlock()
			return
		} else if err != nil {
			c.log.Warn("self-verification: couldn't read the log; retrying", "err", err)
		}
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
	}
}

// checkPublished checks the signature of the published checkpoint.
func (c *Checker) checkPublished(w *walker) *Damage {
	const where = "log/checkpoint (the published checkpoint)"
	b, err := c.cfg.Published()
	if err != nil {
		return &Damage{Where: where, What: "unreadable: " + err.Error(), Index: -1}
	}
	cp, err := w.open(b, where, 0)
	if err != nil {
		d, _ := err.(*Damage)
		return d
	}
	if s := c.cfg.Store.Size(); cp.size > s {
		return &Damage{Where: where, What: fmt.Sprintf("signs %d entries, but the log holds %d", cp.size, s), Index: s}
	}
	return nil
}

// latest returns the newest checkpoint, verified.
func (c *Checker) latest(ctx context.Context, w *walker) ([]signed, error) {
	if c.cfg.Latest == nil {
		cps, err := w.checkpoints(ctx)
		if len(cps) > 0 {
			cps = cps[len(cps)-1:]
		}
		return cps, err
	}
	b := c.cfg.Latest()
	if b == nil {
		return nil, nil
	}
	cp, err := w.open(b, "log/checkpoint (the newest checkpoint)", 0)
	if err != nil {
		return nil, err
	}
	return []signed{cp}, nil
}

func (c *Checker) sweepLoop() {
	defer c.wg.Done()
	ctx, cancel := c.context()
	defer cancel()
	t := time.NewTicker(c.cfg.Every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		start := time.Now()
		bytes, err := Sweep(ctx, c.cfg.Store, c.cfg.Verifier, c.cfg.Rate)
		if ctx.Err() != nil {
			return
		}
		if d := (*Damage)(nil); errors.As(err, &d) {
			c.report(d)
			continue
		} else if err != nil {
			c.log.Warn("self-verification sweep couldn't read the log", "err", err)
			continue
		}
		c.mu.Lock()
		c.stats.Sweeps++
		c.stats.LastSweep, c.stats.LastSweepB = time.Since(start), bytes
		c.mu.Unlock()
		c.log.Info("self-verification sweep passed", "bytes", bytes, "took", time.Since(start).Round(time.Millisecond))
	}
}

func (c *Checker) context() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Sweep verifies the whole log in store up to its newest checkpoint,
// reading at most rate bytes per second (unbounded if rate <= 0), and
// returns the bytes read. Damage is returned as a *Damage.
func Sweep(ctx context.Context, store storage.Backend, v note.Verifier, rate int64) (int64, error) {
	w := newWalker(store, v, rate)
	cps, err := w.checkpoints(ctx)
	if err != nil || len(cps) == 0 {
		return 0, err
	}
	err = w.walk(ctx, cps, nil)
	return w.bytes, err
}

// signed is a stored checkpoint.
type signed struct {
	size  int64
	root  tlog.Hash
	nth   int    // position in the history, or 0
	where string // where it is stored, for naming it
}

// walker rebuilds the tree from the stored entries, left to right.
type walker struct {
	store storage.Backend
	v     note.Verifier
	rate  int64

	size  int64                  // entries consumed
	cr    []node                 // compact range of the first size entries
	tiles map[int][]tlog.Hash    // level >= 1: completed tile entries not yet checked
	seen  int                    // checkpoints already checked
	bytes int64                  // bytes read
	start time.Time              // for the rate
	mism  map[int64]tileMismatch // level-0 tile hashes that differed from their entries
}

type node struct {
	height int
	hash   tlog.Hash
}

type tileMismatch struct {
	tile  string
	entry string
}

func newWalker(store storage.Backend, v note.Verifier, rate int64) *walker {
	return &walker{store: store, v: v, rate: rate, tiles: make(map[int][]tlog.Hash), start: time.Now()}
}

// checkpoints returns the stored checkpoints, verified, in order of size.
func (w *walker) checkpoints(ctx context.Context) ([]signed, error) {
	notes, err := w.store.Checkpoints(ctx)
	if err != nil {
		var ce *storage.CorruptionError
		if errors.As(err, &ce) {
			return nil, &Damage{Where: ce.Where, What: ce.What, Index: -1}
		}
		return nil, err
	}
	out := make([]signed, 0, len(notes))
	for i, b := range notes {
		where := fmt.Sprintf("state/checkpoints (checkpoint %d of %d)", i+1, len(notes))
		cp, err := w.open(b, where, i+1)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && cp.size < out[len(out)-1].size {
			return nil, &Damage{Where: where, What: fmt.Sprintf("size %d is smaller than the checkpoint before it (%d)", cp.size, out[len(out)-1].size), Index: -1}
		}
		out = append(out, cp)
	}
	return out, nil
}

// open verifies a signed checkpoint note.
func (w *walker) open(b []byte, where string, nth int) (signed, error) {
	n, err := note.Open(b, note.VerifierList(w.v))
	if err != nil {
		return signed{}, &Damage{Where: where, What: "signature does not verify with the log's key: " + err.Error(), Index: -1}
	}
	cp, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return signed{}, &Damage{Where: where, What: err.Error(), Index: -1}
	}
	return signed{size: cp.Size, root: cp.Hash, nth: nth, where: where}, nil
}

// walk consumes entries up to the last of cps (in order of size), checking
// tiles as they complete and the root of each checkpoint in cps at or
// beyond the entries already consumed as its size is reached.
func (w *walker) walk(ctx context.Context, cps []signed, progress func(int64)) error {
	for len(cps) > 0 && cps[0].size < w.size {
		cps = cps[1:] // passed before this walk; the sweeper checks those
	}
	if len(cps) == 0 {
		return nil
	}
	size := cps[len(cps)-1].size
	if s := w.store.Size(); size > s {
		return &Damage{Where: "log", What: fmt.Sprintf("holds %d entries, but the checkpoint in %s signed %d", s, cps[len(cps)-1].where, size), Index: s}
	}
	w.seen = 0
	for w.size < size {
		next := min(size, (w.size/c2sp.TileWidth+1)*c2sp.TileWidth)
		// Stop at the next checkpoint not yet checked, to compare roots.
		for w.seen < len(cps) && cps[w.seen].size <= w.size {
			if err := w.checkRoot(cps[w.seen]); err != nil {
				return err
			}
			w.seen++
		}
		if w.seen < len(cps) && cps[w.seen].size < next {
			next = cps[w.seen].size
		}
		before := w.size
		if err := w.consume(ctx, next); err != nil {
			return err
		}
		if progress != nil {
			progress(w.size - before)
		}
	}
	for w.seen < len(cps) && cps[w.seen].size <= w.size {
		if err := w.checkRoot(cps[w.seen]); err != nil {
			return err
		}
		w.seen++
	}
	return nil
}

// consume reads entries [w.size, end), all in one bundle, and adds them.
func (w *walker) consume(ctx context.Context, end int64) error {
	n := w.size / c2sp.TileWidth
	bundle := c2sp.Tile{Level: c2sp.EntriesLevel, N: n, Width: c2sp.TileWidth}.Path()
	entries, err := w.store.ReadEntries(ctx, w.size, end)
	if err != nil {
		return w.damage(err, "log/"+bundle, w.size)
	}
	hashes := make([]tlog.Hash, len(entries))
	for i, e := range entries {
		w.bytes += int64(len(e)) + 2
		hashes[i] = tlog.RecordHash(e)
		if ref, ok, err := ledger.ParseLargeRef(e); ok {
			idx := w.size + int64(i)
			if err != nil {
				return &Damage{Where: fmt.Sprintf("log/%s (entry %d)", bundle, idx), What: err.Error(), Index: idx}
			}
			body, err := w.store.ReadBlob(ctx, ref.SHA256)
			if err != nil {
				return w.damage(err, fmt.Sprintf("log/large/%x (entry %d)", ref.SHA256, idx), idx)
			}
			w.bytes += int64(len(body))
			if sha256.Sum256(body) != ref.SHA256 || int64(len(body)) != ref.Size {
				return &Damage{Where: fmt.Sprintf("log/large/%x (entry %d)", ref.SHA256, idx), What: "the body does not match the hash and size its entry commits to", Index: idx}
			}
		}
	}
	// The level-0 tile holds the leaf hashes as the log computed them when
	// it appended. A difference is either a changed entry or a changed
	// tile; the next checkpoint's root says which.
	stored, err := w.store.ReadTile(ctx, 0, n)
	if err != nil {
		return w.damage(err, "log/tile/0/"+c2sp.FormatIndex(n), w.size)
	}
	lo := int(w.size - n*c2sp.TileWidth)
	for i, h := range hashes {
		j := lo + i
		idx := w.size + int64(i)
		switch {
		case j >= len(stored):
			return &Damage{Where: "log/tile/0/" + c2sp.FormatIndex(n), What: fmt.Sprintf("holds %d hashes, but entry %d is in the log", len(stored), idx), Index: idx}
		case stored[j] != h:
			if w.mism == nil {
				w.mism = make(map[int64]tileMismatch)
			}
			w.mism[idx] = tileMismatch{
				tile:  fmt.Sprintf("log/tile/0/%s (hash %d)", c2sp.FormatIndex(n), j),
				entry: fmt.Sprintf("log/%s (entry %d)", bundle, idx),
			}
		}
		w.push(h)
	}
	w.size = end
	if err := w.flushTiles(ctx); err != nil {
		return err
	}
	w.throttle(ctx)
	return nil
}

// push adds a leaf hash to the compact range; every node of height 8·k
// (k >= 1) it completes is an entry of a level-k tile.
func (w *walker) push(h tlog.Hash) {
	w.cr = append(w.cr, node{0, h})
	for len(w.cr) >= 2 && w.cr[len(w.cr)-1].height == w.cr[len(w.cr)-2].height {
		l, r := w.cr[len(w.cr)-2], w.cr[len(w.cr)-1]
		m := node{l.height + 1, tlog.NodeHash(l.hash, r.hash)}
		w.cr = append(w.cr[:len(w.cr)-2], m)
		if m.height%c2sp.TileHeight == 0 {
			level := m.height / c2sp.TileHeight
			w.tiles[level] = append(w.tiles[level], m.hash)
		}
	}
}

// flushTiles compares every completed tile of level 1 and above with the
// stored one.
func (w *walker) flushTiles(ctx context.Context) error {
	for level := 1; level <= len(w.tiles); level++ {
		hs := w.tiles[level]
		if len(hs) < c2sp.TileWidth {
			continue
		}
		// The tile's index: the entries it covers end at the current size
		// for the deepest level just completed.
		span := int64(1) << (c2sp.TileHeight * (level + 1))
		n := w.size/span - 1
		path := fmt.Sprintf("log/tile/%d/%s", level, c2sp.FormatIndex(n))
		stored, err := w.store.ReadTile(ctx, level, n)
		if err != nil {
			return w.damage(err, path, n*span)
		}
		if len(stored) != c2sp.TileWidth {
			return &Damage{Where: path, What: fmt.Sprintf("holds %d hashes, want %d", len(stored), c2sp.TileWidth), Index: n * span}
		}
		for i := range hs {
			if stored[i] != hs[i] {
				first := n*span + int64(i)*(span/c2sp.TileWidth)
				return &Damage{Where: path, What: fmt.Sprintf("hash %d is %s, but entries %d to %d hash to %s", i, stored[i], first, first+span/c2sp.TileWidth-1, hs[i]), Index: first}
			}
		}
		w.tiles[level] = hs[:0]
	}
	return nil
}

// root is the tree hash of the entries consumed.
func (w *walker) root() tlog.Hash {
	if len(w.cr) == 0 {
		return tlog.Hash{}
	}
	r := w.cr[len(w.cr)-1].hash
	for i := len(w.cr) - 2; i >= 0; i-- {
		r = tlog.NodeHash(w.cr[i].hash, r)
	}
	return r
}

// checkRoot compares the root at cp's size with cp's, and settles any
// level-0 tile mismatches seen below it.
func (w *walker) checkRoot(cp signed) error {
	where := fmt.Sprintf("%s of size %d", cp.where, cp.size)
	if cp.size == 0 {
		return nil
	}
	match := w.root() == cp.root
	if len(w.mism) > 0 {
		idx := slices.Min(slices.Collect(maps.Keys(w.mism)))
		m := w.mism[idx]
		if match {
			// The entries agree with the signed root: the tile changed.
			return &Damage{Where: m.tile, What: fmt.Sprintf("differs from the leaf hash of entry %d, which the signed checkpoint of size %d confirms", idx, cp.size), Index: idx}
		}
		return &Damage{Where: m.entry, What: fmt.Sprintf("was altered: its leaf hash differs from %s and from what the checkpoint of size %d signed", m.tile, cp.size), Index: idx}
	}
	if !match {
		return &Damage{Where: where, What: fmt.Sprintf("signed root %s, but the stored entries and tiles hash to %s", cp.root, w.root()), Index: -1}
	}
	return nil
}

// damage turns a storage error into a Damage; other errors (a context
// ended) pass through.
func (w *walker) damage(err error, where string, index int64) error {
	var ce *storage.CorruptionError
	switch {
	case errors.As(err, &ce):
		return &Damage{Where: ce.Where, What: ce.What, Index: index}
	case errors.Is(err, storage.ErrNotFound):
		return &Damage{Where: where, What: "missing", Index: index}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		// An unreadable file in a log that ran is damage too.
		return &Damage{Where: where, What: err.Error(), Index: index}
	}
}

// throttle sleeps to keep the read rate at or below w.rate.
func (w *walker) throttle(ctx context.Context) {
	if w.rate <= 0 {
		return
	}
	due := w.start.Add(time.Duration(float64(w.bytes) / float64(w.rate) * float64(time.Second)))
	if d := time.Until(due); d > time.Millisecond {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
}
