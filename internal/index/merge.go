package index

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/trailaudit/trail/internal/durable"
)

// Tuning of flushes and merges (fields of Index, so tests can shrink them).
const (
	// defaultFlushEntries in memory are written to a segment file.
	defaultFlushEntries = 1 << 18
	// defaultQuiet without new entries flushes what is in memory.
	defaultQuiet = time.Second
	// defaultMergeFactor adjacent segment files are merged into one...
	defaultMergeFactor = 8
	// ...of at most defaultMaxSegment entries.
	defaultMaxSegment = 1 << 22
)

// mergeSegments writes one segment of the entries of inputs, adjacent
// segments in order.
func mergeSegments(ctx context.Context, inputs []*segment, w io.Writer) error {
	base, n := inputs[0].base, 0
	parts := make([]colParts, len(inputs))
	for i, s := range inputs {
		if s.base != base+int64(n) {
			return fmt.Errorf("index: merging segments that are not adjacent: %d after %d", s.base, base+int64(n))
		}
		n += s.n
		parts[i] = s.cols()
	}
	sw := newSegWriter(w, base, n)
	sw.columns(parts)
	// A k-way merge of the dictionaries: a heap of cursors by term, ties
	// by input so that a term's entries come out ascending.
	cs := make([]*cursor, 0, len(inputs))
	for _, s := range inputs {
		c := s.cursorAt(0)
		if c.next() {
			cs = append(cs, c)
		} else if c.err != nil {
			return c.err
		}
	}
	h := mergeHeap(cs)
	h.init()
	var ids []uint32
	term := make([]byte, 0, 64)
	for terms := 0; len(h) > 0; terms++ {
		if terms%8192 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		term = append(term[:0], h[0].rec.term...)
		ids = ids[:0]
		for len(h) > 0 && bytes.Equal(h[0].rec.term, term) {
			c := h[0]
			start := len(ids)
			var err error
			if ids, err = decodePostings(ids, c.rec.postings, c.rec.count, c.s.n); err != nil {
				return err
			}
			if len(ids)-start != c.rec.count {
				return corrupt("postings of %q hold %d entries, not %d", term, len(ids)-start, c.rec.count)
			}
			shift := uint32(c.s.base - base)
			for k := start; k < len(ids); k++ {
				ids[k] += shift
			}
			if c.next() {
				h.fix()
			} else {
				if c.err != nil {
					return c.err
				}
				h.pop()
			}
		}
		sw.term(term, ids)
	}
	return sw.finish()
}

// mergeHeap is a min-heap of cursors by term, then segment base.
type mergeHeap []*cursor

func (h mergeHeap) less(i, j int) bool {
	if h[i].pre != h[j].pre {
		return h[i].pre < h[j].pre
	}
	if c := bytes.Compare(h[i].rec.term, h[j].rec.term); c != 0 {
		return c < 0
	}
	return h[i].s.base < h[j].s.base
}

