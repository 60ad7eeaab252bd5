package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/internal/c2sp"
)

// Appended is where an appended event went in the log.
type Appended struct {
	// Index is the entry's position in the log, from 0.
	Index int64
	// LeafHash is the entry's record hash as the log's tree holds it. The
	// leaf is the envelope the server wrote around the event (with the time
	// it received it), so it is not the hash of the event sent; Get returns
	// the leaf.
	LeafHash tlog.Hash
	// Receipt is, with AppendWithProof, the entry's C2SP tlog-proof: its
	// inclusion proof and the signed checkpoint it leads to, both checked.
	// Keep it to prove later, offline, that the log holds the entry.
	Receipt []byte
	// Checkpoint is, with AppendWithProof, the checkpoint of Receipt.
	Checkpoint *Checkpoint
}

// Append appends events, each one JSON object (see package event), in one
// request, and returns once the server has stored them durably, in order:
// the first event is at the first index returned, and so on. It fails with
// an *Error if the server refuses any event; then none was appended.
//
// The request carries a random Idempotency-Key, so that when the server
// answers 429 or 503 the client can send it again (see Config.MaxRetries)
// without appending anything twice. If Append returns another error, such
// as a broken connection, the events may or may not have been appended;
// events that carry an "id" can be sent again safely, as the server appends
// an id only once per producer.
func (c *Client) Append(ctx context.Context, events ...json.RawMessage) ([]Appended, error) {
	return c.appendEvents(ctx, false, events)
}

// AppendWithProof is Append, and also waits for a signed checkpoint that
// covers the events and returns a receipt for each (Appended.Receipt), whose
// signature and inclusion proof it has checked. It needs Config.VerifierKey.
func (c *Client) AppendWithProof(ctx context.Context, events ...json.RawMessage) ([]Appended, error) {
	if c.verifier == nil {
		return nil, ErrNoVerifierKey
	}
	return c.appendEvents(ctx, true, events)
}

func (c *Client) appendEvents(ctx context.Context, proof bool, events []json.RawMessage) ([]Appended, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("no events to append")
	}
	var body bytes.Buffer
	body.WriteByte('[')
	for i, ev := range events {
		if !json.Valid(ev) {
			return nil, fmt.Errorf("event %d is not valid JSON", i)
		}
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(ev)
	}
	body.WriteByte(']')
	r := request{
		method: http.MethodPost,
		path:   "/v1/events",
		header: http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {newKey()}},
		body:   body.Bytes(),
		retry:  true, // the key makes it safe
	}
	if proof {
		r.query = url.Values{"wait": {"proof"}}
	}
	b, h, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Entries []struct {
			Index    int64  `json:"index"`
			LeafHash []byte `json:"leaf_hash"`
			Proof    string `json:"proof"`
		} `json:"entries"`
	}
	if err := decodeJSON(b, h, r.method, r.path, &resp); err != nil {
		return nil, err
	}
	if len(resp.Entries) != len(events) {
		return nil, fmt.Errorf("the server acknowledged %d entries for %d events", len(resp.Entries), len(events))
	}
	out := make([]Appended, len(events))
	verified := map[string]*Checkpoint{}
	for i, e := range resp.Entries {
		if len(e.LeafHash) != tlog.HashSize {
			return nil, fmt.Errorf("entry %d: the server sent a leaf hash of %d bytes", e.Index, len(e.LeafHash))
		}
		out[i] = Appended{Index: e.Index, LeafHash: tlog.Hash(e.LeafHash)}
		if !proof {
			continue
		}
		if e.Proof == "" {
			return nil, fmt.Errorf("entry %d: no receipt in the reply (does the server support ?wait=proof?)", e.Index)
		}
		p, err := c2sp.ParseProof([]byte(e.Proof))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d: %v", ErrVerification, e.Index, err)
		}
		if p.Index != e.Index {
			return nil, fmt.Errorf("%w: the receipt of entry %d is for entry %d", ErrVerification, e.Index, p.Index)
		}
		cp := verified[string(p.Checkpoint)]
		if cp == nil {
			v, err := c.verifyCheckpoint(p.Checkpoint)
			if err != nil {
				return nil, fmt.Errorf("receipt of entry %d: %w", e.Index, err)
			}
			cp = &v
			verified[string(p.Checkpoint)] = cp
		}
		if err := checkInclusion(p.Hashes, *cp, e.Index, out[i].LeafHash); err != nil {
			return nil, fmt.Errorf("receipt: %w", err)
		}
		out[i].Receipt = []byte(e.Proof)
		out[i].Checkpoint = cp
	}
	return out, nil
}

// newKey returns a fresh Idempotency-Key: 128 random bits in base32.
func newKey() string { return rand.Text() }
