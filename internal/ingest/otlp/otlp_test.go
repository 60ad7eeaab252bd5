package otlp_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/otlp"
)

var sampleFile = filepath.Join("..", "..", "..", "testdata", "samples", "otlp", "opentelemetry-proto_examples_logs.json")

func readSample(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(sampleFile)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func decodeJSON(tb testing.TB, b []byte) plog.Logs {
	tb.Helper()
	req := plogotlp.NewExportRequest()
	if err := req.UnmarshalJSON(b); err != nil {
		tb.Fatal(err)
	}
	return req.Logs()
}

func TestMapSample(t *testing.T) {
	res := otlp.Map(decodeJSON(t, readSample(t)))
	if res.Rejected != 0 || len(res.Events) != 1 {
		t.Fatalf("Map = %d events, %d rejected (%v); want 1, 0", len(res.Events), res.Rejected, res.Reasons)
	}
	ev := res.Events[0]
	want := event.Event{
		Time:    time.Unix(0, 1544712660300000000),
		Actor:   event.Actor{ID: "my.service", Type: "service"},
		Action:  otlp.DefaultAction,
		Outcome: event.Unknown,
	}
	if diff := cmp.Diff(want, ev, cmpopts.IgnoreFields(event.Event{}, "ID", "Details", "Original")); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(ev.ID, "otlp/") || len(ev.ID) != len("otlp/")+32 {
		t.Errorf("ID = %q, want otlp/ and 32 hex digits", ev.ID)
	}
	var d map[string]any
	if err := json.Unmarshal(ev.Details, &d); err != nil {
		t.Fatal(err)
	}
	wantDetails := map[string]any{
		"severity_text":   "Information",
		"severity_number": 10.0,
		"body":            "Example log record",
		"attributes": map[string]any{
			"string.attribute":  "some string",
			"boolean.attribute": true,
			"int.attribute":     10.0,
			"double.attribute":  637.704,
			"array.attribute":   []any{"many", "values"},
			"map.attribute":     map[string]any{"some.map.key": "some value"},
		},
		"resource":      map[string]any{"service.name": "my.service"},
		"scope":         map[string]any{"name": "my.library", "version": "1.0.0", "attributes": map[string]any{"my.scope.attribute": "some scope attribute"}},
		"trace_id":      "5b8efff798038103d269b633813fc60c",
		"span_id":       "eee19b7ec3c1b174",
		"observed_time": "2018-12-13T14:51:00.3Z",
	}
	if diff := cmp.Diff(wantDetails, d); diff != "" {
		t.Errorf("details mismatch (-want +got):\n%s", diff)
	}
	// The original is an OTLP/JSON request holding the record alone, and
	// decodes to the sample (which holds just this one record).
	again := decodeJSON(t, ev.Original)
	if diff := cmp.Diff(marshalJSON(t, decodeJSON(t, readSample(t))), marshalJSON(t, again)); diff != "" {
		t.Errorf("original does not decode to the sample (-sample +original):\n%s", diff)
	}
}

func marshalJSON(tb testing.TB, ld plog.Logs) string {
	tb.Helper()
	var m plog.JSONMarshaler
	b, err := m.MarshalLogs(ld)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// logs returns a request with one resource and scope and a record per
// edit, each with a time.
func logs(service string, edits ...func(plog.LogRecord)) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	if service != "" {
		rl.Resource().Attributes().PutStr("service.name", service)
	}
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("audit")
	for i, edit := range edits {
		lr := sl.LogRecords().AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Date(2026, 11, 29, 8, 0, i, 0, time.UTC)))
		edit(lr)
	}
	return ld
}

