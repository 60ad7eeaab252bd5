// Package otlp receives OpenTelemetry logs over OTLP/HTTP (POST /v1/logs,
// protobuf or JSON, optionally gzip-compressed) and maps each log record to
// a trail event, keeping the record with its resource and scope in
// Original. Requests are decoded with the OpenTelemetry Collector's pdata
// packages, so OTLP's JSON rules (hex trace and span ids, integer enums,
// int64 as strings, both camelCase and snake_case names) are theirs.
//
// # Mapping
//
//	trail field      from the log record
//	id               "otlp/" + 32 hex digits of SHA-256(original)
//	time             timeUnixNano, else observedTimeUnixNano; a record with neither is rejected
//	action           eventName, else the attribute event.name, else "otel.log"
//	actor.id         the attribute user.id, enduser.id or user.name (actor.type "user"),
//	                 else the resource's service.name (actor.type "service"),
//	                 else "unknown_service" (as OpenTelemetry SDKs name an unnamed service)
//	actor.ip         the attribute client.address
//	actor.user_agent the attribute user_agent.original
//	outcome          the attribute event.outcome when success, failure or unknown; else unknown
//	details          severity_text, severity_number, event_name, body, attributes,
//	                 resource (its attributes), scope (name, version, attributes),
//	                 trace_id, span_id (hex), flags, observed_time; the body, else the
//	                 attribute maps, else both are left out (details.truncated) if details
//	                 would pass the event model's 64 KiB or 16 levels; they are in original
//	original         an OTLP/JSON ExportLogsServiceRequest holding this record alone, with
//	                 its resource and scope: any OTLP tool reads it
//
// actor.ip and actor.user_agent are cut to the event model's limits. A
// record whose action or actor.id does not fit, or whose strings are not
// UTF-8, is rejected: it is counted in the response's partial_success with
// the reason, and the other records are appended.
//
// # Retries
//
// OTLP has no record id, and an exporter resends a whole request after a
// timeout or a 429/503. The id is therefore a hash of the record with its
// resource and scope: a resent request appends nothing twice. The price:
// two records identical in every field, timestamps included, are logged
// once; and a retry later than the server's idempotency memory (the newest
// million ids, or after a restart those in the newest 100,000 entries)
// appends a copy.
package otlp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/trailaudit/trail/event"
)

// DefaultAction is the action of a record with no event name.
const DefaultAction = "otel.log"

// unknownService is the actor of a record with no user and no service.name.
const unknownService = "unknown_service"

// maxReasons bounds the rejection reasons quoted in partial_success.
const maxReasons = 5

// Result is what Map makes of a request.
type Result struct {
	// Events are the mapped records, valid, in request order.
	Events []event.Event
	// Rejected counts the records that could not be mapped.
	Rejected int64
	// Reasons names the first rejected records and why, as
	// "resourceLogs[0].scopeLogs[1].logRecords[2]: action: required".
	Reasons []string
}

// ErrorMessage is the partial_success error message for r: the first
// reasons, and how many more there were.
func (r Result) ErrorMessage() string {
	if r.Rejected == 0 {
		return ""
	}
	msg := fmt.Sprintf("%d log records rejected: %s", r.Rejected, strings.Join(r.Reasons, "; "))
	if more := r.Rejected - int64(len(r.Reasons)); more > 0 {
		msg += fmt.Sprintf("; and %d more", more)
	}
	return msg
}

// Map maps every log record of ld to an event, or rejects it.
func Map(ld plog.Logs) Result {
	var res Result
	res.Events = make([]event.Event, 0, ld.LogRecordCount())
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			sl := sls.At(j)
			lrs := sl.LogRecords()
			for k := range lrs.Len() {
				ev, err := mapRecord(rl, sl, lrs.At(k))
				if err != nil {
					res.Rejected++
					if len(res.Reasons) < maxReasons {
						res.Reasons = append(res.Reasons, fmt.Sprintf("resourceLogs[%d].scopeLogs[%d].logRecords[%d]: %v", i, j, k, err))
					}
					continue
				}
				res.Events = append(res.Events, ev)
			}
		}
	}
	return res
}

func mapRecord(rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord) (event.Event, error) {
	t := lr.Timestamp()
	if t == 0 {
		t = lr.ObservedTimestamp()
	}
	if t == 0 {
		return event.Event{}, errors.New("time: timeUnixNano and observedTimeUnixNano are both 0")
	}
	original, err := single(rl, sl, lr)
	if err != nil {
		return event.Event{}, err
	}
	sum := sha256.Sum256(original)
	attrs := lr.Attributes()
	ev := event.Event{
		ID:       "otlp/" + hex.EncodeToString(sum[:16]),
		Time:     t.AsTime(),
		Action:   lr.EventName(),
		Actor:    actor(attrs, rl.Resource().Attributes()),
		Outcome:  event.Unknown,
		Original: original,
	}
	if ev.Action == "" {
		ev.Action = str(attrs, "event.name")
	}
	if ev.Action == "" {
		ev.Action = DefaultAction
	}
	switch o := event.Outcome(str(attrs, "event.outcome")); o {
	case event.Success, event.Failure, event.Unknown:
		ev.Outcome = o
	}
	ev.Details, err = json.Marshal(recordDetails(rl, sl, lr, full))
	if err != nil { // values are converted to what JSON can hold: a bug
		return event.Event{}, fmt.Errorf("details: %v", err)
	}
	if err := ev.Validate(); err != nil {
		if ve, ok := errors.AsType[*event.ValidationError](err); !ok || ve.Field != "details" {
			return event.Event{}, err
		}
		// Too large or too deep: leave out the body, else the attributes,
		// else both.
		for _, level := range []detailLevel{noBody, noAttributes, noBody | noAttributes} {
			ev.Details, _ = json.Marshal(recordDetails(rl, sl, lr, level))
			if err = ev.Validate(); err == nil {
				break
			}
		}
		if err != nil {
			return event.Event{}, err
		}
	}
	return ev, nil
}

