package index

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/searchdoc"
	"github.com/trailaudit/trail/internal/storage"
)

// builder collects the columns and terms of a batch of entries.
type builder struct {
	base  int64
	cols  colParts
	terms [numFields]map[string]int32 // value → its list in lists
	lists [][]uint32
	// words are the lists of the words of strings seen before: most
	// fields repeat (sources, user agents, actions).
	words map[string][]int32
	tok   []byte
}

// maxCachedWords bounds builder.words.
const maxCachedWords = 4096

// cachedField marks the searchdoc.Fields.Strs whose words builder.words keeps:
// source, via, actor type, user agent, action, resource type, outcome and
// reason repeat; ids and addresses seldom do.
var cachedField = [searchdoc.NumStrs]bool{0: true, 1: true, 4: true, 6: true, 7: true, 8: true, 10: true, 11: true}

func newBuilder(base int64, n int) *builder {
	b := &builder{base: base}
	b.cols = colParts{n: n, times: make([]byte, 8*n), recvs: make([]byte, 8*n), offs: make([]byte, 4*n), lens: make([]byte, 2*n), flags: make([]byte, n)}
	for f := range b.terms {
		size := 16
		if f == int(fieldWord-fieldActor) {
			size = 4 * n
		}
		b.terms[f] = make(map[string]int32, size)
	}
	b.words = make(map[string][]int32, 256)
	return b
}

// list returns the list of term v of field f.
func (b *builder) list(f int, v []byte) int32 {
	k, ok := b.terms[f][string(v)]
	if !ok {
		k = int32(len(b.lists))
		b.terms[f][string(v)] = k
		b.lists = append(b.lists, nil)
	}
	return k
}

// postList records that entry i is in list k.
func (b *builder) postList(k int32, i uint32) {
	l := b.lists[k]
	if len(l) > 0 && l[len(l)-1] == i {
		return // a word seen before in the same entry
	}
	b.lists[k] = append(l, i)
}

// postWords records that entry i holds the words of s.
func (b *builder) postWords(s string, i uint32) {
	if ks, ok := b.words[s]; ok {
		for _, k := range ks {
			b.postList(k, i)
		}
		return
	}
	b.tok = searchdoc.AppendTokens(b.tok[:0], s)
	if len(b.words) >= maxCachedWords {
		b.postTokens(b.tok, i, nil)
		return
	}
	var ks []int32
	b.postTokens(b.tok, i, &ks)
	b.words[s] = ks
}

// postTokens records that entry i holds the words of tok, each followed
// by a space; with ks, it appends their lists to it.
func (b *builder) postTokens(tok []byte, i uint32, ks *[]int32) {
	for len(tok) > 0 {
		sp := bytes.IndexByte(tok, ' ')
		if sp < 0 {
			sp = len(tok)
		}
		if sp > 0 {
			k := b.list(int(fieldWord-fieldActor), tok[:sp])
			b.postList(k, i)
			if ks != nil {
				*ks = append(*ks, k)
			}
		}
		tok = tok[min(sp+1, len(tok)):]
	}
}

// addFields indexes entry i from what searchdoc.Read read: the same terms
// as add(DocOf), the words taken field by field.
func (b *builder) addFields(i int, f *searchdoc.Fields) {
	b.addColumns(i, f.Time, f.Received, &[...]string{f.Actor, f.Action, f.ResourceType, f.ResourceID, f.Outcome, f.Source, f.Via})
	id := uint32(i)
	for k, s := range f.Strs {
		switch {
		case s == "":
		case cachedField[k]:
			b.postWords(s, id)
		default:
			b.tok = searchdoc.AppendTokens(b.tok[:0], s)
			b.postTokens(b.tok, id, nil)
		}
	}
	for _, raw := range [][]byte{f.Details, f.Original} {
		if len(raw) > 0 {
			b.tok = searchdoc.AppendJSONValues(b.tok[:0], raw)
			b.postTokens(b.tok, id, nil)
		}
	}
}

// addColumns records entry i's columns and field terms: its times, and
// its actor, action, resource type and id, outcome, source and via.
func (b *builder) addColumns(i int, t, received time.Time, fields *[fieldWord - fieldActor]string) {
	le := binary.LittleEndian
	b.cols.flags[i] = flagEnvelope
	le.PutUint64(b.cols.times[8*i:], uint64(nanos(t)))
	le.PutUint64(b.cols.recvs[8*i:], uint64(nanos(received)))
	for f, v := range fields {
		if v != "" {
			b.post(f, v, uint32(i))
		}
	}
}

