package index

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sort"
	"sync/atomic"
)

// A segment indexes a contiguous range of entries [base, base+n). It is
// immutable: written once, in memory (a batch just indexed) or to a file
// (flushed or merged), and read in place (a file is mapped).
//
// Layout, little-endian:
//
//	header   "trailix1" | base u64 | n u64 | zero u64                  32 bytes
//	columns  time [n]i64 | received [n]i64 | offset [n]u32 | length [n]u16 | flags [n]u8
//	blocks   per blockEntries entries: min/max time, min/max received  32 bytes each
//	terms    records in byte order of the term, dictBlockTerms to a block:
//	         uvarint shared | uvarint len(suffix) | suffix | uvarint count | uvarint len(postings) | postings
//	dict     the file offset of each block of terms                   u64 each
//	footer   terms offset u64 | dict offset u64 | terms u64 | blocks u64 | crc32c u32 | zero u32 | "trailend"
//
// The first record of a block shares nothing with the one before, so a
// binary search over the blocks' first terms finds a term's block.
//
// Postings are the entries (relative to base, ascending) that hold the
// term. Up to postBlock of them: uvarint deltas (the first from 0). More:
// a skip table of (last entry u32, end offset u32) per block of postBlock
// entries, then the blocks of deltas, each continuing from the last entry
// of the block before, so that a block decodes alone in either direction.
//
// A term is a field code and a value: fieldActor... for the filters,
// fieldWord for each distinct word of the entry's text (client.SearchDoc).
const (
	segMagic       = "trailix1"
	footMagic      = "trailend"
	headerSize     = 32
	footerSize     = 48
	blockEntries   = 1024
	dictBlockTerms = 32
	postBlock      = 128
	// bytesPerEntry are the columns' bytes per entry.
	bytesPerEntry = 8 + 8 + 4 + 2 + 1
)

// Field codes: the first byte of a term.
const (
	fieldActor byte = '0' + iota
	fieldAction
	fieldRType
	fieldRID
	fieldOutcome
	fieldSource
	fieldVia
	fieldWord
	numFields = iota
)

// flagEnvelope marks an entry that is an event envelope (client.DocOf
// succeeds): only those match a search with a filter or text.
const flagEnvelope = 1

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt is wrapped by every error about a segment's bytes.
var errCorrupt = errors.New("corrupt index segment")

func corrupt(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errCorrupt, fmt.Sprintf(format, a...))
}

// segment is an open segment. Its methods never panic on bad bytes: they
// return errors wrapping errCorrupt.
type segment struct {
	data []byte
	base int64
	n    int

	times, recvs, offs, lens, flags, blocks []byte
	terms                                   []byte
	termsOff                                int
	dict                                    []byte
	nterms, nblocks                         int
	minT, maxT, minR, maxR                  int64

	// A segment file: its name in the index directory, how to unmap it,
	// and its references (the view's and searches'); at zero it is
	// unmapped, and removed if obsolete.
	name     string
	path     string
	unmap    func() error
	refs     atomic.Int64
	obsolete atomic.Bool
}

func (s *segment) end() int64 { return s.base + int64(s.n) }

func (s *segment) acquire() {
	if s.unmap != nil {
		s.refs.Add(1)
	}
}

// release drops a reference: the last one unmaps the file, and removes it
// if a merge replaced it.
func (s *segment) release() error {
	if s.unmap == nil || s.refs.Add(-1) != 0 {
		return nil
	}
	err := s.unmap()
	if s.obsolete.Load() {
		err = errors.Join(err, removeIfExists(s.path))
	}
	return err
}

