package k8s

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/trailaudit/trail/internal/server"
)

// Path is where the API server's audit webhook POSTs: the server URL of the
// kubeconfig that Kubeconfig writes.
const Path = "/v1/kubernetes/audit"

// via names the ingestion path in each entry's envelope.
const via = "k8s"

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

// serveHTTP takes one EventList (or one Event) and answers 200 only once
// every event in it is durable. The API server sends ?timeout=30s, which is
// ignored: an append is never cut short, since its outcome must be known.
func (h *handler) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json: an audit.k8s.io/v1 EventList")
			return
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes: raise limits.max_body_bytes, or set --audit-webhook-truncate-enabled on the API server", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "couldn't read body: "+err.Error())
		return
	}
	events, err := Decode(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id := server.Identity(r)
	if _, err := h.s.Ingest(r.Context(), id, via, events); err != nil {
		if _, ok := errors.AsType[*server.ConflictError](err); ok {
			// Ids carry a hash of the event, so only a batch still being
			// appended by an earlier attempt gets here: retry soon.
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		h.log.Error("couldn't append Kubernetes audit events", "source", id.Name, "events", len(events), "err", err)
		w.Header().Set("Retry-After", "10")
		writeError(w, http.StatusServiceUnavailable, "the log could not store the events; retry later")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Events int `json:"events"`
	}{len(events)})
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
