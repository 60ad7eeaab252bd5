// Package generic receives JSON records from senders that post their own
// format and cannot be taught trail's (Teleport's event handler, webhooks
// of SaaS tools, fluentd-style HTTP outputs): the request's query maps the
// record's fields to the event model with JSON Pointers (RFC 6901), and the
// record is kept whole in Original.
//
//	POST /v1/generic?time=/time&actor=/user,teleport&action=/event&id=/uid
//
// Each parameter is a comma-separated list of alternatives, tried in
// order: a JSON Pointer (starting with "/") takes the value at that place
// in the record if it is there and not empty; anything else is a literal.
//
//	parameter      event field       value at the pointer
//	time           time (required)   an RFC 3339 string, or a number of Unix seconds
//	actor          actor.id (req.)   a string or number
//	action         action (req.)     a string or number
//	id             id                a string or number; the sender's record id, for retries
//	actor_type     actor.type
//	actor_ip       actor.ip
//	user_agent     actor.user_agent
//	resource_type  resource.type
//	resource_id    resource.id
//	outcome        outcome           true is success, false failure; or the string
//	                                 success, failure or unknown; else unknown
//	reason         reason
//	tag            details.tag       a literal; fluentd senders append to it
//
// Strings longer than the event model allows are cut to its limits (the
// record keeps them whole). A body is one JSON object, or an array of
// them; a record whose time, actor or action cannot be found fails the
// request with 400 naming it, and nothing is appended.
package generic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trailaudit/trail/event"
)

// params lists the query parameters, in the order Mapping applies them.
var params = []string{"time", "actor", "action", "id", "actor_type", "actor_ip", "user_agent", "resource_type", "resource_id", "outcome", "reason", "tag"}

// Mapping is a parsed query: for each parameter, its alternatives.
type Mapping struct {
	fields map[string][]string
}

// ParseMapping parses the query of a request. Unknown parameters, a
// parameter given twice, and a missing time, actor or action are errors.
func ParseMapping(q url.Values) (*Mapping, error) {
	m := &Mapping{fields: map[string][]string{}}
	for name, vs := range q {
		if !isParam(name) {
			return nil, fmt.Errorf("unknown query parameter %q: want %s", name, strings.Join(params, ", "))
		}
		if len(vs) != 1 {
			return nil, fmt.Errorf("query parameter %q given %d times", name, len(vs))
		}
		var alts []string
		for alt := range strings.SplitSeq(vs[0], ",") {
			if alt != "" {
				alts = append(alts, alt)
			}
		}
		m.fields[name] = alts
	}
	for _, name := range params[:3] {
		if len(m.fields[name]) == 0 {
			return nil, fmt.Errorf("query parameter %q is required: a JSON Pointer such as %s=/%s, or a literal", name, name, name)
		}
	}
	return m, nil
}

func isParam(name string) bool {
	for _, p := range params {
		if p == name {
			return true
		}
	}
	return false
}