// parseSegment reads a segment's structure from b; with verify it checks
// the checksum of the whole.
func parseSegment(b []byte, verify bool) (*segment, error) {
	if len(b) < headerSize+footerSize {
		return nil, corrupt("%d bytes, shorter than a header and footer", len(b))
	}
	if string(b[:8]) != segMagic || string(b[len(b)-8:]) != footMagic {
		return nil, corrupt("bad magic")
	}
	le := binary.LittleEndian
	foot := b[len(b)-footerSize:]
	if verify {
		if got, want := crc32.Checksum(b[:len(b)-16], crcTable), le.Uint32(foot[32:]); got != want {
			return nil, corrupt("checksum %08x, want %08x", got, want)
		}
	}
	base, n := le.Uint64(b[8:]), le.Uint64(b[16:])
	if base > math.MaxInt64/2 || n > math.MaxInt32 || uint64(len(b)) < headerSize+footerSize+n*bytesPerEntry {
		return nil, corrupt("base %d, %d entries in %d bytes", base, n, len(b))
	}
	s := &segment{data: b, base: int64(base), n: int(n)}
	nn := int(n)
	at := headerSize
	cut := func(size int) []byte {
		p := b[at : at+size : at+size]
		at += size
		return p
	}
	s.times, s.recvs, s.offs, s.lens, s.flags = cut(8*nn), cut(8*nn), cut(4*nn), cut(2*nn), cut(nn)
	nb := (nn + blockEntries - 1) / blockEntries
	if len(b)-footerSize-at < 32*nb {
		return nil, corrupt("no room for %d blocks", nb)
	}
	s.blocks = cut(32 * nb)
	termsOff, dictOff := le.Uint64(foot[0:]), le.Uint64(foot[8:])
	nterms, nblocks := le.Uint64(foot[16:]), le.Uint64(foot[24:])
	end := uint64(len(b) - footerSize)
	if termsOff != uint64(at) || dictOff < termsOff || dictOff > end || nblocks > (end-dictOff)/8 || dictOff+8*nblocks != end ||
		nterms < nblocks || nterms > uint64(dictBlockTerms)*nblocks {
		return nil, corrupt("sections: terms at %d, dictionary at %d, %d terms in %d blocks, footer at %d", termsOff, dictOff, nterms, nblocks, end)
	}
	s.termsOff = at
	s.terms = b[termsOff:dictOff:dictOff]
	s.dict = b[dictOff:end:end]
	s.nterms, s.nblocks = int(nterms), int(nblocks)
	s.minT, s.minR = math.MaxInt64, math.MaxInt64
	s.maxT, s.maxR = math.MinInt64, math.MinInt64
	for k := range nb {
		m := s.blocks[32*k:]
		s.minT, s.maxT = min(s.minT, int64(le.Uint64(m))), max(s.maxT, int64(le.Uint64(m[8:])))
		s.minR, s.maxR = min(s.minR, int64(le.Uint64(m[16:]))), max(s.maxR, int64(le.Uint64(m[24:])))
	}
	for k := range s.nblocks {
		off := le.Uint64(s.dict[8*k:])
		if off < termsOff || off >= dictOff || k > 0 && off <= le.Uint64(s.dict[8*k-8:]) {
			return nil, corrupt("block %d of terms at %d", k, off)
		}
	}
	if s.nblocks > 0 && le.Uint64(s.dict) != termsOff {
		return nil, corrupt("the first block of terms is not at the start")
	}
	return s, nil
}

func (s *segment) time(i int) int64 { return int64(binary.LittleEndian.Uint64(s.times[8*i:])) }
func (s *segment) recv(i int) int64 { return int64(binary.LittleEndian.Uint64(s.recvs[8*i:])) }
func (s *segment) flag(i int) byte  { return s.flags[i] }

// block returns the time bounds of block k of entries.
func (s *segment) block(k int) (minT, maxT, minR, maxR int64) {
	m := s.blocks[32*k:]
	le := binary.LittleEndian
	return int64(le.Uint64(m)), int64(le.Uint64(m[8:])), int64(le.Uint64(m[16:])), int64(le.Uint64(m[24:]))
}

// locate returns where entry i lies in its bundle.
func (s *segment) locate(i int) (off int64, n int) {
	return int64(binary.LittleEndian.Uint32(s.offs[4*i:])), int(binary.LittleEndian.Uint16(s.lens[2*i:]))
}

// termRec is one record of the dictionary.
type termRec struct {
	term     []byte // valid until the cursor moves
	count    int
	postings []byte
	at       int // offset of postings in the segment's data
}

