package generic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/server"
)

// Path is the endpoint. It is not under /v1/events/, whose GET
// /v1/events/{index} would make the router's patterns ambiguous.
const Path = "/v1/generic"

// MaxRecords bounds the records of one request, as limits.max_events
// does for POST /v1/events by default.
const MaxRecords = 10_000

// via names the ingestion path in each entry's envelope.
const via = "generic"

// Register serves POST Path on s for the writer and admin roles. Errors
// that are the log's, not the sender's, are logged to logger (nil
// discards them).
func Register(s *server.Server, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{s: s, log: logger}
	s.HandleIngest("POST "+Path, h.serveHTTP)
}

type handler struct {
	s   *server.Server
	log *slog.Logger
}

// serveHTTP maps the body's records by the query and answers 200, with
// their indices as POST /v1/events does, only once all are durable.
func (h *handler) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json: one JSON object, or an array of them")
		return
	}
	m, err := ParseMapping(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "couldn't read body: "+err.Error())
		return
	}
	records, err := Records(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(records) > MaxRecords {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d records in one request, at most %d", len(records), MaxRecords))
		return
	}
	events := make([]event.Event, len(records))
	for i, rec := range records {
		if events[i], err = m.Map(rec); err != nil {
			msg := err.Error()
			if len(records) > 1 {
				msg = fmt.Sprintf("[%d] %s", i, msg)
			}
			writeError(w, http.StatusBadRequest, msg)
			return
		}
	}
	id := server.Identity(r)
	indices, err := h.s.Ingest(r.Context(), id, via, events)
	if err != nil {
		if _, ok := errors.AsType[*server.ConflictError](err); ok {
			writeError(w, http.StatusConflict, err.Error())
			return
		}
		h.log.Error("couldn't append mapped records", "source", id.Name, "records", len(events), "err", err)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "the log could not store the records; retry later")
		return
	}
	type entry struct {
		Index int64 `json:"index"`
	}
	reply := struct {
		Entries []entry `json:"entries"`
	}{make([]entry, len(indices))}
	for i, index := range indices {
		reply.Entries[i].Index = index
	}
	writeJSON(w, http.StatusOK, reply)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}
