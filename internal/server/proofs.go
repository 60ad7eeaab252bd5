package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/trailaudit/trail/internal/storage"
)

// getConsistency returns the proof that the tree of size from is a prefix of
// the tree of size to, by default the newest signed checkpoint's, which is
// then included so that a client holding the older one can move to it.
func (s *Server) getConsistency(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, msg := sizeParam(q.Get("from"), q.Has("from"), "from")
	if msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	if from == 0 {
		writeError(w, http.StatusBadRequest, "from must be at least 1: every tree extends the empty one")
		return
	}
	l := s.cfg.Log
	cp := l.Latest()
	var to int64
	if q.Has("to") {
		if to, msg = sizeParam(q.Get("to"), true, "to"); msg != "" {
			writeError(w, http.StatusBadRequest, msg)
			return
		}
	} else if cp != nil {
		to = cp.Size
	} else {
		writeError(w, http.StatusNotFound, "no signed checkpoint yet: give to")
		return
	}
	if from > to {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("from %d is greater than to %d", from, to))
		return
	}
	if size := l.Size(); to > size {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no tree of size %d (to): the log has %d entries", to, size))
		return
	}
	proof, err := l.ProveConsistency(r.Context(), from, to)
	if errors.Is(err, storage.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		s.serverError(w, "couldn't prove consistency", err)
		return
	}
	hashes := make([]string, len(proof)) // [] rather than null when from == to
	for i, h := range proof {
		hashes[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	var note string
	if cp != nil && cp.Size == to {
		note = string(cp.Note)
	}
	writeJSON(w, http.StatusOK, struct {
		From       int64    `json:"from"`
		To         int64    `json:"to"`
		Checkpoint string   `json:"checkpoint,omitempty"`
		Proof      []string `json:"proof"`
	}{from, to, note, hashes})
}

// sizeParam parses the tree size in query parameter name, or returns the
// message of a 400.
func sizeParam(v string, present bool, name string) (int64, string) {
	if !present || v == "" {
		return 0, "missing query parameter " + name
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Sprintf("bad %s %q: want a non-negative integer", name, v)
	}
	return n, ""
}
