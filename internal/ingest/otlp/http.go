package otlp

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trailaudit/trail/internal/server"
)

// Path is the OTLP/HTTP logs endpoint.
const Path = "/v1/logs"

// MaxDecodedBytes bounds a request body after gzip decompression; the
// compressed body is bounded by the server's limits.max_body_bytes.
const MaxDecodedBytes = 64 << 20

// maxDecoded is MaxDecodedBytes; tests lower it.
var maxDecoded int64 = MaxDecodedBytes

// via names the ingestion path in each entry's envelope.
const via = "otlp"

// Media types of OTLP/HTTP.
const (
	mediaProto = "application/x-protobuf"
	mediaJSON  = "application/json"
)

// gRPC status codes that the error bodies carry (google.rpc.Status.code).
const (
	codeInvalidArgument = 3
	codeUnavailable     = 14
)

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

// serveHTTP takes one ExportLogsServiceRequest and answers in its encoding,
// 200 only once every accepted record is durable.
func (h *handler) serveHTTP(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == mediaJSON
	if !isJSON && mt != mediaProto {
		writeStatus(w, true, http.StatusUnsupportedMediaType, codeInvalidArgument, "Content-Type must be application/x-protobuf or application/json")
		return
	}
	body, status, msg := readBody(r)
	if status != 0 {
		writeStatus(w, isJSON, status, codeInvalidArgument, msg)
		return
	}
	req := plogotlp.NewExportRequest()
	var err error
	if isJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		writeStatus(w, isJSON, http.StatusBadRequest, codeInvalidArgument, "malformed ExportLogsServiceRequest: "+err.Error())
		return
	}
	res := Map(req.Logs())
	id := server.Identity(r)
	if _, err := h.s.Ingest(r.Context(), id, via, res.Events); err != nil {
		// Records are identified by their content, so a conflict can only
		// be the same records still being appended by an earlier attempt:
		// ask for a retry, which OTLP exporters make on 503.
		retry := "1"
		if _, ok := errors.AsType[*server.ConflictError](err); !ok {
			h.log.Error("couldn't append OTLP log records", "source", id.Name, "records", len(res.Events), "err", err)
			retry = "10"
		}
		w.Header().Set("Retry-After", retry)
		writeStatus(w, isJSON, http.StatusServiceUnavailable, codeUnavailable, "the log could not store the records; retry later")
		return
	}
	resp := plogotlp.NewExportResponse()
	if res.Rejected > 0 {
		resp.PartialSuccess().SetRejectedLogRecords(res.Rejected)
		resp.PartialSuccess().SetErrorMessage(res.ErrorMessage())
	}
	var out []byte
	if isJSON {
		out, err = resp.MarshalJSON()
	} else {
		out, err = resp.MarshalProto()
	}
	if err != nil { // the records are durable; the answer is lost
		h.log.Error("couldn't encode OTLP response", "err", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType(isJSON))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

// readBody returns the request body, decompressed. On failure it returns
// the HTTP status and message.
func readBody(r *http.Request) ([]byte, int, string) {
	var src io.Reader = r.Body
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			status, msg := readStatus(err, "malformed gzip body: ")
			return nil, status, msg
		}
		defer gz.Close()
		src = gz
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported: use gzip or none", enc)
	}
	limit := maxDecoded
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		status, msg := readStatus(err, "couldn't read body: ")
		return nil, status, msg
	}
	if int64(len(body)) > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes decompressed", limit)
	}
	return body, 0, ""
}

func readStatus(err error, prefix string) (int, string) {
	if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit)
	}
	return http.StatusBadRequest, prefix + err.Error()
}

func contentType(isJSON bool) string {
	if isJSON {
		return mediaJSON
	}
	return mediaProto
}

// writeStatus answers with a google.rpc.Status in the request's encoding,
// as OTLP/HTTP asks of failures.
func writeStatus(w http.ResponseWriter, isJSON bool, httpStatus int, code int32, msg string) {
	var body []byte
	if isJSON {
		body, _ = json.Marshal(struct {
			Code    int32  `json:"code"`
			Message string `json:"message"`
		}{code, msg})
	} else {
		body = protowire.AppendTag(body, 1, protowire.VarintType)
		body = protowire.AppendVarint(body, uint64(code))
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendString(body, msg)
	}
	w.Header().Set("Content-Type", contentType(isJSON))
	w.WriteHeader(httpStatus)
	w.Write(body)
}
