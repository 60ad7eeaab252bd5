package index

import (
	"encoding/binary"
	"math/bits"
	"slices"
	"sort"
)

// iter yields entries of one segment (relative to its base) in a search's
// direction. Seeks go one way only: each target is at or past the last.
type iter interface {
	// seek returns the first entry at or past t in the direction (>= t
	// ascending, <= t descending), or false if there is none.
	seek(t int) (int, bool)
	// cost is about how many entries the iterator may yield.
	cost() int
}

// postIter reads a postings list a block at a time.
type postIter struct {
	desc  bool
	count int
	n     int
	nb    int
	skip  []byte
	data  []byte
	buf   []uint32
	blk   int
	cur   int
	have  bool
	done  bool
	err   *error
}

func newPostIter(rec termRec, n int, desc bool, err *error) *postIter {
	it := &postIter{desc: desc, count: rec.count, n: n, blk: -1, err: err}
	if rec.count <= postBlock {
		it.nb, it.data = 1, rec.postings
		return it
	}
	it.nb = (rec.count + postBlock - 1) / postBlock
	if len(rec.postings) < 8*it.nb {
		it.fail(corrupt("postings: no skip table"))
		return it
	}
	it.skip, it.data = rec.postings[:8*it.nb], rec.postings[8*it.nb:]
	return it
}

func (it *postIter) cost() int { return it.count }

func (it *postIter) fail(err error) {
	it.done = true
	if *it.err == nil {
		*it.err = err
	}
}

func (it *postIter) last(k int) int { return int(binary.LittleEndian.Uint32(it.skip[8*k:])) }

// decode decodes block k into buf.
func (it *postIter) decode(k int) bool {
	if it.blk == k {
		return true
	}
	var err error
	if it.skip == nil {
		it.buf, err = decodeDeltas(it.buf[:0], it.data, it.count, 0, true, it.n)
	} else {
		start, end := 0, int(binary.LittleEndian.Uint32(it.skip[8*k+4:]))
		prev := uint32(0)
		if k > 0 {
			start, prev = int(binary.LittleEndian.Uint32(it.skip[8*k-4:])), uint32(it.last(k-1))
		}
		if start > end || end > len(it.data) {
			err = corrupt("postings block %d at [%d, %d)", k, start, end)
		} else {
			it.buf, err = decodeDeltas(it.buf[:0], it.data[start:end], min(postBlock, it.count-k*postBlock), prev, k == 0, it.n)
			if err == nil && int(it.buf[len(it.buf)-1]) != it.last(k) {
				err = corrupt("postings block %d does not end at its skip entry", k)
			}
		}
	}
	if err != nil {
		it.fail(err)
		return false
	}
	it.blk = k
	return true
}

func (it *postIter) seek(t int) (int, bool) {
	if it.done {
		return 0, false
	}
	if it.have && (it.desc && it.cur <= t || !it.desc && it.cur >= t) {
		return it.cur, true
	}
	v, ok := it.find(t)
	if !ok {
		it.done = true
		return 0, false
	}
	it.cur, it.have = v, true
	return v, true
}

func (it *postIter) find(t int) (int, bool) {
	k := 0
	if it.skip != nil {
		k = sort.Search(it.nb, func(k int) bool { return it.last(k) >= t })
		if k == it.nb {
			if it.desc {
				return it.last(it.nb - 1), true
			}
			return 0, false
		}
	}
	if !it.decode(k) {
		return 0, false
	}
	i := sort.Search(len(it.buf), func(i int) bool { return int(it.buf[i]) >= t })
	if !it.desc {
		if i == len(it.buf) {
			return 0, false
		}
		return int(it.buf[i]), true
	}
	if i < len(it.buf) && int(it.buf[i]) == t {
		return t, true
	}
	if i > 0 {
		return int(it.buf[i-1]), true
	}
	if k > 0 {
		return it.last(k - 1), true
	}
	return 0, false
}

// bitsIter yields the set bits of a bitmap of a segment's entries.
type bitsIter struct {
	desc  bool
	words []uint64
	count int
}

func (it *bitsIter) cost() int { return it.count }

func (it *bitsIter) seek(t int) (int, bool) {
	if t < 0 || t >= 64*len(it.words) {
		if it.desc && t >= 64*len(it.words) && len(it.words) > 0 {
			t = 64*len(it.words) - 1
		} else {
			return 0, false
		}
	}
	w := t / 64
	if !it.desc {
		m := it.words[w] >> (t % 64)
		if m != 0 {
			return t + bits.TrailingZeros64(m), true
		}
		for w++; w < len(it.words); w++ {
			if it.words[w] != 0 {
				return 64*w + bits.TrailingZeros64(it.words[w]), true
			}
		}
		return 0, false
	}
	m := it.words[w] << (63 - t%64)
	if m != 0 {
		return t - bits.LeadingZeros64(m), true
	}
	for w--; w >= 0; w-- {
		if it.words[w] != 0 {
			return 64*w + 63 - bits.LeadingZeros64(it.words[w]), true
		}
	}
	return 0, false
}

// unionIter yields the entries of any of its iterators.
type unionIter struct {
	desc bool
	its  []iter
}

func (u *unionIter) cost() int {
	c := 0
	for _, it := range u.its {
		c += it.cost()
	}
	return c
}

func (u *unionIter) seek(t int) (int, bool) {
	best, found := 0, false
	for _, it := range u.its {
		v, ok := it.seek(t)
		if ok && (!found || u.desc && v > best || !u.desc && v < best) {
			best, found = v, true
		}
	}
	return best, found
}

// andIter yields the entries of all its iterators, cheapest first.
type andIter struct {
	its []iter
}

func newAndIter(its []iter) iter {
	if len(its) == 1 {
		return its[0]
	}
	slices.SortFunc(its, func(a, b iter) int { return a.cost() - b.cost() })
	return &andIter{its: its}
}

func (a *andIter) cost() int { return a.its[0].cost() }

func (a *andIter) seek(t int) (int, bool) {
	x, agreed := t, 0
	for i := 0; agreed < len(a.its); i = (i + 1) % len(a.its) {
		v, ok := a.its[i].seek(x)
		if !ok {
			return 0, false
		}
		if v == x {
			agreed++
		} else {
			x, agreed = v, 1
		}
	}
	return x, true
}