func TestMapFields(t *testing.T) {
	tests := []struct {
		name    string
		service string
		edit    func(plog.LogRecord)
		want    event.Event
	}{
		{"user and event name", "billing", func(lr plog.LogRecord) {
			lr.SetEventName("invoice.void")
			lr.Attributes().PutStr("user.id", "alice")
			lr.Attributes().PutStr("client.address", "10.0.0.7")
			lr.Attributes().PutStr("user_agent.original", "curl/8")
			lr.Attributes().PutStr("event.outcome", "failure")
		}, event.Event{Actor: event.Actor{ID: "alice", Type: "user", IP: "10.0.0.7", UserAgent: "curl/8"}, Action: "invoice.void", Outcome: event.Failure}},
		{"event.name attribute", "billing", func(lr plog.LogRecord) {
			lr.Attributes().PutStr("event.name", "login")
			lr.Attributes().PutStr("enduser.id", "bob")
		}, event.Event{Actor: event.Actor{ID: "bob", Type: "user"}, Action: "login", Outcome: event.Unknown}},
		{"no service", "", func(lr plog.LogRecord) {
			lr.Attributes().PutStr("event.outcome", "maybe")
		}, event.Event{Actor: event.Actor{ID: "unknown_service", Type: "service"}, Action: "otel.log", Outcome: event.Unknown}},
		{"observed time only", "svc", func(lr plog.LogRecord) {
			lr.SetTimestamp(0)
			lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
		}, event.Event{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Actor: event.Actor{ID: "svc", Type: "service"}, Action: "otel.log", Outcome: event.Unknown}},
		{"long user agent cut", "svc", func(lr plog.LogRecord) {
			lr.Attributes().PutStr("user_agent.original", strings.Repeat("u", 2000))
		}, event.Event{Actor: event.Actor{ID: "svc", Type: "service", UserAgent: strings.Repeat("u", event.MaxUserAgentLen)}, Action: "otel.log", Outcome: event.Unknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := otlp.Map(logs(tt.service, tt.edit))
			if res.Rejected != 0 {
				t.Fatalf("rejected: %v", res.Reasons)
			}
			ignore := []string{"ID", "Details", "Original"}
			if tt.want.Time.IsZero() {
				ignore = append(ignore, "Time")
			}
			if diff := cmp.Diff(tt.want, res.Events[0], cmpopts.IgnoreFields(event.Event{}, ignore...)); diff != "" {
				t.Errorf("event mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMapLargeDetails(t *testing.T) {
	res := otlp.Map(logs("svc",
		func(lr plog.LogRecord) {
			lr.Body().SetStr(strings.Repeat("b", 100_000))
			lr.Attributes().PutStr("k", "v")
		},
		func(lr plog.LogRecord) {
			lr.Body().SetStr("small")
			for i := range 2000 {
				lr.Attributes().PutStr(strings.Repeat("k", 10)+string(rune('a'+i%26))+strings.Repeat("x", i%50), strings.Repeat("v", 100))
			}
		},
		func(lr plog.LogRecord) {
			lr.Body().SetStr("small")
			m := lr.Attributes().PutEmptyMap("deep")
			for range 20 {
				m = m.PutEmptyMap("d")
			}
			lr.Attributes().PutDouble("nan", math.NaN())
		},
	))
	if res.Rejected != 0 || len(res.Events) != 3 {
		t.Fatalf("Map = %d events, rejected %v", len(res.Events), res.Reasons)
	}
	for i, want := range []struct{ body, attrs bool }{{false, true}, {true, false}, {true, false}} {
		var d struct {
			Body       any            `json:"body"`
			Attributes map[string]any `json:"attributes"`
			Truncated  bool           `json:"truncated"`
		}
		if err := json.Unmarshal(res.Events[i].Details, &d); err != nil {
			t.Fatal(err)
		}
		if got := (d.Body != nil); got != want.body || (d.Attributes != nil) != want.attrs || !d.Truncated {
			t.Errorf("record %d: body kept %v, attributes kept %v, truncated %v; want %v, %v, true", i, d.Body != nil, d.Attributes != nil, d.Truncated, want.body, want.attrs)
		}
		if len(res.Events[i].Original) < 100 {
			t.Errorf("record %d: original %s lacks the record", i, res.Events[i].Original)
		}
	}
}

func TestMapRejects(t *testing.T) {
	res := otlp.Map(logs("svc",
		func(lr plog.LogRecord) {},
		func(lr plog.LogRecord) { lr.SetTimestamp(0) },
		func(lr plog.LogRecord) { lr.SetEventName(strings.Repeat("a", 300)) },
		func(lr plog.LogRecord) { lr.Attributes().PutStr("user.id", strings.Repeat("u", 1025)) },
		func(lr plog.LogRecord) { lr.Attributes().PutStr("user.id", "bad\xffutf8") },
	))
	if len(res.Events) != 1 || res.Rejected != 4 {
		t.Fatalf("Map = %d events, %d rejected; want 1, 4", len(res.Events), res.Rejected)
	}
	want := []string{
		"resourceLogs[0].scopeLogs[0].logRecords[1]: time: timeUnixNano and observedTimeUnixNano are both 0",
		"resourceLogs[0].scopeLogs[0].logRecords[2]: action: longer than 256 characters",
		"resourceLogs[0].scopeLogs[0].logRecords[3]: actor.id: longer than 1024 characters",
		"resourceLogs[0].scopeLogs[0].logRecords[4]: ",
	}
	for i, w := range want {
		if i >= len(res.Reasons) || !strings.HasPrefix(res.Reasons[i], w) {
			t.Errorf("reason %d = %q, want %q...", i, res.Reasons, w)
		}
	}
	if msg := res.ErrorMessage(); !strings.HasPrefix(msg, "4 log records rejected: resourceLogs[0]") {
		t.Errorf("ErrorMessage = %q", msg)
	}
}

func TestMapIDs(t *testing.T) {
	a := otlp.Map(logs("svc", func(lr plog.LogRecord) { lr.Body().SetStr("x") }, func(lr plog.LogRecord) { lr.Body().SetStr("y") }))
	b := otlp.Map(logs("svc", func(lr plog.LogRecord) { lr.Body().SetStr("x") }))
	c := otlp.Map(logs("other", func(lr plog.LogRecord) { lr.Body().SetStr("x") }))
	if a.Events[0].ID != b.Events[0].ID {
		t.Errorf("the same record twice has IDs %q and %q", a.Events[0].ID, b.Events[0].ID)
	}
	if a.Events[0].ID == a.Events[1].ID || a.Events[0].ID == c.Events[0].ID {
		t.Errorf("different records (or resources) share an ID")
	}
}

// FuzzMap decodes arbitrary bodies as OTLP protobuf or JSON and maps them:
// every record is either a valid event or counted as rejected.
func FuzzMap(f *testing.F) {
	f.Add(readSample(f), true)
	req := plogotlp.NewExportRequestFromLogs(logs("svc", func(lr plog.LogRecord) {
		lr.SetEventName("e")
		lr.Attributes().PutStr("user.id", "u")
		lr.Body().SetEmptyBytes().FromRaw([]byte{0, 1})
	}))
	pb, _ := req.MarshalProto()
	f.Add(pb, false)
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		req := plogotlp.NewExportRequest()
		var err error
		if isJSON {
			err = req.UnmarshalJSON(body)
		} else {
			err = req.UnmarshalProto(body)
		}
		if err != nil {
			return
		}
		ld := req.Logs()
		res := otlp.Map(ld)
		if got := int64(len(res.Events)) + res.Rejected; got != int64(ld.LogRecordCount()) {
			t.Fatalf("%d events + %d rejected, want %d records", len(res.Events), res.Rejected, ld.LogRecordCount())
		}
		for i, ev := range res.Events {
			if err := ev.Validate(); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			// The original maps to the same event.
			again := otlp.Map(decodeJSON(t, ev.Original))
			if len(again.Events) != 1 {
				t.Fatalf("event %d: original maps to %d events (%v)", i, len(again.Events), again.Reasons)
			}
			if diff := cmp.Diff(ev, again.Events[0]); diff != "" {
				t.Fatalf("event %d: original maps to another event (-first +again):\n%s", i, diff)
			}
		}
	})
}
