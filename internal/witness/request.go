package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

// MaxProofLines is the most consistency proof lines a request may carry
// (C2SP tlog-witness).
const MaxProofLines = 63

// maxRequestBytes bounds an add-checkpoint body: an old size line, 63 proof
// lines and a checkpoint with up to 100 signatures fit in far less.
const maxRequestBytes = 64 << 10

// Request is the body of an add-checkpoint request: the size of the
// checkpoint the witness last cosigned as the log believes it, a
// consistency proof from that size, and the new signed checkpoint.
type Request struct {
	// OldSize is the tree size of the witness's latest cosigned checkpoint
	// of this log, or 0 if the log does not know it.
	OldSize int64
	// Proof is an RFC 6962 consistency proof from OldSize to the
	// checkpoint's size; empty if OldSize is 0 or equals the size.
	Proof tlog.TreeProof
	// Checkpoint is the signed checkpoint note.
	Checkpoint []byte
}

// Format returns the request body.
func (r Request) Format() []byte {
	b := fmt.Appendf(nil, "old %d\n", r.OldSize)
	for _, h := range r.Proof {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...)
}

// ParseRequest parses an add-checkpoint body strictly: "old N" with N in
// canonical decimal, at most MaxProofLines base64 hashes of 32 bytes, an
// empty line, and a non-empty checkpoint (whose signature the caller
// checks).
func ParseRequest(b []byte) (Request, error) {
	var r Request
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return r, errors.New("malformed request: no old size line")
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return r, fmt.Errorf("malformed request: first line %.40q, want \"old <size>\"", line)
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != string(num) {
		return r, fmt.Errorf("malformed request: bad old size %.40q", num)
	}
	r.OldSize = n
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return r, errors.New("malformed request: no empty line before the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLines {
			return r, fmt.Errorf("malformed request: more than %d consistency proof lines", MaxProofLines)
		}
		h, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(h) != tlog.HashSize {
			return r, fmt.Errorf("malformed request: consistency proof line %d is not a base64 hash of 32 bytes", len(r.Proof)+1)
		}
		r.Proof = append(r.Proof, tlog.Hash(h))
	}
	if len(rest) == 0 {
		return r, errors.New("malformed request: no checkpoint")
	}
	r.Checkpoint = rest
	return r, nil
}