// Map maps one record, the compact JSON object raw, to an event.
func (m *Mapping) Map(raw []byte) (event.Event, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return event.Event{}, fmt.Errorf("malformed JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, ok := doc.(map[string]any); !ok {
		return event.Event{}, errors.New("want a JSON object")
	}
	ev := event.Event{Outcome: event.Unknown, Original: raw}
	t, ok := m.find(doc, "time")
	if !ok {
		return event.Event{}, m.missing("time")
	}
	var err error
	if ev.Time, err = parseTime(t); err != nil {
		return event.Event{}, fmt.Errorf("time: %v", err)
	}
	for _, f := range []struct {
		name string
		dst  *string
		max  int
	}{
		{"actor", &ev.Actor.ID, event.MaxIDLen},
		{"action", &ev.Action, event.MaxActionLen},
		{"id", &ev.ID, event.MaxIDLen},
		{"actor_type", &ev.Actor.Type, event.MaxTypeLen},
		{"actor_ip", &ev.Actor.IP, event.MaxIPLen},
		{"user_agent", &ev.Actor.UserAgent, event.MaxUserAgentLen},
		{"resource_type", &ev.Resource.Type, event.MaxTypeLen},
		{"resource_id", &ev.Resource.ID, event.MaxIDLen},
		{"reason", &ev.Reason, event.MaxReasonLen},
	} {
		v, ok := m.find(doc, f.name)
		if !ok {
			if f.name == "actor" || f.name == "action" {
				return event.Event{}, m.missing(f.name)
			}
			continue
		}
		*f.dst = clip(text(v), f.max)
	}
	if v, ok := m.find(doc, "outcome"); ok {
		ev.Outcome = outcome(v)
	}
	if tag := m.fields["tag"]; len(tag) > 0 {
		ev.Details, _ = json.Marshal(map[string]string{"tag": clip(strings.Join(tag, ","), event.MaxIDLen)})
	}
	if err := ev.Validate(); err != nil {
		return event.Event{}, err
	}
	return ev, nil
}

func (m *Mapping) missing(name string) error {
	return fmt.Errorf("%s: none of %s found in the record", name, strings.Join(m.fields[name], ","))
}

// find returns the first alternative of parameter name that resolves in
// doc to a value other than null, "", an object or an array.
func (m *Mapping) find(doc any, name string) (any, bool) {
	for _, alt := range m.fields[name] {
		if !strings.HasPrefix(alt, "/") {
			return alt, true
		}
		v, ok := pointer(doc, alt)
		switch v := v.(type) {
		case nil, map[string]any, []any:
			continue
		case string:
			if v == "" {
				continue
			}
		}
		if ok {
			return v, true
		}
	}
	return nil, false
}

// pointer resolves the JSON Pointer p (RFC 6901) in doc.
func pointer(doc any, p string) (any, bool) {
	if p == "" {
		return doc, true
	}
	for tok := range strings.SplitSeq(p[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[tok]
			if !ok {
				return nil, false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(d) || tok != strconv.Itoa(i) {
				return nil, false
			}
			doc = d[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// text is a scalar as a string: strings as they are, numbers as written.
func text(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	return ""
}

func parseTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case string:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time", clip(v, 64))
		}
		return t, nil
	case json.Number:
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) || f < 0 || f > 253402300799 { // 9999-12-31
			return time.Time{}, fmt.Errorf("%s is not a time in Unix seconds", v)
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 string or Unix seconds, not %v", v)
}

func outcome(v any) event.Outcome {
	switch v := v.(type) {
	case bool:
		if v {
			return event.Success
		}
		return event.Failure
	case string:
		switch o := event.Outcome(strings.ToLower(v)); o {
		case event.Success, event.Failure, event.Unknown:
			return o
		}
	}
	return event.Unknown
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

// Records splits a body into its records, each compact: one JSON object,
// or an array of objects.
func Records(body []byte) ([][]byte, error) {
	body = bytes.TrimSpace(body)
	if !utf8.Valid(body) {
		return nil, errors.New("body: invalid UTF-8")
	}
	if len(body) > 0 && body[0] == '[' {
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("body: malformed JSON array: %v", strings.TrimPrefix(err.Error(), "json: "))
		}
		if len(raws) == 0 {
			return nil, errors.New("body: empty array")
		}
		out := make([][]byte, len(raws))
		for i, r := range raws {
			var b bytes.Buffer
			json.Compact(&b, r) // Unmarshal checked it
			out[i] = b.Bytes()
		}
		return out, nil
	}
	var b bytes.Buffer
	if len(body) == 0 || body[0] != '{' {
		return nil, errors.New("body: want a JSON object or an array of objects")
	}
	if err := json.Compact(&b, body); err != nil {
		return nil, fmt.Errorf("body: malformed JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	return [][]byte{b.Bytes()}, nil
}
