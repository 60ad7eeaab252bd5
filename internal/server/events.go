package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/c2sp"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/storage"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// appended is one entry of a POST /v1/events reply.
type appended struct {
	Index    int64  `json:"index"`
	LeafHash []byte `json:"leaf_hash"` // base64, as encoding/json writes []byte
	// Proof is a C2SP tlog-proof of the entry, with ?wait=proof.
	Proof string `json:"proof,omitempty"`
}

// Media types of POST /v1/events bodies.
const (
	mediaJSON   = "application/json"
	mediaNDJSON = "application/x-ndjson"
)

// ndjsonTypes are the names in use for newline-delimited JSON.
var ndjsonTypes = []string{mediaNDJSON, "application/ndjson", "application/jsonl", "application/x-jsonlines"}

// maxKeyLen bounds an Idempotency-Key.
const maxKeyLen = 255

// postEvents appends one event, a JSON array of events or NDJSON in one
// commit and replies only once all of them are durable. With an
// Idempotency-Key, or events carrying ids, a retried request gets the
// original indices and appends nothing twice.
func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	ndjson := slices.Contains(ndjsonTypes, mt)
	if err != nil || mt != mediaJSON && !ndjson {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json (one event or an array) or application/x-ndjson (one event per line)")
		return
	}
	q := r.URL.Query()
	for name := range q {
		if name != "wait" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q", name))
			return
		}
	}
	wantProof := false
	switch q.Get("wait") {
	case "", "durable":
	case "proof":
		wantProof = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad wait %q: want durable or proof", q.Get("wait")))
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if msg := checkKey(key); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "couldn't read body: "+err.Error())
		return
	}
	var events []event.Event
	var status int
	var msg string
	if ndjson {
		events, status, msg = s.parseNDJSON(body)
	} else {
		events, status, msg = s.parseEvents(body)
	}
	if status != 0 {
		writeError(w, status, msg)
		return
	}
	id := identity(r)
	p, err := s.dedup.begin(id.Name, key, events)
	if err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	var indices []int64
	if p.replay != nil {
		s.metrics.replayed.Inc()
		w.Header().Set("Idempotent-Replayed", "true")
		indices = make([]int64, p.replay.n)
		for i := range indices {
			indices[i] = p.replay.first + int64(i)
		}
	} else if indices, err = s.appendPlan(r.Context(), p, id, key, "json", events); err != nil {
		// Nothing was acknowledged. After a storage failure the log refuses
		// appends until reopened, and reopening recalls the keys of what
		// was stored, so a retry with the same key settles it.
		s.log.Error("couldn't append", "source", id.Name, "events", len(events), "err", err)
		writeError(w, http.StatusServiceUnavailable, "the log could not store the events; retry later")
		return
	}
	reply, err := s.describe(r.Context(), indices, wantProof)
	if err != nil {
		s.serverError(w, "couldn't read back the entries", err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// ConflictError is returned by Ingest when an event's id was logged before
// by the same producer for a different event, or is being appended by a
// request still in flight. The HTTP API answers it with 409.
type ConflictError = conflictError

// Ingest appends events that a producer protocol adapter has mapped, as
// the producer id, with via naming the protocol ("k8s", "syslog", "otlp"),
// and returns each event's index once all are durable. An event whose ID
// the same producer logged before is not appended again: its original
// index is returned, which is how adapters make a sender's retries
// harmless (the Kubernetes adapter sets ID to auditID/stage, say). On a
// *ConflictError nothing was appended.
func (s *Server) Ingest(ctx context.Context, id tlsconf.Identity, via string, events []event.Event) ([]int64, error) {
	if len(events) == 0 {
		return nil, nil
	}
	p, err := s.dedup.begin(id.Name, "", events)
	if err != nil {
		return nil, err
	}
	return s.appendPlan(ctx, p, id, "", via, events)
}

// appendPlan appends the fresh events of p and returns every event's index.
func (s *Server) appendPlan(ctx context.Context, p *plan, id tlsconf.Identity, key, via string, events []event.Event) ([]int64, error) {
	if len(p.fresh) == 0 {
		return p.finish(0, nil), nil
	}
	if len(p.fresh) < len(events) {
		// Some events were logged before under their ids: this request's
		// entries are not all contiguous, so the key is not recorded in
		// them, and retries are settled by the ids.
		key = ""
	}
	now := s.cfg.Now().UTC()
	leaves := make([][]byte, len(p.fresh))
	for n, i := range p.fresh {
		leaf, err := event.Encode(event.Envelope{Received: now, Source: id.Name, Via: via, Key: key, Event: events[i]})
		if err != nil { // Parse validated the event: this is a server bug
			p.finish(0, err)
			return nil, err
		}
		leaves[n] = leaf
	}
	// The append is not cancelled with the request: its outcome must be
	// known to keep the idempotency memory true.
	start := time.Now()
	first, err := s.cfg.Log.Append(context.WithoutCancel(ctx), leaves...)
	if err != nil {
		p.finish(0, err)
		return nil, err
	}
	s.metrics.appendTime.Observe(since(start))
	s.metrics.events.Add(float64(len(leaves)))
	return p.finish(first, nil), nil
}

type appendReply struct {
	Entries []appended `json:"entries"`
}

// describe returns the reply for entries at indices: their leaf hashes and,
// if proof, their C2SP tlog-proofs against one checkpoint.
func (s *Server) describe(ctx context.Context, indices []int64, proof bool) (appendReply, error) {
	l := s.cfg.Log
	reply := appendReply{make([]appended, len(indices))}
	var cp *ledger.Checkpoint
	if proof {
		top := slices.Max(indices)
		if cp = l.Latest(); cp == nil || cp.Size <= top {
			var err error
			if cp, err = l.Checkpoint(ctx); err != nil {
				return reply, err
			}
		}
	}
	for i, index := range indices {
		// The hash is the tree's own, which is what proofs are made from
		// (for an entry over 64 KiB it is the hash of its reference leaf).
		hash, err := l.LeafHash(ctx, index)
		if err != nil {
			return reply, err
		}
		reply.Entries[i] = appended{Index: index, LeafHash: hash[:]}
		if proof {
			hs, err := l.ProveInclusion(ctx, index, cp.Size)
			if err != nil {
				return reply, err
			}
			reply.Entries[i].Proof = string(c2sp.Proof{Index: index, Hashes: hs, Checkpoint: cp.Note}.Format())
		}
	}
	return reply, nil
}

// checkKey returns why an Idempotency-Key is unacceptable, or "".
func checkKey(key string) string {
	if len(key) > maxKeyLen {
		return fmt.Sprintf("Idempotency-Key longer than %d bytes", maxKeyLen)
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c > 0x7e {
			return "Idempotency-Key must be printable ASCII without spaces"
		}
	}
	return ""
}

// parseEvents parses body as one event or a non-empty array of events. On
// failure it returns the HTTP status and message.
func (s *Server) parseEvents(body []byte) ([]event.Event, int, string) {
	if !isArray(body) {
		ev, err := event.Parse(body)
		if err != nil {
			return nil, http.StatusBadRequest, err.Error()
		}
		return []event.Event{ev}, 0, ""
	}
	raws, ok := event.SplitArray(body)
	if !ok {
		var msgs []json.RawMessage
		if err := json.Unmarshal(body, &msgs); err != nil {
			return nil, http.StatusBadRequest, "malformed JSON array: " + err.Error()
		}
		raws = make([][]byte, len(msgs))
		for i, m := range msgs {
			raws[i] = m
		}
	}
	switch {
	case len(raws) == 0:
		return nil, http.StatusBadRequest, "empty array: send at least one event"
	case len(raws) > s.cfg.MaxEvents:
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d events in one request, at most %d", len(raws), s.cfg.MaxEvents)
	}
	events := make([]event.Event, len(raws))
	for i, raw := range raws {
		ev, err := event.Parse(raw)
		if err != nil {
			return nil, http.StatusBadRequest, elementError(true, i, err)
		}
		events[i] = ev
	}
	return events, 0, ""
}

// parseNDJSON parses body as events, one per line; blank lines are skipped.
func (s *Server) parseNDJSON(body []byte) ([]event.Event, int, string) {
	var events []event.Event
	for n, line := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if len(events) == s.cfg.MaxEvents {
			return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d events in one request", s.cfg.MaxEvents)
		}
		ev, err := event.Parse(line)
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Sprintf("line %d: %v", n+1, err)
		}
		events = append(events, ev)
	}
	if len(events) == 0 {
		return nil, http.StatusBadRequest, "empty body: send at least one event"
	}
	return events, 0, ""
}

