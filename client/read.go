package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
)

// ErrVerification is wrapped by every error about a server response that
// failed a check: a checkpoint not signed by the log's key, or a proof that
// does not prove what it should. Unlike an *Error it means that the server,
// or something between it and the client, is misbehaving: keep the response
// as evidence rather than retrying.
var ErrVerification = errors.New("verification failed")

// Checkpoint is a signed checkpoint of the log: the size and root hash of its
// tree, as a C2SP tlog-checkpoint note whose signature by the log's key has
// been checked.
type Checkpoint struct {
	// Origin names the log, and is the name of its key.
	Origin string
	// Size is the number of entries in the tree.
	Size int64
	// Hash is the tree's root hash.
	Hash tlog.Hash
	// Note is the signed note as the server sent it, signatures included:
	// the evidence to show anyone who has the verifier key.
	Note []byte
	// Cosignatures are the verified cosignatures of Config.Witnesses on
	// the checkpoint, when Checkpoint fetched it.
	Cosignatures []Cosignature
}

// String returns "<origin> size <N> root <base64 hash>".
func (cp Checkpoint) String() string {
	return fmt.Sprintf("%s size %d root %s", cp.Origin, cp.Size, cp.Hash)
}

// verifyCheckpoint checks that msg is a checkpoint note signed by the log's
// key and returns it parsed.
func (c *Client) verifyCheckpoint(msg []byte) (Checkpoint, error) {
	if c.verifier == nil {
		return Checkpoint{}, ErrNoVerifierKey
	}
	return openCheckpoint(msg, c.verifier)
}

func openCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fmt.Errorf("%w: the checkpoint is not signed by the log's key %s", ErrVerification, v.Name())
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("%w: the checkpoint's signature by the log's key %s is invalid: the note was altered", ErrVerification, v.Name())
		}
		return Checkpoint{}, fmt.Errorf("%w: bad checkpoint note: %v", ErrVerification, err)
	}
	body, err := c2sp.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrVerification, err)
	}
	if body.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: the checkpoint is of log %q, signed by the key of %q", ErrVerification, body.Origin, v.Name())
	}
	return Checkpoint{Origin: body.Origin, Size: body.Size, Hash: body.Hash, Note: bytes.Clone(msg)}, nil
}

// Checkpoint returns the server's newest signed checkpoint, its signature
// checked. It says nothing about whether the log is consistent with what the
// client saw before: see UpdateTrusted.
func (c *Client) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if c.verifier == nil {
		return Checkpoint{}, ErrNoVerifierKey
	}
	b, _, err := c.do(ctx, request{method: http.MethodGet, path: "/checkpoint", retry: true})
	if err != nil {
		return Checkpoint{}, err
	}
	cp, err := c.verifyCheckpoint(b)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := c.policy.check(&cp); err != nil {
		return Checkpoint{}, err
	}
	return cp, nil
}

// Entry is one entry of the log, verified: its leaf is in the tree of its
// signed checkpoint.
type Entry struct {
	// Index is the entry's position in the log, from 0.
	Index int64
	// Leaf is the entry as the log stores and hashes it: the envelope the
	// server wrote around the event (see package event). Decode it, but keep
	// these bytes to prove anything about it: a re-encoding hashes
	// differently.
	Leaf json.RawMessage
	// LeafHash is the entry's record hash, tlog.RecordHash(Leaf).
	LeafHash tlog.Hash
	// Checkpoint is the signed checkpoint the proof leads to.
	Checkpoint Checkpoint
	// Proof is the inclusion proof of the entry in Checkpoint's tree.
	Proof tlog.RecordProof
}

// Receipt returns the entry's C2SP tlog-proof: the inclusion proof and the
// signed checkpoint, which anyone with the verifier key and the leaf can
// check offline.
func (e *Entry) Receipt() []byte {
	return c2sp.Proof{Index: e.Index, Hashes: e.Proof, Checkpoint: e.Checkpoint.Note}.Format()
}

