package bundle

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
)

// A receipt is a C2SP tlog-proof whose extra data is the entry itself, the
// leaf as the log hashed it, so that the receipt alone shows what it proves.
// For a large entry that is its reference; the body travels beside it.

// Receipt is one entry's receipt and what it proves.
type Receipt struct {
	// Proof is the C2SP tlog-proof, ready to write.
	Proof []byte
	Index int64
	// Leaf is the entry as the log hashed it.
	Leaf []byte
	// Body is the body of a large entry (Leaf is its reference), or nil
	// if there is none or the source cannot serve it.
	Body       []byte
	Origin     string
	TreeSize   int64
	Root       tlog.Hash
	Checkpoint []byte
	// Unverified names the checkpoint's signature lines not checked.
	Unverified []string
	// Cosigned are the cosignatures of the witnesses given to
	// VerifyReceipt that verified.
	Cosigned []Cosigned
}

// MakeReceipt writes the receipt of entry index of src against src's
// newest checkpoint, which must be signed by verifierKey. The inclusion
// proof is computed from the hash tiles, each checked against the
// checkpoint's root, so the checkpoint is the one src publishes, with its
// cosignatures.
func MakeReceipt(ctx context.Context, src Source, verifierKey string, index int64) (*Receipt, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("bad verifier key: %w", err)
	}
	signed, err := src.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	cp, unverified, err := openCheckpoint(signed, v)
	if err != nil {
		return nil, fmt.Errorf("the checkpoint of %s: %w", src, err)
	}
	if index < 0 || index >= cp.Size {
		return nil, fmt.Errorf("%w: entry %d is not in the newest checkpoint, which holds %d entries", ErrRange, index, cp.Size)
	}
	es, err := readBundle(ctx, src, cp.Size, index/c2sp.TileWidth)
	if err != nil {
		return nil, err
	}
	leaf := es[index%c2sp.TileWidth]
	thr := tlog.TileHashReader(tlog.Tree{N: cp.Size, Hash: cp.Hash}, tileReader{ctx, src})
	proof, err := tlog.ProveRecord(cp.Size, index, thr)
	if err != nil {
		return nil, fmt.Errorf("couldn't prove entry %d from the tiles of %s: %w", index, src, err)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, index, tlog.RecordHash(leaf)); err != nil {
		return nil, fmt.Errorf("entry %d as %s holds it is not the one its tree holds: %w", index, src, err)
	}
	r := &Receipt{
		Proof:  c2sp.Proof{Extra: leaf, Index: index, Hashes: proof, Checkpoint: signed}.Format(),
		Index:  index,
		Leaf:   leaf,
		Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, Checkpoint: signed, Unverified: unverified,
	}
	ref, isRef, err := ledger.ParseLargeRef(leaf)
	if isRef && err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	if isRef {
		r.Body, err = src.ReadLarge(ctx, ref.SHA256)
		if errors.Is(err, ErrNoLargeBodies) {
			return r, nil // the receipt proves the reference; the body stays out
		}
		if err != nil {
			return nil, fmt.Errorf("the body of large entry %d: %w", index, err)
		}
		if err := checkBody(ref, r.Body); err != nil {
			return nil, fmt.Errorf("entry %d in %s: %w", index, src, err)
		}
	}
	return r, nil
}

// VerifyReceipt checks a receipt against the log's verifier key: the
// checkpoint's signature, the cosignatures w asks for, and that the entry
// it carries is in the checkpoint's tree at its index. body, if not nil,
// is the body of a large entry, checked against the reference the receipt
// carries. It returns a *Failure naming the part of the receipt at fault.
func VerifyReceipt(b []byte, verifierKey string, body []byte, w Witnesses) (*Receipt, error) {
	if verifierKey == "" {
		return nil, ErrNoKey
	}
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("bad verifier key: %w", err)
	}
	p, err := c2sp.ParseProof(b)
	if err != nil {
		return nil, fail("receipt", "%v", err)
	}
	if len(p.Extra) == 0 {
		return nil, fail("receipt", "no entry in it (its extra line): a tlog-proof made by another tool? trail's receipts carry the entry")
	}
	cp, unverified, err := openCheckpoint(p.Checkpoint, v)
	if err != nil {
		return nil, fail("receipt's checkpoint", "%v", err)
	}
	cosigned, unverified, err := w.check(p.Checkpoint, unverified)
	if err != nil {
		return nil, fail("receipt's checkpoint", "%v", err)
	}
	if p.Index >= cp.Size {
		return nil, fail("receipt's index", "entry %d is not in the checkpoint's tree of size %d", p.Index, cp.Size)
	}
	leafHash := tlog.RecordHash(p.Extra)
	if err := tlog.CheckRecord(p.Hashes, cp.Size, cp.Hash, p.Index, leafHash); err != nil {
		return nil, fail("receipt's inclusion proof", "entry %d (leaf hash %s) is not in the tree of size %d with root %s: the entry, index or proof was altered", p.Index, leafHash, cp.Size, cp.Hash)
	}
	r := &Receipt{Proof: b, Index: p.Index, Leaf: p.Extra, Origin: cp.Origin, TreeSize: cp.Size, Root: cp.Hash, Checkpoint: p.Checkpoint, Unverified: unverified, Cosigned: cosigned}
	ref, isRef, err := ledger.ParseLargeRef(p.Extra)
	if isRef && err != nil {
		return nil, fail("receipt's entry", "%v", err)
	}
	if isRef && body != nil {
		if err := checkBody(ref, body); err != nil {
			return nil, fail("large entry body", "%v", err)
		}
		r.Body = body
	}
	return r, nil
}

// LargeRef reports whether the receipt's entry is a large entry's
// reference, and parses it.
func (r *Receipt) LargeRef() (ledger.LargeRef, bool) {
	ref, ok, err := ledger.ParseLargeRef(r.Leaf)
	return ref, ok && err == nil
}

func checkBody(ref ledger.LargeRef, body []byte) error {
	if int64(len(body)) != ref.Size {
		return fmt.Errorf("the body has %d bytes, and its reference says %d", len(body), ref.Size)
	}
	if sum := sha256.Sum256(body); sum != ref.SHA256 {
		return fmt.Errorf("the body's SHA-256 is %x, and its reference says %x: the body was altered", sum, ref.SHA256)
	}
	return nil
}