// cursor reads the records of the terms section in order.
type cursor struct {
	s    *segment
	pos  int // in s.terms
	left int // records left
	rec  termRec
	pre  uint64 // the term's first 8 bytes, big-endian, zero-padded
	buf  []byte
	err  error
}

// cursorAt starts a cursor at block k of terms.
func (s *segment) cursorAt(k int) *cursor {
	c := &cursor{s: s}
	if k >= s.nblocks {
		return c
	}
	c.pos = int(binary.LittleEndian.Uint64(s.dict[8*k:])) - s.termsOff
	c.left = s.nterms - k*dictBlockTerms
	return c
}

// next moves to the next record; false at the end or on an error (c.err).
func (c *cursor) next() bool {
	if c.left <= 0 || c.err != nil {
		return false
	}
	t := c.s.terms
	p := c.pos
	uv := func() uint64 {
		v, k := binary.Uvarint(t[min(p, len(t)):])
		if k <= 0 {
			c.err = corrupt("term record at %d", c.s.termsOff+c.pos)
			return 0
		}
		p += k
		return v
	}
	shared, suffix := uv(), uv()
	if c.err != nil {
		return false
	}
	if shared > uint64(len(c.buf)) || suffix > uint64(len(t)-p) {
		c.err = corrupt("term record at %d: shares %d, suffix %d", c.s.termsOff+c.pos, shared, suffix)
		return false
	}
	c.buf = append(c.buf[:shared], t[p:p+int(suffix)]...)
	p += int(suffix)
	count, plen := uv(), uv()
	if c.err != nil {
		return false
	}
	if count == 0 || count > uint64(c.s.n) || plen > uint64(len(t)-p) || plen < count {
		c.err = corrupt("term record at %d: %d entries in %d bytes", c.s.termsOff+c.pos, count, plen)
		return false
	}
	c.rec = termRec{term: c.buf, count: int(count), postings: t[p : p+int(plen)], at: c.s.termsOff + p}
	var pre [8]byte
	copy(pre[:], c.buf)
	c.pre = binary.BigEndian.Uint64(pre[:])
	c.pos = p + int(plen)
	c.left--
	return true
}

// firstTerm returns the first term of block k.
func (s *segment) firstTerm(k int) ([]byte, error) {
	c := s.cursorAt(k)
	if !c.next() {
		if c.err == nil {
			c.err = corrupt("block %d of terms is empty", k)
		}
		return nil, c.err
	}
	return c.rec.term, nil
}

// seekBlock returns the block whose range holds term: the last whose first
// term is not after it (0 if none).
func (s *segment) seekBlock(term []byte) (int, error) {
	var err error
	k := sort.Search(s.nblocks, func(k int) bool {
		if err != nil {
			return true
		}
		first, e := s.firstTerm(k)
		if e != nil {
			err = e
			return true
		}
		return bytes.Compare(first, term) > 0
	})
	return max(k-1, 0), err
}

// find returns the record of term, if the segment holds it.
func (s *segment) find(term []byte) (termRec, bool, error) {
	if s.nblocks == 0 {
		return termRec{}, false, nil
	}
	k, err := s.seekBlock(term)
	if err != nil {
		return termRec{}, false, err
	}
	c := s.cursorAt(k)
	for i := 0; i < dictBlockTerms && c.next(); i++ {
		switch bytes.Compare(c.rec.term, term) {
		case 0:
			return c.rec, true, nil
		case 1:
			return termRec{}, false, nil
		}
	}
	return termRec{}, false, c.err
}

// prefix calls fn for each record whose term starts with p, in order.
func (s *segment) prefix(p []byte, fn func(termRec) error) error {
	if s.nblocks == 0 {
		return nil
	}
	k, err := s.seekBlock(p)
	if err != nil {
		return err
	}
	c := s.cursorAt(k)
	for c.next() {
		if bytes.HasPrefix(c.rec.term, p) {
			if err := fn(c.rec); err != nil {
				return err
			}
		} else if bytes.Compare(c.rec.term, p) > 0 {
			return nil
		}
	}
	return c.err
}

