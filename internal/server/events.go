package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/storage"
)

// appended is one entry of a POST /v1/events reply.
type appended struct {
	Index    int64  `json:"index"`
	LeafHash []byte `json:"leaf_hash"` // base64, as encoding/json writes []byte
}

// postEvents appends one event or a JSON array of events in one commit and
// replies only once all of them are durable.
func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
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
	events, status, msg := s.parseEvents(body)
	if status != 0 {
		writeError(w, status, msg)
		return
	}
	id := identity(r)
	now := s.cfg.Now().UTC()
	leaves := make([][]byte, len(events))
	for i, ev := range events {
		leaf, err := event.Encode(event.Envelope{Received: now, Source: id.Name, Via: "json", Event: ev})
		if err != nil {
			writeError(w, http.StatusBadRequest, elementError(isArray(body), i, err))
			return
		}
		leaves[i] = leaf
	}
	first, err := s.cfg.Log.Append(r.Context(), leaves...)
	if err != nil {
		// Nothing was acknowledged; the entries may or may not be stored,
		// which a retry with an idempotency key will settle.
		s.log.Error("couldn't append", "source", id.Name, "events", len(leaves), "err", err)
		writeError(w, http.StatusServiceUnavailable, "the log could not store the events; retry later")
		return
	}
	reply := struct {
		Entries []appended `json:"entries"`
	}{make([]appended, len(leaves))}
	for i, leaf := range leaves {
		h := tlog.RecordHash(leaf)
		reply.Entries[i] = appended{Index: first + int64(i), LeafHash: h[:]}
	}
	writeJSON(w, http.StatusOK, reply)
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
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, http.StatusBadRequest, "malformed JSON array: " + err.Error()
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