// Get returns entry index, once it has checked the signature of the
// checkpoint the server sent with it and the entry's inclusion proof in that
// checkpoint's tree. A missing entry is an *Error with StatusCode 404.
func (c *Client) Get(ctx context.Context, index int64) (*Entry, error) {
	if c.verifier == nil {
		return nil, ErrNoVerifierKey
	}
	if index < 0 {
		return nil, fmt.Errorf("bad index %d", index)
	}
	var resp struct {
		Index          *int64          `json:"index"`
		Leaf           json.RawMessage `json:"leaf"`
		Checkpoint     string          `json:"checkpoint"`
		InclusionProof []string        `json:"inclusion_proof"`
	}
	path := "/v1/events/" + strconv.FormatInt(index, 10)
	if err := c.getJSON(ctx, path, nil, &resp); err != nil {
		return nil, err
	}
	if resp.Index == nil || *resp.Index != index {
		return nil, fmt.Errorf("%w: asked for entry %d, the server sent another", ErrVerification, index)
	}
	if len(resp.Leaf) == 0 {
		return nil, fmt.Errorf("%w: entry %d: no leaf in the response", ErrVerification, index)
	}
	cp, err := c.verifyCheckpoint([]byte(resp.Checkpoint))
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	proof, err := decodeHashes(resp.InclusionProof)
	if err != nil {
		return nil, fmt.Errorf("%w: entry %d: inclusion proof: %v", ErrVerification, index, err)
	}
	e := &Entry{Index: index, Leaf: resp.Leaf, LeafHash: tlog.RecordHash(resp.Leaf), Checkpoint: cp, Proof: proof}
	if err := checkInclusion(e.Proof, cp, index, e.LeafHash); err != nil {
		return nil, err
	}
	return e, nil
}

func checkInclusion(proof tlog.RecordProof, cp Checkpoint, index int64, leafHash tlog.Hash) error {
	if index >= cp.Size {
		return fmt.Errorf("%w: entry %d is not in the tree of size %d the server signed", ErrVerification, index, cp.Size)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, index, leafHash); err != nil {
		return fmt.Errorf("%w: entry %d (leaf hash %s) is not in the tree of size %d with root %s: %v",
			ErrVerification, index, leafHash, cp.Size, cp.Hash, err)
	}
	return nil
}

// ConsistencyProof returns the server's proof that the tree of size from is
// a prefix of the tree of size to. It is not checked here: check it with
// tlog.CheckTree against the two root hashes (UpdateTrusted does). from must
// be at least 1: every tree extends the empty one.
func (c *Client) ConsistencyProof(ctx context.Context, from, to int64) (tlog.TreeProof, error) {
	if from < 1 || from > to {
		return nil, fmt.Errorf("bad consistency proof request from %d to %d", from, to)
	}
	var resp struct {
		From  int64    `json:"from"`
		To    int64    `json:"to"`
		Proof []string `json:"proof"`
	}
	q := url.Values{"from": {strconv.FormatInt(from, 10)}, "to": {strconv.FormatInt(to, 10)}}
	if err := c.getJSON(ctx, "/v1/proofs/consistency", q, &resp); err != nil {
		return nil, err
	}
	if resp.From != from || resp.To != to {
		return nil, fmt.Errorf("%w: asked for a consistency proof from %d to %d, got one from %d to %d", ErrVerification, from, to, resp.From, resp.To)
	}
	hs, err := decodeHashes(resp.Proof)
	if err != nil {
		return nil, fmt.Errorf("%w: consistency proof: %v", ErrVerification, err)
	}
	return hs, nil
}

func decodeHashes(in []string) ([]tlog.Hash, error) {
	if len(in) > 126 { // two per level of a tree of 2^63 leaves
		return nil, fmt.Errorf("%d hashes, more than any tree needs", len(in))
	}
	hs := make([]tlog.Hash, len(in))
	for i, s := range in {
		b, err := base64.StdEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return nil, fmt.Errorf("bad hash %.60q", s)
		}
		hs[i] = tlog.Hash(b)
	}
	return hs, nil
}
