package otlp_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trailaudit/trail/internal/ingest/otlp"
	"github.com/trailaudit/trail/internal/tlsconf"
)

func gzipped(tb testing.TB, b []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func header(contentType, encoding string) http.Header {
	h := http.Header{"Content-Type": {contentType}}
	if encoding != "" {
		h.Set("Content-Encoding", encoding)
	}
	return h
}

func TestEndpointEncodings(t *testing.T) {
	ts := startServer(t)
	c := ts.client(t, "collector", tlsconf.RoleWriter)
	sample := readSample(t)
	protoBody, err := plogotlp.NewExportRequestFromLogs(logs("svc", func(lr plog.LogRecord) { lr.Body().SetStr("proto") })).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"json", "application/json", "", sample},
		{"json gzip", "application/json; charset=utf-8", "gzip", gzipped(t, sample)},
		{"protobuf", "application/x-protobuf", "", protoBody},
		{"protobuf gzip", "application/x-protobuf", "gzip", gzipped(t, protoBody)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, c, ts.url, header(tt.contentType, tt.encoding), tt.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST = %d %s", resp.StatusCode, body)
			}
			reply := plogotlp.NewExportResponse()
			if strings.HasPrefix(tt.contentType, "application/json") {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
				err = reply.UnmarshalJSON(body)
			} else {
				if ct := resp.Header.Get("Content-Type"); ct != "application/x-protobuf" {
					t.Errorf("Content-Type = %q, want application/x-protobuf", ct)
				}
				err = reply.UnmarshalProto(body)
			}
			if err != nil {
				t.Fatalf("response %q: %v", body, err)
			}
			if n := reply.PartialSuccess().RejectedLogRecords(); n != 0 {
				t.Errorf("rejected %d: %s", n, reply.PartialSuccess().ErrorMessage())
			}
		})
	}
	// The same records, compressed or not, are one entry each: the sample
	// and the protobuf record.
	envs := ts.entries(t)
	if len(envs) != 2 {
		t.Fatalf("log holds %d entries, want 2", len(envs))
	}
	for _, env := range envs {
		if env.Source != "collector" || env.Via != "otlp" {
			t.Errorf("source %q via %q, want collector via otlp", env.Source, env.Via)
		}
	}
	if envs[0].Event.Actor.ID != "my.service" || envs[1].Event.Actor.ID != "svc" {
		t.Errorf("actors %q, %q; want my.service, svc", envs[0].Event.Actor.ID, envs[1].Event.Actor.ID)
	}
}

func TestEndpointPartialSuccess(t *testing.T) {
	ts := startServer(t)
	c := ts.client(t, "collector", tlsconf.RoleWriter)
	ld := logs("svc",
		func(lr plog.LogRecord) { lr.Body().SetStr("kept") },
		func(lr plog.LogRecord) { lr.SetTimestamp(0) },
		func(lr plog.LogRecord) { lr.Body().SetStr("kept too") },
	)
	body, err := plogotlp.NewExportRequestFromLogs(ld).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	resp, out := post(t, c, ts.url, header("application/json", ""), body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST = %d %s", resp.StatusCode, out)
	}
	want := `{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"1 log records rejected: resourceLogs[0].scopeLogs[0].logRecords[1]: time: timeUnixNano and observedTimeUnixNano are both 0"}}`
	if string(out) != want {
		t.Errorf("response = %s\nwant %s", out, want)
	}
	if n := ts.log.Size(); n != 2 {
		t.Errorf("log holds %d entries, want 2", n)
	}
}

func TestEndpointErrors(t *testing.T) {
	ts := startServer(t)
	c := ts.client(t, "collector", tlsconf.RoleWriter)
	tests := []struct {
		name, contentType, encoding string
		body                        []byte
		status                      int
		want                        string // in the message
	}{
		{"malformed JSON", "application/json", "", []byte(`{"resourceLogs":[{`), 400, "malformed ExportLogsServiceRequest"},
		{"JSON with bad trace id", "application/json", "", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"xyz"}]}]}]}`), 400, "malformed ExportLogsServiceRequest"},
		{"malformed protobuf", "application/x-protobuf", "", []byte{0x0a, 0xff, 0xff}, 400, "malformed ExportLogsServiceRequest"},
		{"bad gzip", "application/x-protobuf", "gzip", []byte("not gzip"), 400, "malformed gzip body"},
		{"unknown encoding", "application/json", "br", []byte(`{}`), 415, "is not supported: use gzip"},
		{"wrong type", "text/plain", "", []byte(`{}`), 415, "Content-Type must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := post(t, c, ts.url, header(tt.contentType, tt.encoding), tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("POST = %d %q, want %d", resp.StatusCode, body, tt.status)
			}
			// A google.rpc.Status in the request's encoding: field 2 is the
			// message; JSON has "message".
			if !bytes.Contains(body, []byte(tt.want)) {
				t.Errorf("body %q lacks %q", body, tt.want)
			}
			if tt.contentType == "application/x-protobuf" {
				if _, _, n := protowire.ConsumeField(body); n <= 0 {
					t.Errorf("body %q is not a protobuf message", body)
				}
			}
		})
	}
	if n := ts.log.Size(); n != 0 {
		t.Errorf("log holds %d entries, want 0", n)
	}
}

// TestEndpointDecompressionLimit: a gzip bomb stops at MaxDecodedBytes.
func TestEndpointDecompressionLimit(t *testing.T) {
	defer otlp.SetMaxDecoded(1 << 20)()
	ts := startServer(t)
	c := ts.client(t, "collector", tlsconf.RoleWriter)
	bomb := gzipped(t, make([]byte, 1<<20+1))
	resp, body := post(t, c, ts.url, header("application/x-protobuf", "gzip"), bomb)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("POST = %d %q, want 413", resp.StatusCode, body)
	}
	if resp, body := post(t, c, ts.url, header("application/x-protobuf", "gzip"), gzipped(t, make([]byte, 1<<20))); resp.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("malformed")) {
		// 1 MiB of zeros is no valid request, but it is within the limit.
		t.Errorf("POST at the limit = %d %q, want 400 malformed", resp.StatusCode, body)
	}
}
