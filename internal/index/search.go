package index

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/storage"
)

// textTerm is one term of a free-text query: words next to each other,
// the last a prefix if prefix is set.
type textTerm struct {
	words  []string
	prefix bool
}

// textPlan is a TextQuery's terms: an AND of ORs, and NOTs.
type textPlan struct {
	groups [][]textTerm
	not    []textTerm
	// verify is set when a term has more than one word: the postings find
	// entries with the words, the entry itself tells if they are adjacent.
	verify bool
}

// planText reads the terms of tq back from its FTS5 rendering, whose
// shape client.TextQuery.FTS5 fixes: ((t OR t) AND (t)) NOT (t OR t),
// each t a quoted run of words separated by single spaces (words hold no
// spaces, quotes or parentheses), followed by " *" for a prefix.
func planText(tq *client.TextQuery) (*textPlan, error) {
	s := tq.FTS5()
	bad := func() (*textPlan, error) { return nil, fmt.Errorf("index: unexpected text query rendering %q", s) }
	p := &textPlan{}
	term := func() (textTerm, bool) {
		if !strings.HasPrefix(s, `"`) {
			return textTerm{}, false
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return textTerm{}, false
		}
		t := textTerm{words: strings.Split(s[1:1+end], " ")}
		s = s[end+2:]
		if rest, ok := strings.CutPrefix(s, " *"); ok {
			t.prefix, s = true, rest
		}
		for _, w := range t.words {
			if w == "" {
				return textTerm{}, false
			}
		}
		if len(t.words) > 1 {
			p.verify = true
		}
		return t, true
	}
	terms := func() ([]textTerm, bool) {
		var ts []textTerm
		for {
			t, ok := term()
			if !ok {
				return nil, false
			}
			ts = append(ts, t)
			var more bool
			if s, more = strings.CutPrefix(s, " OR "); !more {
				return ts, true
			}
		}
	}
	var ok bool
	if s, ok = strings.CutPrefix(s, "("); !ok {
		return bad()
	}
	for {
		if s, ok = strings.CutPrefix(s, "("); !ok {
			return bad()
		}
		g, ok := terms()
		if !ok {
			return bad()
		}
		p.groups = append(p.groups, g)
		if s, ok = strings.CutPrefix(s, ")"); !ok {
			return bad()
		}
		if s, ok = strings.CutPrefix(s, " AND "); !ok {
			break
		}
	}
	if s, ok = strings.CutPrefix(s, ")"); !ok {
		return bad()
	}
	if s, ok = strings.CutPrefix(s, " NOT ("); ok {
		if p.not, ok = terms(); !ok {
			return bad()
		}
		if s, ok = strings.CutPrefix(s, ")"); !ok {
			return bad()
		}
	}
	if s != "" || len(p.groups) == 0 {
		return bad()
	}
	return p, nil
}

// times are a query's time bounds as Unix nanoseconds, each range [lo, hi)
// where set.
type times struct {
	any                    bool
	tLo, tHi, rLo, rHi     int64
	hasTLo, hasTHi, hasRLo bool
	hasRHi                 bool
}

func timesOf(q *Query) times {
	var t times
	if t.hasTLo = !q.Since.IsZero(); t.hasTLo {
		t.tLo = nanos(q.Since)
	}
	if !q.Until.IsZero() {
		t.tHi, t.hasTHi = nanosUntil(q.Until)
	}
	if t.hasRLo = !q.ReceivedSince.IsZero(); t.hasRLo {
		t.rLo = nanos(q.ReceivedSince)
	}
	if !q.ReceivedUntil.IsZero() {
		t.rHi, t.hasRHi = nanosUntil(q.ReceivedUntil)
	}
	// An until that bounds nothing in nanoseconds still bounds the
	// saturated times, which only the entry tells.
	t.any = !q.Since.IsZero() || !q.Until.IsZero() || !q.ReceivedSince.IsZero() || !q.ReceivedUntil.IsZero()
	return t
}

// holds reports whether an event time t and received time r satisfy the
// bounds.
func (b *times) holds(t, r int64) bool {
	return (!b.hasTLo || t >= b.tLo) && (!b.hasTHi || t < b.tHi) && (!b.hasRLo || r >= b.rLo) && (!b.hasRHi || r < b.rHi)
}

