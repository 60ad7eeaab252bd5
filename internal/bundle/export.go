package bundle

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
)

// ExportOptions says what to export.
type ExportOptions struct {
	// VerifierKey is the log's verifier key: the source's checkpoint must
	// be signed by it. Required.
	VerifierKey string
	// From and To are the first and last index to export, inclusive. To
	// < 0 means the last entry of the newest checkpoint.
	From, To int64
	// Since and Until, if either is set, choose the entries by received
	// time instead: the first entry received at or after Since to the last
	// received before Until (see FindRange).
	Since, Until time.Time
	// Slack is how far received times may run out of order; see
	// FindRange. Default DefaultSlack.
	Slack time.Duration
	// Parallel is how many entry bundles are read at once. Default 8.
	Parallel int
	// Progress, if not nil, is called after each entry bundle written.
	Progress func(Progress)
}

// ExportReport describes a bundle Export wrote.
type ExportReport struct {
	Manifest
	Checkpoint                  []byte
	Entries, Large              int64
	Bytes                       int64
	FirstReceived, LastReceived time.Time
	Duration                    time.Duration
}

// ErrRange is wrapped by errors about a range that the log does not hold:
// the caller's mistake, not the log's.
var ErrRange = errors.New("bad range")

// Export writes a bundle of entries of src to w. It reads the newest
// checkpoint, checks its signature, chooses the range, and writes the
// bundle while checking it as Verify would, so that a damaged source
// makes an error, never a bundle that fails later.
func Export(ctx context.Context, src Source, w io.Writer, opts ExportOptions) (*ExportReport, error) {
	start := time.Now()
	v, err := note.NewVerifier(strings.TrimSpace(opts.VerifierKey))
	if err != nil {
		return nil, fmt.Errorf("bad verifier key: %w", err)
	}
	signed, err := src.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	cp, _, err := openCheckpoint(signed, v)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint of %s: %w", src, err)
	}
	if cp.Size == 0 {
		return nil, fmt.Errorf("%w: the log's newest checkpoint holds no entries", ErrRange)
	}
	from, to := opts.From, opts.To
	if !opts.Since.IsZero() || !opts.Until.IsZero() {
		if from, to, err = FindRange(ctx, src, cp.Size, opts.Since, opts.Until, opts.Slack); err != nil {
			return nil, err
		}
	} else {
		if to < 0 {
			to = cp.Size - 1
		}
		switch {
		case from < 0:
			return nil, fmt.Errorf("%w: from %d: indexes start at 0", ErrRange, from)
		case from >= cp.Size:
			return nil, fmt.Errorf("%w: entry %d is not in the newest checkpoint, which holds entries 0 to %d", ErrRange, from, cp.Size-1)
		case to >= cp.Size:
			return nil, fmt.Errorf("%w: entry %d is not in the newest checkpoint, which holds entries 0 to %d", ErrRange, to, cp.Size-1)
		case from > to:
			return nil, fmt.Errorf("%w: from %d is after to %d", ErrRange, from, to)
		}
	}
	p, err := makePlan(cp.Size, from, to)
	if err != nil {
		return nil, err
	}
	m := Manifest{Format: Format, Origin: cp.Origin, From: from, To: to, TreeSize: cp.Size}
	rep := &ExportReport{Manifest: m, Checkpoint: signed}

	// Everything written is checked as it goes by Verify, on a pipe.
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		_, err := Verify(ctx, pr, opts.VerifierKey, VerifyOptions{})
		pr.CloseWithError(err) // unblock the writer if Verify stopped early
		checked <- err
	}()
	// Buffered, so that the two goroutines meet once per megabyte rather
	// than once per tar header.
	bw := bufio.NewWriterSize(io.MultiWriter(w, pw), 1<<20)
	err = write(ctx, src, p, m, signed, bw, rep, opts)
	if err == nil {
		err = bw.Flush()
	}
	pw.CloseWithError(err)
	verr := <-checked
	var f *Failure
	if err != nil && !errors.As(err, &f) {
		return nil, err // the source failed; Verify saw the pipe fail
	}
	if verr != nil {
		return nil, fmt.Errorf("the data read from %s does not verify, so no bundle was made (run trail verify on it): %w", src, verr)
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// write writes the bundle.
func write(ctx context.Context, src Source, p *plan, m Manifest, signed []byte, w io.Writer, rep *ExportReport, opts ExportOptions) error {
	tw := newTarWriter(w)
	if err := tw.add(ManifestName, m.encode()); err != nil {
		return err
	}
	if err := tw.add(CheckpointName, signed); err != nil {
		return err
	}
	for _, t := range p.head {
		b, err := src.ReadTile(ctx, c2sp.Tile{Level: t.L, N: t.N, Width: t.W})
		if err != nil {
			return err
		}
		if err := tw.add(tilePath(t), b); err != nil {
			return err
		}
	}
	seen := map[[32]byte]bool{}
	total := p.to - p.from + 1
	par := opts.Parallel
	if par <= 0 {
		par = 8
	}
	err := fetchOrdered(ctx, p.first, p.last, par, func(ctx context.Context, n int64) (*unit, error) {
		return readUnit(ctx, src, p, n)
	}, func(u *unit) error {
		if u.level0 != nil {
			if err := tw.add(tilePath(tlog.Tile{L: 0, N: u.n, W: c2sp.TileWidth}), u.level0); err != nil {
				return err
			}
		}
		if err := tw.add(entriesPath(u.n), u.entries); err != nil {
			return err
		}
		for _, ref := range u.large {
			rep.Large++
			if seen[ref.SHA256] {
				continue
			}
			seen[ref.SHA256] = true
			body, err := src.ReadLarge(ctx, ref.SHA256)
			if err != nil {
				return fmt.Errorf("the body of large entry %x: %w", ref.SHA256, err)
			}
			if err := tw.add(largePath(ref.SHA256), body); err != nil {
				return err
			}
		}
		rep.Entries += u.count
		if u.n == p.first {
			rep.FirstReceived = u.first
		}
		if u.n == p.last {
			rep.LastReceived = u.last
		}
		if opts.Progress != nil {
			opts.Progress(Progress{Entries: rep.Entries, TotalEntries: total, Bytes: tw.cw.n})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.close(); err != nil {
		return err
	}
	rep.Bytes = tw.cw.n
	return nil
}

// unit is what the bundle holds of one C2SP entry bundle.
type unit struct {
	n           int64
	level0      []byte // the full level-0 tile, or nil if it is in the head
	entries     []byte // the range's entries, bundle-encoded
	count       int64
	large       []ledger.LargeRef
	first, last time.Time // received times of the first and last entry
}

func readUnit(ctx context.Context, src Source, p *plan, n int64) (*unit, error) {
	u := &unit{n: n}
	var err error
	if p.fullLevel0(n) {
		if u.level0, err = src.ReadTile(ctx, c2sp.Tile{Level: 0, N: n, Width: c2sp.TileWidth}); err != nil {
			return nil, err
		}
	}
	es, err := readBundle(ctx, src, p.size, n)
	if err != nil {
		return nil, err
	}
	lo, hi := p.entryRange(n)
	es = es[lo-n*c2sp.TileWidth : hi-n*c2sp.TileWidth+1]
	u.count = int64(len(es))
	n2 := 0
	for _, e := range es {
		n2 += 2 + len(e)
	}
	u.entries = make([]byte, 0, n2)
	for _, e := range es {
		u.entries = c2sp.AppendEntry(u.entries, e)
		ref, isRef, err := ledger.ParseLargeRef(e)
		if isRef && err != nil {
			return nil, err
		}
		if isRef {
			u.large = append(u.large, ref)
		}
	}
	u.first, u.last = Received(es[0]), Received(es[len(es)-1])
	return u, nil
}

// readBundle returns the entries of C2SP bundle n of a tree of size.
func readBundle(ctx context.Context, src Source, size, n int64) ([][]byte, error) {
	w := int(min(c2sp.TileWidth, size-n*c2sp.TileWidth))
	t := c2sp.Tile{Level: c2sp.EntriesLevel, N: n, Width: w}
	b, err := src.ReadTile(ctx, t)
	if err != nil {
		return nil, err
	}
	es, _, err := c2sp.ParseBundle(b)
	if err != nil || len(es) != w {
		return nil, fmt.Errorf("%s: %s holds %d whole entries, want %d", src, t.Path(), len(es), w)
	}
	return es, nil
}

// fetchOrdered calls fetch for first..last, up to par at once, and use on
// the results in order.
func fetchOrdered[T any](ctx context.Context, first, last int64, par int, fetch func(context.Context, int64) (T, error), use func(T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	futures := make(chan chan result, par)
	go func() {
		defer close(futures)
		for n := first; n <= last; n++ {
			f := make(chan result, 1)
			select {
			case futures <- f:
			case <-ctx.Done():
				return
			}
			go func() {
				v, err := fetch(ctx, n)
				f <- result{v, err}
			}()
		}
	}()
	for f := range futures {
		r := <-f
		if r.err != nil {
			return r.err
		}
		if err := use(r.v); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// DefaultSlack is the default of ExportOptions.Slack.
const DefaultSlack = time.Minute

// FindRange returns the first and last index of the entries received in
// [since, until) among the first size entries of src; a zero since or
// until leaves that end open.
//
// The log is in append order and the server stamps each envelope's
// received time just before the append, so received times rise with the
// index except among appends that were in flight together, or across a
// step of the server's clock. FindRange assumes that no entry was received
// more than slack after a later one: it binary-searches the entry bundles
// by the received time of their first entry, then scans the entries within
// slack of each end. The range is contiguous: entries inside it whose
// received time strays outside [since, until) by less than slack are in
// it. Entries that are not trail envelopes (no received time) are ignored
// by the search but included in a range around them.
func FindRange(ctx context.Context, src Source, size int64, since, until time.Time, slack time.Duration) (from, to int64, err error) {
	if slack <= 0 {
		slack = DefaultSlack
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return 0, 0, fmt.Errorf("%w: since %s is not before until %s", ErrRange, since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	bundles := (size + c2sp.TileWidth - 1) / c2sp.TileWidth
	cache := map[int64][][]byte{}
	read := func(n int64) ([][]byte, error) {
		if es, ok := cache[n]; ok {
			return es, nil
		}
		es, err := readBundle(ctx, src, size, n)
		if err == nil && len(cache) < 64 {
			cache[n] = es
		}
		return es, err
	}
	// firstAtLeast returns the first bundle whose first timed entry was
	// received at or after t, or bundles if none.
	firstAtLeast := func(t time.Time) (int64, error) {
		lo, hi := int64(0), bundles
		for lo < hi {
			mid := lo + (hi-lo)/2
			es, err := read(mid)
			if err != nil {
				return 0, err
			}
			var first time.Time
			for _, e := range es {
				if first = Received(e); !first.IsZero() {
					break
				}
			}
			if !first.IsZero() && !first.Before(t) {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		return lo, nil
	}
	// scan calls fn for the timed entries of bundles a..b until it
	// returns false.
	scan := func(a, b int64, fn func(i int64, t time.Time) bool) error {
		for n := max(a, 0); n <= min(b, bundles-1); n++ {
			es, err := read(n)
			if err != nil {
				return err
			}
			for j, e := range es {
				if t := Received(e); !t.IsZero() && !fn(n*c2sp.TileWidth+int64(j), t) {
					return nil
				}
			}
		}
		return nil
	}

	from, to = 0, size-1
	if !since.IsZero() {
		b, err := firstAtLeast(since.Add(-slack))
		if err != nil {
			return 0, 0, err
		}
		from = -1
		if err := scan(b-1, bundles-1, func(i int64, t time.Time) bool {
			if !t.Before(since) {
				from = i
				return false
			}
			return true
		}); err != nil {
			return 0, 0, err
		}
		if from < 0 {
			return 0, 0, fmt.Errorf("%w: no entry was received at or after %s (the newest checkpoint holds %d entries)", ErrRange, since.Format(time.RFC3339Nano), size)
		}
	}
	if !until.IsZero() {
		a, err := firstAtLeast(until.Add(-slack))
		if err != nil {
			return 0, 0, err
		}
		b, err := firstAtLeast(until.Add(slack))
		if err != nil {
			return 0, 0, err
		}
		a = max(a-1, from/c2sp.TileWidth)
		to = a*c2sp.TileWidth - 1
		if err := scan(a, b, func(i int64, t time.Time) bool {
			if t.Before(until) {
				to = i
			}
			return true
		}); err != nil {
			return 0, 0, err
		}
	}
	if to < from {
		return 0, 0, fmt.Errorf("%w: no entry was received between %s and %s", ErrRange, fmtTime(since), fmtTime(until))
	}
	return from, to, nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "the start"
	}
	return t.UTC().Format(time.RFC3339Nano)
}
