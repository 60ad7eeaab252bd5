package c2sp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// ProofHeader is the first line of a C2SP tlog-proof.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// Proof is a C2SP tlog-proof: an offline-verifiable statement that the entry
// at Index is in the tree of a signed checkpoint. Checkpoint is the whole
// signed note, cosignatures included; the proof format does not sign
// anything of its own.
type Proof struct {
	// Extra is optional application data, carried but not verified.
	Extra      []byte
	Index      int64
	Hashes     tlog.RecordProof
	Checkpoint []byte
}

// Format encodes p:
//
//	c2sp.org/tlog-proof@v1
//	[extra <base64>]
//	index <N>
//	<base64 hash>...
//	<empty line>
//	<signed checkpoint note>
func (p Proof) Format() []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	if len(p.Extra) > 0 {
		fmt.Fprintf(&b, "extra %s\n", base64.StdEncoding.EncodeToString(p.Extra))
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(p.Checkpoint)
	return b.Bytes()
}

// ParseProof parses a C2SP tlog-proof as written by Proof.Format. It checks
// the syntax only: the caller verifies the checkpoint's signatures and the
// inclusion of the entry it holds.
func ParseProof(b []byte) (Proof, error) {
	var p Proof
	head, note, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok {
		return p, errors.New("malformed tlog-proof: no empty line before the checkpoint")
	}
	if len(note) == 0 {
		return p, errors.New("malformed tlog-proof: no checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != ProofHeader {
		return p, fmt.Errorf("malformed tlog-proof: first line is %.40q, want %q", lines[0], ProofHeader)
	}
	lines = lines[1:]
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra, err := base64.StdEncoding.Strict().DecodeString(strings.TrimPrefix(lines[0], "extra "))
		if err != nil || len(extra) == 0 {
			return p, errors.New("malformed tlog-proof: bad extra line")
		}
		p.Extra = extra
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		return p, errors.New("malformed tlog-proof: missing index line")
	}
	s := strings.TrimPrefix(lines[0], "index ")
	index, err := strconv.ParseInt(s, 10, 64)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != s {
		return p, fmt.Errorf("malformed tlog-proof: bad index %.40q", s)
	}
	p.Index = index
	// A proof has at most 63 hashes: one per level of a tree of 2^63 leaves.
	if len(lines)-1 > 63 {
		return p, errors.New("malformed tlog-proof: more than 63 hashes")
	}
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.Strict().DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			return p, fmt.Errorf("malformed tlog-proof: bad hash %.60q", l)
		}
		p.Hashes = append(p.Hashes, tlog.Hash(h))
	}
	p.Checkpoint = note
	return p, nil
}