// post records that entry i holds the value v of field f.
func (b *builder) post(f int, v string, i uint32) {
	k, ok := b.terms[f][v]
	if !ok {
		k = int32(len(b.lists))
		b.terms[f][v] = k
		b.lists = append(b.lists, nil)
	}
	l := b.lists[k]
	if len(l) > 0 && l[len(l)-1] == i {
		return // a word seen before in the same entry
	}
	b.lists[k] = append(l, i)
}

// add indexes entry i from its search document.
func (b *builder) add(i int, doc *client.SearchDoc) {
	b.addColumns(i, doc.Time, doc.Received, &[...]string{doc.Actor, doc.Action, doc.ResourceType, doc.ResourceID, doc.Outcome, doc.Source, doc.Via})
	id := uint32(i)
	text := doc.Text
	for text != "" {
		w, rest, _ := strings.Cut(text, " ")
		if w != "" {
			b.post(int(fieldWord-fieldActor), w, id)
		}
		text = rest
	}
}

// finish encodes the segment in memory.
func (b *builder) finish() (*segment, error) {
	size := headerSize + b.cols.n*bytesPerEntry + 32*(b.cols.n/blockEntries+1) + footerSize
	for f := range b.terms {
		for k, v := range b.terms[f] {
			size += len(k) + 8 + 2*len(b.lists[v])
		}
	}
	var buf bytes.Buffer
	buf.Grow(size + size/8)
	sw := newSegWriter(&buf, b.base, b.cols.n)
	sw.columns([]colParts{b.cols})
	term := make([]byte, 0, 64)
	// Terms sort by their first 8 bytes as a number, then whole: most
	// differ there, and comparing numbers reads no string.
	type kv struct {
		p uint64
		k string
		v int32
	}
	var keys []kv
	for f := range b.terms {
		keys = keys[:0]
		for k, v := range b.terms[f] {
			var p [8]byte
			copy(p[:], k)
			keys = append(keys, kv{binary.BigEndian.Uint64(p[:]), k, v})
		}
		slices.SortFunc(keys, func(a, b kv) int {
			if a.p != b.p {
				return cmp.Compare(a.p, b.p)
			}
			return strings.Compare(a.k, b.k)
		})
		for _, e := range keys {
			term = append(append(term[:0], fieldActor+byte(f)), e.k...)
			sw.term(term, b.lists[e.v])
		}
	}
	if err := sw.finish(); err != nil {
		return nil, err
	}
	return parseSegment(buf.Bytes(), false)
}

// build indexes entries [start, end) into a segment in memory.
func (ix *Index) build(ctx context.Context, start, end int64) (*segment, error) {
	src := ix.opts.Source
	// The leaves from the start of the first bundle give the entries'
	// places in it: each is a 2-byte length and the leaf.
	from := start - start%bundleSize
	leaves, err := src.ReadEntries(ctx, from, end)
	if err != nil {
		return nil, fmt.Errorf("couldn't read entries [%d, %d): %w", from, end, err)
	}
	if int64(len(leaves)) != end-from {
		return nil, fmt.Errorf("couldn't read entries [%d, %d): got %d", from, end, len(leaves))
	}
	n := int(end - start)
	b := newBuilder(start, n)
	off := 0
	for j, leaf := range leaves {
		idx := from + int64(j)
		if idx%bundleSize == 0 {
			off = 0
		}
		if i := idx - start; i >= 0 && len(leaf) > 0 && len(leaf) <= math.MaxUint16 {
			binary.LittleEndian.PutUint32(b.cols.offs[4*i:], uint32(off+2))
			binary.LittleEndian.PutUint16(b.cols.lens[2*i:], uint16(len(leaf)))
		}
		off += 2 + len(leaf)
	}
	for i, leaf := range leaves[start-from:] {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		idx := start + int64(i)
		body, err := src.Body(ctx, leaf)
		if err != nil {
			if _, ok := errors.AsType[*storage.CorruptionError](err); !ok && !errors.Is(err, storage.ErrNotFound) {
				return nil, fmt.Errorf("couldn't read entry %d: %w", idx, err)
			}
			ix.log.Error("search index: entry body unreadable; indexed without fields", "index", idx, "err", err)
		}
		// f's strings share body's bytes, kept as the builder's map keys:
		// entries are never changed once read.
		if f, ok := searchdoc.Read(body); ok {
			b.addFields(i, &f)
			continue
		}
		doc, err := client.DocOf(body)
		if err != nil {
			continue // not an event envelope: found only by searches without filters
		}
		b.add(i, &doc)
	}
	return b.finish()
}