// overlaps reports whether entries with event times in [minT, maxT] and
// received times in [minR, maxR] may satisfy the bounds; false if there
// are none (minT > maxT).
func (b *times) overlaps(minT, maxT, minR, maxR int64) bool {
	return minT <= maxT && (!b.hasTLo || maxT >= b.tLo) && (!b.hasTHi || minT < b.tHi) &&
		(!b.hasRLo || maxR >= b.rLo) && (!b.hasRHi || minR < b.rHi)
}

// plan is a search's conditions on one segment.
type plan struct {
	s     *segment
	top   iter // nil: every entry
	nots  []iter
	empty bool // nothing in the segment can match
}

// maxUnion is the most terms a prefix expands to that are read as they
// are; more are decoded into a bitmap of the segment.
const maxUnion = 16

func planSegment(s *segment, q *Query, tp *textPlan, desc bool, errp *error) (*plan, error) {
	p := &plan{s: s}
	var must []iter
	term := make([]byte, 0, 64)
	exact := func(code byte, v string) (iter, error) {
		term = append(append(term[:0], code), v...)
		rec, ok, err := s.find(term)
		if err != nil || !ok {
			return nil, err
		}
		return newPostIter(rec, s.n, desc, errp), nil
	}
	prefix := func(w string) (iter, error) {
		term = append(append(term[:0], fieldWord), w...)
		var recs []termRec
		total := 0
		err := s.prefix(term, func(r termRec) error {
			r.term = nil
			recs = append(recs, r)
			total += r.count
			return nil
		})
		if err != nil || len(recs) == 0 {
			return nil, err
		}
		if len(recs) <= maxUnion {
			its := make([]iter, len(recs))
			for i, r := range recs {
				its[i] = newPostIter(r, s.n, desc, errp)
			}
			if len(its) == 1 {
				return its[0], nil
			}
			return &unionIter{desc: desc, its: its}, nil
		}
		b := &bitsIter{desc: desc, words: make([]uint64, (s.n+63)/64)}
		var ids []uint32
		for _, r := range recs {
			if ids, err = decodePostings(ids[:0], r.postings, r.count, s.n); err != nil {
				return nil, err
			}
			for _, id := range ids {
				if b.words[id/64]&(1<<(id%64)) == 0 {
					b.words[id/64] |= 1 << (id % 64)
					b.count++
				}
			}
		}
		return b, nil
	}
	textIter := func(t textTerm) (iter, error) {
		its := make([]iter, 0, len(t.words))
		for i, w := range t.words {
			var it iter
			var err error
			if t.prefix && i == len(t.words)-1 {
				it, err = prefix(w)
			} else {
				it, err = exact(fieldWord, w)
			}
			if err != nil || it == nil {
				return nil, err
			}
			its = append(its, it)
		}
		return newAndIter(its), nil
	}
	for _, f := range []struct {
		code byte
		v    string
	}{
		{fieldActor, q.Actor}, {fieldAction, q.Action}, {fieldRType, q.ResourceType}, {fieldRID, q.ResourceID},
		{fieldOutcome, q.Outcome}, {fieldSource, q.Source}, {fieldVia, q.Via},
	} {
		if f.v == "" {
			continue
		}
		it, err := exact(f.code, f.v)
		if err != nil {
			return nil, err
		}
		if it == nil {
			p.empty = true
			return p, nil
		}
		must = append(must, it)
	}
	if tp != nil {
		for _, g := range tp.groups {
			var any []iter
			for _, t := range g {
				it, err := textIter(t)
				if err != nil {
					return nil, err
				}
				if it != nil {
					any = append(any, it)
				}
			}
			switch len(any) {
			case 0:
				p.empty = true
				return p, nil
			case 1:
				must = append(must, any[0])
			default:
				must = append(must, &unionIter{desc: desc, its: any})
			}
		}
		for _, t := range tp.not {
			if len(t.words) > 1 {
				continue // the entry's own check decides
			}
			it, err := textIter(t)
			if err != nil {
				return nil, err
			}
			if it != nil {
				p.nots = append(p.nots, it)
			}
		}
	}
	if len(must) > 0 {
		p.top = newAndIter(must)
	}
	return p, nil
}

