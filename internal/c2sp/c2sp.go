// Package c2sp encodes and parses the fixed formats that other tools read:
// C2SP tlog-tiles paths and entry bundles, C2SP tlog-checkpoint bodies and
// C2SP tlog-proof receipts.
//
// Everything here is pure: no I/O, no clocks. Every parser is fuzzed.
package c2sp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const (
	// TileHeight is the C2SP tile height: a tile holds 2^8 hashes.
	TileHeight = 8
	// TileWidth is the number of hashes in a full tile and entries in a full bundle.
	TileWidth = 1 << TileHeight
	// MaxEntrySize is the largest entry a bundle can hold (2-byte length prefix).
	MaxEntrySize = 1<<16 - 1
	// EntriesLevel is the Tile.Level of an entry bundle.
	EntriesLevel = -1
)

// Tile names a hash tile (Level >= 0) or an entry bundle (Level == EntriesLevel).
// Width is the number of hashes or entries, 1..TileWidth; TileWidth is a full tile.
type Tile struct {
	Level int
	N     int64
	Width int
}

// Path returns the tile's path relative to the log's root, such as
// "tile/0/x001/234" or "tile/entries/005.p/17".
func (t Tile) Path() string {
	var b strings.Builder
	b.WriteString("tile/")
	if t.Level == EntriesLevel {
		b.WriteString("entries")
	} else {
		b.WriteString(strconv.Itoa(t.Level))
	}
	b.WriteByte('/')
	b.WriteString(FormatIndex(t.N))
	if t.Width < TileWidth {
		b.WriteString(".p/")
		b.WriteString(strconv.Itoa(t.Width))
	}
	return b.String()
}

func (t Tile) String() string { return t.Path() }

// FormatIndex encodes a tile index as zero-padded 3-digit path elements, all
// but the last prefixed with "x": 1234067 is "x001/x234/067".
func FormatIndex(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// ParsePath parses a tile path as produced by Tile.Path. It accepts only the
// canonical encoding, so that a path and a tile correspond one to one.
func ParsePath(path string) (Tile, error) {
	bad := func(why string) (Tile, error) {
		return Tile{}, fmt.Errorf("malformed tile path %q: %s", path, why)
	}
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return bad(`missing "tile/" prefix`)
	}
	level, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("missing index")
	}
	var t Tile
	if level == "entries" {
		t.Level = EntriesLevel
	} else {
		l, err := strconv.Atoi(level)
		if err != nil || l < 0 || l > 63 || strconv.Itoa(l) != level {
			return bad("bad level")
		}
		t.Level = l
	}
	t.Width = TileWidth
	if idx, w, ok := strings.Cut(rest, ".p/"); ok {
		width, err := strconv.Atoi(w)
		if err != nil || width < 1 || width >= TileWidth || strconv.Itoa(width) != w {
			return bad("bad partial width")
		}
		t.Width = width
		rest = idx
	}
	elems := strings.Split(rest, "/")
	for i, e := range elems {
		last := i == len(elems)-1
		if !last {
			var ok bool
			if e, ok = strings.CutPrefix(e, "x"); !ok {
				return bad("non-final index element without x prefix")
			}
		}
		if len(e) != 3 || e[0] < '0' || e[0] > '9' || e[1] < '0' || e[1] > '9' || e[2] < '0' || e[2] > '9' {
			return bad("index element is not three digits")
		}
		if t.N > (1<<63-1)/1000-1 {
			return bad("index too large")
		}
		d, _ := strconv.Atoi(e)
		t.N = t.N*1000 + int64(d)
	}
	if len(elems) > 1 && strings.TrimPrefix(elems[0], "x") == "000" {
		return bad("leading zero index element")
	}
	return t, nil
}

// AppendEntry appends e to a bundle in the making: a 2-byte big-endian length
// then the bytes. It panics if e is empty or longer than MaxEntrySize; callers
// check sizes where input arrives.
func AppendEntry(bundle, e []byte) []byte {
	if len(e) == 0 || len(e) > MaxEntrySize {
		panic(fmt.Sprintf("c2sp: entry of %d bytes cannot be bundled", len(e)))
	}
	bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(e)))
	return append(bundle, e...)
}

// ErrTornBundle reports bytes at the end of a bundle that do not form a whole entry.
var ErrTornBundle = errors.New("bundle ends inside an entry")

// ParseBundle splits a bundle into its entries, which alias b. It stops at the
// first incomplete or zero-length entry (a torn write leaves one or the other):
// entries holds what came before, n how many bytes of b they span, and err is
// ErrTornBundle if n < len(b).
func ParseBundle(b []byte) (entries [][]byte, n int, err error) {
	for n < len(b) {
		if len(b)-n < 2 {
			return entries, n, ErrTornBundle
		}
		l := int(binary.BigEndian.Uint16(b[n:]))
		if l == 0 || len(b)-n-2 < l {
			return entries, n, ErrTornBundle
		}
		entries = append(entries, b[n+2:n+2+l])
		n += 2 + l
	}
	return entries, n, nil
}

// Checkpoint is the body of a C2SP tlog-checkpoint note.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
	// Extensions are the optional lines after the root hash, without newlines.
	Extensions []string
}

// Format returns the checkpoint body, ready to be signed as a note's text.
func (c Checkpoint) Format() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
	for _, e := range c.Extensions {
		b.WriteString(e)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseCheckpoint parses a checkpoint body (a note's text, without signatures).
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	var c Checkpoint
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return c, errors.New("malformed checkpoint: missing final newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 3 {
		return c, errors.New("malformed checkpoint: fewer than three lines")
	}
	for _, l := range lines {
		if l == "" {
			return c, errors.New("malformed checkpoint: empty line")
		}
	}
	c.Origin = lines[0]
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return c, fmt.Errorf("malformed checkpoint: bad tree size %q", lines[1])
	}
	c.Size = size
	h, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return c, fmt.Errorf("malformed checkpoint: bad root hash %q", lines[2])
	}
	copy(c.Hash[:], h)
	if len(lines) > 3 {
		c.Extensions = lines[3:]
	}
	return c, nil
}