// single returns the OTLP/JSON of a request that holds lr alone, with its
// resource and scope.
func single(rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord) ([]byte, error) {
	one := plog.NewLogs()
	r := one.ResourceLogs().AppendEmpty()
	rl.Resource().CopyTo(r.Resource())
	r.SetSchemaUrl(rl.SchemaUrl())
	s := r.ScopeLogs().AppendEmpty()
	sl.Scope().CopyTo(s.Scope())
	s.SetSchemaUrl(sl.SchemaUrl())
	lr.CopyTo(s.LogRecords().AppendEmpty())
	var m plog.JSONMarshaler
	b, err := m.MarshalLogs(one)
	if err != nil {
		return nil, fmt.Errorf("original: %v", err)
	}
	if !utf8.Valid(b) {
		return nil, errors.New("a string is not valid UTF-8")
	}
	return b, nil
}

func actor(attrs, resource pcommon.Map) event.Actor {
	a := event.Actor{
		IP:        clip(str(attrs, "client.address"), event.MaxIPLen),
		UserAgent: clip(str(attrs, "user_agent.original"), event.MaxUserAgentLen),
	}
	for _, k := range []string{"user.id", "enduser.id", "user.name"} {
		if a.ID = str(attrs, k); a.ID != "" {
			a.Type = "user"
			return a
		}
	}
	a.ID, a.Type = str(resource, "service.name"), "service"
	if a.ID == "" {
		a.ID = unknownService
	}
	return a
}

// str returns the attribute k of m as a string, "" if absent.
func str(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

// detailLevel says what recordDetails leaves out.
type detailLevel int

const (
	full         detailLevel = 0
	noBody       detailLevel = 1 << 0
	noAttributes detailLevel = 1 << 1
)

type recordDetailsJSON struct {
	SeverityText   string         `json:"severity_text,omitempty"`
	SeverityNumber int32          `json:"severity_number,omitempty"`
	EventName      string         `json:"event_name,omitempty"`
	Body           any            `json:"body,omitempty"`
	Attributes     map[string]any `json:"attributes,omitempty"`
	Resource       map[string]any `json:"resource,omitempty"`
	Scope          *scopeJSON     `json:"scope,omitempty"`
	TraceID        string         `json:"trace_id,omitempty"`
	SpanID         string         `json:"span_id,omitempty"`
	Flags          uint32         `json:"flags,omitempty"`
	ObservedTime   string         `json:"observed_time,omitempty"`
	// Truncated says that body or attributes were left out for size; the
	// original has them.
	Truncated bool `json:"truncated,omitempty"`
}

type scopeJSON struct {
	Name       string         `json:"name,omitempty"`
	Version    string         `json:"version,omitempty"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

func recordDetails(rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord, level detailLevel) recordDetailsJSON {
	d := recordDetailsJSON{
		SeverityText:   lr.SeverityText(),
		SeverityNumber: int32(lr.SeverityNumber()),
		EventName:      lr.EventName(),
		Flags:          uint32(lr.Flags()),
		Truncated:      level != full,
	}
	if id := lr.TraceID(); !id.IsEmpty() {
		d.TraceID = hex.EncodeToString(id[:])
	}
	if id := lr.SpanID(); !id.IsEmpty() {
		d.SpanID = hex.EncodeToString(id[:])
	}
	if t := lr.ObservedTimestamp(); t != 0 {
		d.ObservedTime = t.AsTime().UTC().Format(time.RFC3339Nano)
	}
	if level&noBody == 0 {
		d.Body = plain(lr.Body())
	}
	withAttrs := level&noAttributes == 0
	sc := sl.Scope()
	if sc.Name() != "" || sc.Version() != "" || withAttrs && sc.Attributes().Len() > 0 {
		d.Scope = &scopeJSON{Name: sc.Name(), Version: sc.Version()}
	}
	if withAttrs {
		d.Attributes = plainMap(lr.Attributes())
		d.Resource = plainMap(rl.Resource().Attributes())
		if d.Scope != nil {
			d.Scope.Attributes = plainMap(sc.Attributes())
		}
	}
	return d
}

// plain converts an OTLP value to what encoding/json writes as its plain
// JSON form: bytes as base64, non-finite doubles as strings.
func plain(v pcommon.Value) any {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return v.Str()
	case pcommon.ValueTypeBool:
		return v.Bool()
	case pcommon.ValueTypeInt:
		return v.Int()
	case pcommon.ValueTypeDouble:
		f := v.Double()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return v.AsString()
		}
		return f
	case pcommon.ValueTypeBytes:
		return base64.StdEncoding.EncodeToString(v.Bytes().AsRaw())
	case pcommon.ValueTypeMap:
		return plainMap(v.Map())
	case pcommon.ValueTypeSlice:
		s := v.Slice()
		out := make([]any, s.Len())
		for i := range s.Len() {
			out[i] = plain(s.At(i))
		}
		return out
	}
	return nil
}

func plainMap(m pcommon.Map) map[string]any {
	if m.Len() == 0 {
		return nil
	}
	out := make(map[string]any, m.Len())
	for k, v := range m.All() {
		out[k] = plain(v)
	}
	return out
}

// clip cuts s to at most n characters.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