func (h mergeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h mergeHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// fix restores the heap after the top cursor moved.
func (h mergeHeap) fix() { h.down(0) }

func (h *mergeHeap) pop() {
	old := *h
	old[0] = old[len(old)-1]
	*h = old[:len(old)-1]
	h.down(0)
}

// segName names the segment file of entries [base, end).
func segName(base, end int64) string { return fmt.Sprintf("%016x-%016x.seg", base, end) }

// writeSegment merges inputs into a new segment file, synced and named,
// and opens it.
func (ix *Index) writeSegment(ctx context.Context, inputs []*segment) (*segment, error) {
	name := segName(inputs[0].base, inputs[len(inputs)-1].end())
	f, err := os.CreateTemp(ix.dir, ".tmp-*.seg") // 0600
	if err != nil {
		return nil, fmt.Errorf("couldn't write an index segment: %w", err)
	}
	tmp := f.Name()
	err = mergeSegments(ctx, inputs, f)
	if err == nil {
		err = durable.Datasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	path := filepath.Join(ix.dir, name)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = durable.SyncDir(ix.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("couldn't write index segment %s: %w", name, err)
	}
	s, err := openSegmentFile(path, false)
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return s, nil
}

// flush writes the segments in memory to one segment file and records it
// in the manifest: the entries it holds are then durable.
func (ix *Index) flush(ctx context.Context) error {
	ix.flushMu.Lock()
	defer ix.flushMu.Unlock()
	ix.viewMu.RLock()
	v := ix.view
	ix.viewMu.RUnlock()
	mem := v.segs[v.disk:]
	if len(mem) == 0 {
		return nil
	}
	s, err := ix.writeSegment(ctx, mem)
	if err != nil {
		return err
	}
	ix.manifestMu.Lock()
	defer ix.manifestMu.Unlock()
	ix.viewMu.RLock()
	cur := ix.view
	ix.viewMu.RUnlock()
	disk := append(slices.Clone(cur.segs[:cur.disk]), s)
	if err := ix.writeManifest(disk); err != nil {
		s.obsolete.Store(true)
		s.release()
		return err
	}
	ix.viewMu.Lock()
	cur = ix.view
	ix.view = &view{segs: append(disk, cur.segs[cur.disk+len(mem):]...), disk: len(disk), next: cur.next}
	ix.viewMu.Unlock()
	ix.flushedMu.Lock()
	close(ix.flushed)
	ix.flushed = make(chan struct{})
	ix.flushedMu.Unlock()
	select {
	case ix.mergeKick <- struct{}{}:
	default:
	}
	return nil
}

// pickMerge returns the adjacent segment files disk[i:j] to merge next, or
// j == 0: the cheapest run of mergeFactor whose total fits maxSegment and
// whose largest is at most half of it, so that every merge at least
// doubles what an entry's segment holds.
func (ix *Index) pickMerge(disk []*segment) (int, int) {
	k := ix.mergeFactor
	bi, best := 0, -1
	for i := 0; i+k <= len(disk); i++ {
		total, largest := 0, 0
		for _, s := range disk[i : i+k] {
			total += s.n
			largest = max(largest, s.n)
		}
		if total <= ix.maxSegment && 2*largest <= total && (best < 0 || total < best) {
			bi, best = i, total
		}
	}
	if best < 0 {
		return 0, 0
	}
	return bi, bi + k
}

// mergeOnce merges one run of segment files, if there is one to merge; it
// reports whether it did.
func (ix *Index) mergeOnce(ctx context.Context) (bool, error) {
	v := ix.acquire()
	defer ix.releaseView(v)
	i, j := ix.pickMerge(v.segs[:v.disk])
	if j == 0 {
		return false, nil
	}
	inputs := v.segs[i:j]
	s, err := ix.writeSegment(ctx, inputs)
	if err != nil {
		return false, err
	}
	ix.manifestMu.Lock()
	defer ix.manifestMu.Unlock()
	ix.viewMu.RLock()
	cur := ix.view
	ix.viewMu.RUnlock()
	at := slices.Index(cur.segs[:cur.disk], inputs[0])
	if at < 0 || at+len(inputs) > cur.disk || !slices.Equal(cur.segs[at:at+len(inputs)], inputs) {
		s.obsolete.Store(true)
		s.release()
		return false, errors.New("index: the segments merged changed meanwhile")
	}
	disk := slices.Concat(cur.segs[:at], []*segment{s}, cur.segs[at+len(inputs):cur.disk])
	if ix.beforeMergeManifest != nil {
		if err := ix.beforeMergeManifest(); err != nil {
			s.obsolete.Store(true)
			s.release()
			return false, err
		}
	}
	if err := ix.writeManifest(disk); err != nil {
		s.obsolete.Store(true)
		s.release()
		return false, err
	}
	ix.viewMu.Lock()
	cur = ix.view
	ix.view = &view{segs: append(disk, cur.segs[cur.disk:]...), disk: len(disk), next: cur.next}
	ix.viewMu.Unlock()
	for _, in := range inputs {
		in.obsolete.Store(true)
		in.release() // the view's reference; searches may hold theirs
	}
	return true, nil
}

// flusher writes what is in memory to a segment file once there is
// flushEntries of it, or after a quiet second.
func (ix *Index) flusher(ctx context.Context) {
	defer ix.bg.Done()
	tick := time.NewTicker(ix.quiet / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ix.flushKick:
		case <-tick.C:
		}
		ix.viewMu.RLock()
		v := ix.view
		ix.viewMu.RUnlock()
		mem := v.next - v.durable()
		if mem == 0 || mem < int64(ix.flushEntries) && time.Since(time.Unix(0, ix.lastAdd.Load())) < ix.quiet {
			continue
		}
		if err := ix.flush(ctx); err != nil && ctx.Err() == nil {
			ix.log.Error("couldn't write the search index's new entries to disk; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// merger merges segment files in the background.
func (ix *Index) merger(ctx context.Context) {
	defer ix.bg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ix.mergeKick:
		}
		for ctx.Err() == nil && !ix.noMerge.Load() {
			did, err := ix.mergeOnce(ctx)
			if err != nil && ctx.Err() == nil {
				ix.log.Error("couldn't merge search index segments; retrying later", "err", err)
				break
			}
			if !did {
				break
			}
		}
	}
}
