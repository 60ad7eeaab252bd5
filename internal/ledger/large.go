package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/trailaudit/trail/internal/storage"
)

// An entry too large for a C2SP bundle (over 65,535 bytes) is stored whole as
// a blob named by its SHA-256, and its leaf is a small JSON reference:
//
//	{"trail_large_entry":{"sha256":"<64 hex digits>","size":<bytes>}}
//
// The Merkle tree commits to the reference and the reference to the body, so
// the body is as tamper-evident as any entry, and static tile readers still
// see a well-formed bundle. The form is reserved: Append refuses entries that
// start like it, so every reference in a log was made by the ledger.

const largePrefix = `{"trail_large_entry":`

func isLargeRef(e []byte) bool { return bytes.HasPrefix(e, []byte(largePrefix)) }

func largeRef(sum [32]byte, size int) []byte {
	return fmt.Appendf(nil, `%s{"sha256":"%x","size":%d}}`, largePrefix, sum, size)
}

// LargeRef is a parsed large-entry reference.
type LargeRef struct {
	SHA256 [32]byte
	Size   int64
}

// ParseLargeRef reports whether leaf is a large-entry reference and parses it.
func ParseLargeRef(leaf []byte) (LargeRef, bool, error) {
	if !isLargeRef(leaf) {
		return LargeRef{}, false, nil
	}
	var v struct {
		L struct {
			SHA256 string `json:"sha256"`
			Size   int64  `json:"size"`
		} `json:"trail_large_entry"`
	}
	dec := json.NewDecoder(bytes.NewReader(leaf))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return LargeRef{}, true, fmt.Errorf("malformed large-entry reference: %w", err)
	}
	var r LargeRef
	sum, err := hex.DecodeString(v.L.SHA256)
	if err != nil || len(sum) != 32 || v.L.Size < 0 {
		return LargeRef{}, true, fmt.Errorf("malformed large-entry reference %q", leaf)
	}
	copy(r.SHA256[:], sum)
	r.Size = v.L.Size
	if !bytes.Equal(leaf, largeRef(r.SHA256, int(r.Size))) {
		return LargeRef{}, true, fmt.Errorf("non-canonical large-entry reference %q", leaf)
	}
	return r, true, nil
}

// Body returns the entry a leaf stands for: the leaf itself, or for a large
// entry the stored body, checked against the reference.
func (l *Log) Body(ctx context.Context, leaf []byte) ([]byte, error) {
	ref, ok, err := ParseLargeRef(leaf)
	if !ok || err != nil {
		return leaf, err
	}
	body, err := l.store.ReadBlob(ctx, ref.SHA256)
	if err != nil {
		return nil, err
	}
	if sha256.Sum256(body) != ref.SHA256 || int64(len(body)) != ref.Size {
		return nil, &storage.CorruptionError{Where: fmt.Sprintf("large entry body %x", ref.SHA256), What: "content does not match its hash"}
	}
	return body, nil
}