// Search returns the indices of up to q.Limit entries below bound that
// satisfy q, in q's order after its cursor, and whether there are more.
// Entries not indexed yet are not searched.
func (ix *Index) Search(ctx context.Context, q *Query, bound int64) ([]int64, bool, error) {
	v := ix.acquire()
	defer ix.releaseView(v)
	bound = min(bound, v.next)
	desc := q.newest()
	lo, hi := int64(0), bound // the entries [lo, hi) are searched
	if q.After >= 0 {
		if desc {
			hi = min(hi, q.After)
		} else {
			lo = max(lo, min(q.After, math.MaxInt64-1)+1)
		}
	}
	want := q.Limit + 1
	out := make([]int64, 0, min(want, 1024))
	if !q.filtered() {
		// Every entry matches a search without filters, envelope or not.
		for len(out) < want && lo < hi {
			if desc {
				hi--
				out = append(out, hi)
			} else {
				out = append(out, lo)
				lo++
			}
		}
		return page(out, q.Limit)
	}
	var tp *textPlan
	if q.Text != nil {
		var err error
		if tp, err = planText(q.Text); err != nil {
			return nil, false, err
		}
	}
	tb := timesOf(q)
	var pending []int64
	verify := func() error {
		ok, err := ix.verify(ctx, pending, q)
		if err != nil {
			return err
		}
		for i, idx := range pending {
			if ok[i] && len(out) < want {
				out = append(out, idx)
			}
		}
		pending = pending[:0]
		return nil
	}
	// emit takes the entries that satisfy q as far as the index tells;
	// those it cannot tell of (exact false) are read and checked.
	emit := func(idx int64, exact bool) (bool, error) {
		if (tp == nil || !tp.verify) && exact {
			out = append(out, idx)
			return len(out) < want, nil
		}
		pending = append(pending, idx)
		if !exact && (tp == nil || !tp.verify) || len(pending) >= max(16, want-len(out)) {
			if err := verify(); err != nil {
				return false, err
			}
		}
		return len(out) < want, nil
	}
	segs := v.segs
	for k := range segs {
		s := segs[k]
		if desc {
			s = segs[len(segs)-1-k]
		}
		if s.end() <= lo || s.base >= hi || tb.any && !tb.overlaps(s.minT, s.maxT, s.minR, s.maxR) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		var errp error
		p, err := planSegment(s, q, tp, desc, &errp)
		if err != nil {
			return nil, false, ix.segmentError(s, err)
		}
		if p.empty {
			continue
		}
		more, err := p.run(int(max(lo-s.base, 0)), int(min(hi-s.base, int64(s.n))), desc, &tb, emit)
		if err == nil {
			err = errp
		}
		if err != nil {
			if errors.Is(err, errCorrupt) {
				err = ix.segmentError(s, err)
			}
			return nil, false, err
		}
		if !more {
			break
		}
	}
	if len(pending) > 0 && len(out) < want {
		if err := verify(); err != nil {
			return nil, false, err
		}
	}
	return page(out, q.Limit)
}

// filtered reports whether q has a filter or text: entries that are not
// event envelopes match only searches without.
func (q *Query) filtered() bool {
	return q.Actor != "" || q.Action != "" || q.ResourceType != "" || q.ResourceID != "" || q.Outcome != "" ||
		q.Source != "" || q.Via != "" || !q.Since.IsZero() || !q.Until.IsZero() || !q.ReceivedSince.IsZero() ||
		!q.ReceivedUntil.IsZero() || q.Text != nil
}