// decodePostings appends the entries of a postings list to dst, checking
// that they ascend below n.
func decodePostings(dst []uint32, p []byte, count, n int) ([]uint32, error) {
	if count <= postBlock {
		return decodeDeltas(dst, p, count, 0, true, n)
	}
	nb := (count + postBlock - 1) / postBlock
	if len(p) < 8*nb {
		return dst, corrupt("postings: no skip table")
	}
	skip, data := p[:8*nb], p[8*nb:]
	start := 0
	for k := range nb {
		end := int(binary.LittleEndian.Uint32(skip[8*k+4:]))
		if end < start || end > len(data) {
			return dst, corrupt("postings block %d ends at %d", k, end)
		}
		prev := uint32(0)
		if k > 0 {
			prev = binary.LittleEndian.Uint32(skip[8*k-8:])
		}
		var err error
		before := len(dst)
		if dst, err = decodeDeltas(dst, data[start:end], min(postBlock, count-k*postBlock), prev, k == 0, n); err != nil {
			return dst, err
		}
		if dst[len(dst)-1] != binary.LittleEndian.Uint32(skip[8*k:]) || len(dst) == before {
			return dst, corrupt("postings block %d does not end at its skip entry", k)
		}
		start = end
	}
	return dst, nil
}

// decodeDeltas decodes count deltas from prev (the first may be 0 when
// first is set).
func decodeDeltas(dst []uint32, p []byte, count int, prev uint32, first bool, n int) ([]uint32, error) {
	v := uint64(prev)
	for i := range count {
		d, k := binary.Uvarint(p)
		if k <= 0 {
			return dst, corrupt("postings: bad varint")
		}
		p = p[k:]
		if d == 0 && !(first && i == 0) {
			return dst, corrupt("postings do not ascend")
		}
		v += d
		if v >= uint64(n) {
			return dst, corrupt("posting %d beyond the segment's %d entries", v, n)
		}
		dst = append(dst, uint32(v))
	}
	return dst, nil
}

// appendPostings encodes ascending entries.
func appendPostings(dst []byte, ids []uint32) []byte {
	if len(ids) <= postBlock {
		prev := uint32(0)
		for _, id := range ids {
			dst = binary.AppendUvarint(dst, uint64(id-prev))
			prev = id
		}
		return dst
	}
	nb := (len(ids) + postBlock - 1) / postBlock
	skipAt := len(dst)
	dst = append(dst, make([]byte, 8*nb)...)
	dataAt := len(dst)
	prev := uint32(0)
	for k := range nb {
		blk := ids[k*postBlock : min(len(ids), (k+1)*postBlock)]
		for _, id := range blk {
			dst = binary.AppendUvarint(dst, uint64(id-prev))
			prev = id
		}
		binary.LittleEndian.PutUint32(dst[skipAt+8*k:], prev)
		binary.LittleEndian.PutUint32(dst[skipAt+8*k+4:], uint32(len(dst)-dataAt))
	}
	return dst
}

// colParts are columns of consecutive entries, as their section bytes.
type colParts struct {
	n                               int
	times, recvs, offs, lens, flags []byte
}

func (s *segment) cols() colParts {
	return colParts{s.n, s.times, s.recvs, s.offs, s.lens, s.flags}
}

// segWriter writes a segment: columns, then terms in order, then finish.
type segWriter struct {
	w       io.Writer
	bw      *bufio.Writer // nil when writing to memory
	off     int
	crc     uint32
	base    int64
	n       int
	nterms  int
	dict    []uint64
	prev    []byte
	scratch []byte
	err     error
}

func newSegWriter(w io.Writer, base int64, n int) *segWriter {
	sw := &segWriter{w: w, base: base, n: n}
	if _, ok := w.(*bytes.Buffer); !ok {
		sw.bw = bufio.NewWriterSize(w, 1<<20)
		sw.w = sw.bw
	}
	var h [headerSize]byte
	copy(h[:], segMagic)
	binary.LittleEndian.PutUint64(h[8:], uint64(base))
	binary.LittleEndian.PutUint64(h[16:], uint64(n))
	sw.write(h[:])
	return sw
}

func (sw *segWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc = crc32.Update(sw.crc, crcTable, b)
	sw.off += len(b)
	_, sw.err = sw.w.Write(b)
}