func isArray(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '['
}

// elementError names the array element an error is about: "[2] actor.id: required".
func elementError(inArray bool, i int, err error) string {
	if !inArray {
		return err.Error()
	}
	return fmt.Sprintf("[%d] %v", i, err)
}

// getEvent returns an entry's leaf with its inclusion proof against a
// signed checkpoint that covers it.
func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	index, err := strconv.ParseInt(r.PathValue("index"), 10, 64)
	if err != nil || index < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad index %q: want a non-negative integer", r.PathValue("index")))
		return
	}
	l := s.cfg.Log
	if size := l.Size(); index >= size {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no entry %d: the log has %d", index, size))
		return
	}
	cp := l.Latest()
	if cp == nil || cp.Size <= index {
		// The entry is durable but not yet under a signed checkpoint.
		if cp, err = l.Checkpoint(ctx); err != nil {
			s.serverError(w, "couldn't sign checkpoint", err)
			return
		}
	}
	leaf, err := l.ReadEntry(ctx, index)
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no entry %d", index))
		return
	}
	if err != nil {
		s.serverError(w, "couldn't read entry", err)
		return
	}
	if !json.Valid(leaf) {
		s.serverError(w, "couldn't serve entry", fmt.Errorf("entry %d is not JSON", index))
		return
	}
	proof, err := l.ProveInclusion(ctx, index, cp.Size)
	if err != nil {
		s.serverError(w, "couldn't prove inclusion", err)
		return
	}
	// The read is recorded before it is answered: a read the log cannot
	// record is refused.
	if err := s.auditRead(ctx, identity(r), index); err != nil {
		s.serverError(w, "couldn't record the read in the log", err)
		return
	}
	hashes := make([]string, len(proof))
	for i, h := range proof {
		hashes[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	writeJSON(w, http.StatusOK, struct {
		Index          int64           `json:"index"`
		Leaf           json.RawMessage `json:"leaf"`
		Checkpoint     string          `json:"checkpoint"`
		InclusionProof []string        `json:"inclusion_proof"`
	}{index, leaf, string(cp.Note), hashes})
}

// serverError logs err and answers 503: every failure here is of the log's
// storage, which may recover (or be reopened).
func (s *Server) serverError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	writeError(w, http.StatusServiceUnavailable, what)
}