func page(out []int64, limit int) ([]int64, bool, error) {
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// segmentError reports a damaged segment: searches fail until the index
// is rebuilt (at the next start, which checks every segment's checksum).
func (ix *Index) segmentError(s *segment, err error) error {
	ix.log.Error("search index: a segment is damaged; delete the index directory with the server stopped to rebuild it", "segment", s.name, "err", err)
	return fmt.Errorf("search index segment %s: %w", s.name, err)
}

// run calls emit with the entries of [lo, hi) of the segment that satisfy
// the plan, in order, until emit returns false; it returns false then.
func (p *plan) run(lo, hi int, desc bool, tb *times, emit func(idx int64, exact bool) (bool, error)) (bool, error) {
	s := p.s
	if lo >= hi {
		return true, nil
	}
	check := func(i int) bool {
		if s.flag(i)&flagEnvelope == 0 {
			return false
		}
		if tb.any && !tb.holds(s.time(i), s.recv(i)) {
			return false
		}
		for _, n := range p.nots {
			if v, ok := n.seek(i); ok && v == i {
				return false
			}
		}
		return true
	}
	x := lo
	if desc {
		x = hi - 1
	}
	checked := -1 // the block of entries whose time bounds were checked
	for lo <= x && x < hi {
		i := x
		if p.top != nil {
			v, ok := p.top.seek(x)
			if !ok || v < lo || v >= hi {
				return true, nil
			}
			i = v
		} else if b := i / blockEntries; tb.any && b != checked {
			// Skip a block of entries none of which is in the time range.
			if minT, maxT, minR, maxR := s.block(b); !tb.overlaps(minT, maxT, minR, maxR) {
				if desc {
					x = b*blockEntries - 1
				} else {
					x = (b + 1) * blockEntries
				}
				continue
			}
			checked = b
		}
		if check(i) {
			// A time nanos saturated is outside the years it reaches:
			// only the entry tells whether it is within the bounds.
			exact := !tb.any || !saturated(s.time(i)) && !saturated(s.recv(i))
			more, err := emit(s.base+int64(i), exact)
			if err != nil || !more {
				return false, err
			}
		}
		if desc {
			x = i - 1
		} else {
			x = i + 1
		}
	}
	return true, nil
}

// verify reports which of the entries idxs (in search order) satisfy q,
// read from the log: the postings of a phrase's words tell which entries
// hold them, not whether next to each other, and a saturated time does
// not tell where it lies.
func (ix *Index) verify(ctx context.Context, idxs []int64, q *Query) ([]bool, error) {
	ok := make([]bool, len(idxs))
	src := ix.opts.Source
	for i := 0; i < len(idxs); {
		// The entries of one bundle are read together.
		j := i + 1
		lo, hi := idxs[i], idxs[i]
		for j < len(idxs) && idxs[j]/bundleSize == idxs[i]/bundleSize {
			lo, hi = min(lo, idxs[j]), max(hi, idxs[j])
			j++
		}
		leaves, err := src.ReadEntries(ctx, lo, hi+1)
		if err != nil {
			return nil, fmt.Errorf("couldn't read entries to check a phrase: %w", err)
		}
		for k := i; k < j; k++ {
			body, err := src.Body(ctx, leaves[idxs[k]-lo])
			if err != nil {
				if _, corrupt := errors.AsType[*storage.CorruptionError](err); !corrupt && !errors.Is(err, storage.ErrNotFound) {
					return nil, fmt.Errorf("couldn't read entry %d: %w", idxs[k], err)
				}
			}
			doc, err := client.DocOf(body)
			ok[k] = err == nil && q.SearchQuery.Mismatch(&doc, q.Text) == ""
		}
		i = j
	}
	return ok, nil
}

// saturated reports whether nanos saturated the time n.
func saturated(n int64) bool { return n == math.MinInt64 || n == math.MaxInt64 }

// nanosUntil returns an exclusive upper bound u as Unix nanoseconds, and
// false if it bounds nothing: where nanos saturates, the times before u
// saturate to the same value, so that value must pass.
func nanosUntil(u time.Time) (int64, bool) {
	switch n := nanos(u); n {
	case math.MaxInt64:
		return 0, false
	case math.MinInt64:
		return n + 1, true
	default:
		return n, true
	}
}

// nanos returns t as Unix nanoseconds, saturated outside the years 1678 to
// 2261 that int64 nanoseconds reach. The year is UTC's, so that the
// function grows with the instant whatever t's zone.
func nanos(t time.Time) int64 {
	switch y := t.UTC().Year(); {
	case y < 1678:
		return math.MinInt64
	case y > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}