// columns writes the columns of parts, which together hold n entries, and
// their blocks' time bounds.
func (sw *segWriter) columns(parts []colParts) {
	for _, sec := range []func(colParts) []byte{
		func(c colParts) []byte { return c.times }, func(c colParts) []byte { return c.recvs },
		func(c colParts) []byte { return c.offs }, func(c colParts) []byte { return c.lens },
		func(c colParts) []byte { return c.flags },
	} {
		for _, c := range parts {
			sw.write(sec(c))
		}
	}
	le := binary.LittleEndian
	var m [32]byte
	i := 0
	put := func(minT, maxT, minR, maxR int64) {
		le.PutUint64(m[0:], uint64(minT))
		le.PutUint64(m[8:], uint64(maxT))
		le.PutUint64(m[16:], uint64(minR))
		le.PutUint64(m[24:], uint64(maxR))
		sw.write(m[:])
	}
	minT, minR := int64(math.MaxInt64), int64(math.MaxInt64)
	maxT, maxR := int64(math.MinInt64), int64(math.MinInt64)
	for _, c := range parts {
		for j := range c.n {
			if c.flags[j]&flagEnvelope != 0 {
				t, r := int64(le.Uint64(c.times[8*j:])), int64(le.Uint64(c.recvs[8*j:]))
				minT, maxT, minR, maxR = min(minT, t), max(maxT, t), min(minR, r), max(maxR, r)
			}
			if i++; i%blockEntries == 0 {
				put(minT, maxT, minR, maxR)
				minT, minR = math.MaxInt64, math.MaxInt64
				maxT, maxR = math.MinInt64, math.MinInt64
			}
		}
	}
	if i%blockEntries != 0 {
		put(minT, maxT, minR, maxR)
	}
	if i != sw.n && sw.err == nil {
		sw.err = fmt.Errorf("index: %d entries of columns for a segment of %d", i, sw.n)
	}
}

// term writes the next term, after every term written before, and the
// entries (relative to the base, ascending) that hold it.
func (sw *segWriter) term(t []byte, ids []uint32) {
	if len(ids) == 0 || sw.err != nil {
		return
	}
	shared := 0
	if sw.nterms%dictBlockTerms == 0 {
		sw.dict = append(sw.dict, uint64(sw.off))
	} else {
		for shared < len(t) && shared < len(sw.prev) && t[shared] == sw.prev[shared] {
			shared++
		}
	}
	sw.prev = append(sw.prev[:0], t...)
	sw.nterms++
	b := sw.scratch[:0]
	b = binary.AppendUvarint(b, uint64(shared))
	b = binary.AppendUvarint(b, uint64(len(t)-shared))
	b = append(b, t[shared:]...)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	head := len(b)
	b = appendPostings(b, ids)
	plen := len(b) - head
	// The postings' length goes before them: encode it, then move them.
	var lb [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(lb[:], uint64(plen))
	b = append(b, lb[:k]...)
	copy(b[head+k:], b[head:head+plen])
	copy(b[head:], lb[:k])
	sw.write(b)
	sw.scratch = b
}

// finish writes the dictionary and the footer, and flushes.
func (sw *segWriter) finish() error {
	termsOff := headerSize + sw.n*bytesPerEntry + 32*((sw.n+blockEntries-1)/blockEntries)
	dictOff := sw.off
	b := make([]byte, 0, 8*len(sw.dict))
	for _, o := range sw.dict {
		b = binary.LittleEndian.AppendUint64(b, o)
	}
	sw.write(b)
	var f [footerSize]byte
	le := binary.LittleEndian
	le.PutUint64(f[0:], uint64(termsOff))
	le.PutUint64(f[8:], uint64(dictOff))
	le.PutUint64(f[16:], uint64(sw.nterms))
	le.PutUint64(f[24:], uint64(len(sw.dict)))
	sw.write(f[:32])
	le.PutUint32(f[32:], sw.crc)
	copy(f[40:], footMagic)
	if sw.err == nil {
		_, sw.err = sw.w.Write(f[32:])
		sw.off += 16
	}
	if sw.err == nil && sw.bw != nil {
		sw.err = sw.bw.Flush()
	}
	return sw.err
}
