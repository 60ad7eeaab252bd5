package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// timePattern is the pattern of "time" in schema.json; a test checks that
// the two are the same.
const timePattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$`

var timeRE = regexp.MustCompile(timePattern)

// Parse decodes and validates one event as a producer sends it (see the
// package documentation for the fields and limits). It sets Outcome to
// Unknown when the body has none, and stores Details and Original compact.
//
// Every error it returns is a *ValidationError naming one bad field: it is
// the producer's fault, and the message is fit to return to them (HTTP 400).
func Parse(data []byte) (Event, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Event{}, invalid("", "empty body")
	}
	if len(data) > MaxSize {
		return Event{}, invalid("", "event larger than %d bytes", MaxSize)
	}
	if e, ok := parseFast(data); ok && e.Validate() == nil {
		return e, nil
	}
	return parseGeneral(data)
}

// parseGeneral is Parse without the fast path: it handles every input and
// finds the first problem.
func parseGeneral(data []byte) (Event, error) {
	top, err := decodeObject(data, MaxDepth)
	if err != nil {
		return Event{}, err
	}
	e, err := decodeEvent(top)
	if err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	return e, nil
}

var (
	eventFields    = []string{"id", "time", "actor", "action", "resource", "outcome", "reason", "details", "original"}
	actorFields    = []string{"id", "type", "ip", "user_agent"}
	resourceFields = []string{"type", "id"}
)

// decodeEvent decodes the fields of an event object, checking their JSON
// types in schema order; Validate checks their values.
func decodeEvent(o *object) (Event, error) {
	var e Event
	o.only(eventFields)
	o.str("id", false, &e.ID)
	var t string
	if o.str("time", true, &t) {
		var ok bool
		if e.Time, ok = parseTime(t); !ok {
			o.fail("time", "must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z")
		}
	}
	if a := o.object("actor", true); a != nil {
		a.only(actorFields)
		a.str("id", true, &e.Actor.ID)
		a.str("type", false, &e.Actor.Type)
		a.str("ip", false, &e.Actor.IP)
		a.str("user_agent", false, &e.Actor.UserAgent)
	}
	o.str("action", true, &e.Action)
	if r := o.object("resource", false); r != nil {
		r.only(resourceFields)
		r.str("type", false, &e.Resource.Type)
		r.str("id", false, &e.Resource.ID)
	}
	e.Outcome = Unknown
	var outcome string
	if o.str("outcome", false, &outcome) {
		e.Outcome = Outcome(outcome)
	}
	o.str("reason", false, &e.Reason)
	if raw := o.raw("details"); raw != nil {
		if kind(raw) != "an object" {
			o.fail("details", "must be an object")
		} else {
			e.Details = compact(raw)
		}
	}
	if raw := o.raw("original"); raw != nil {
		if kind(raw) == "null" {
			o.fail("original", "must not be null")
		} else {
			e.Original = compact(raw)
		}
	}
	if err := o.problem(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// object decodes the members of one JSON object, remembering the first
// problem so that callers can decode field after field and check once.
type object struct {
	path    string
	members map[string]json.RawMessage
	// err is shared with the object's children, so that the first problem
	// anywhere in the event wins.
	err **ValidationError
}

func newObject(path string) *object {
	return &object{path: path, err: new(*ValidationError)}
}

// problem returns the first problem found, or nil.
func (o *object) problem() error {
	if *o.err == nil {
		return nil
	}
	return *o.err
}

func (o *object) field(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

func (o *object) fail(name, problem string) {
	if *o.err == nil {
		*o.err = invalid(o.field(name), "%s", problem)
	}
}

// only reports the first member, in sorted order, that is not in names.
func (o *object) only(names []string) {
	var unknown []string
	for k := range o.members {
		if !slices.Contains(names, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		o.fail(shorten(unknown[0]), "unknown field")
	}
}

// raw returns the member name, or nil if it is absent or an earlier member
// was bad.
func (o *object) raw(name string) json.RawMessage {
	if *o.err != nil {
		return nil
	}
	return o.members[name]
}

// str decodes the string member name into dst and reports whether it did.
func (o *object) str(name string, required bool, dst *string) bool {
	if *o.err != nil {
		return false
	}
	raw, ok := o.members[name]
	switch {
	case !ok && required:
		o.fail(name, "required")
	case !ok:
	case kind(raw) != "a string":
		o.fail(name, "must be a string")
	default:
		if err := json.Unmarshal(raw, dst); err != nil {
			o.fail(name, "must be a string")
			return false
		}
		return true
	}
	return false
}

// object returns the object member name, or nil if it is absent or bad.
// Problems inside it are reported through o.
func (o *object) object(name string, required bool) *object {
	if *o.err != nil {
		return nil
	}
	raw, ok := o.members[name]
	switch {
	case !ok && required:
		o.fail(name, "required")
	case !ok:
	case kind(raw) != "an object":
		o.fail(name, "must be an object")
	default:
		child := &object{path: o.field(name), err: o.err}
		if err := json.Unmarshal(raw, &child.members); err != nil {
			o.fail(name, "must be an object")
			return nil
		}
		return child
	}
	return nil
}

// decodeObject checks that data is one JSON object of valid UTF-8 with no
// duplicate keys and no nesting deeper than maxDepth, and returns its
// members.
func decodeObject(data []byte, maxDepth int) (*object, error) {
	if !utf8.Valid(data) {
		return nil, invalid("", "invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, syntaxError(err)
	}
	if tok != json.Delim('{') {
		return nil, invalid("", "must be a JSON object")
	}
	if err := scanObject(dec, "", 1, maxDepth); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalid("", "unexpected data after the JSON object")
	}
	o := newObject("")
	if err := json.Unmarshal(data, &o.members); err != nil {
		return nil, syntaxError(err)
	}
	return o, nil
}

// scanObject reads the members and closing brace of an object whose
// opening brace dec has just read.
func scanObject(dec *json.Decoder, path string, depth, maxDepth int) error {
	if depth > maxDepth {
		return invalid(path, "nested deeper than %d levels", maxDepth)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(err)
		}
		key, _ := tok.(string)
		p := shorten(key)
		if path != "" {
			p = path + "." + p
		}
		if seen[key] {
			return invalid(p, "duplicate key")
		}
		seen[key] = true
		if err := scanValue(dec, p, depth, maxDepth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return syntaxError(err)
}

// scanValue reads one value, at the given depth of its container.
func scanValue(dec *json.Decoder, path string, depth, maxDepth int) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(err)
	}
	switch tok {
	case json.Delim('{'):
		return scanObject(dec, path, depth+1, maxDepth)
	case json.Delim('['):
		if depth+1 > maxDepth {
			return invalid(path, "nested deeper than %d levels", maxDepth)
		}
		for i := 0; dec.More(); i++ {
			if err := scanValue(dec, path+"["+strconv.Itoa(i)+"]", depth+1, maxDepth); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return syntaxError(err)
	}
	return nil
}

// syntaxError turns a decoding error into a *ValidationError; nil stays nil.
func syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return invalid("", "invalid JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("", "invalid JSON: unexpected end of input")
	}
	return invalid("", "invalid JSON: %v", err)
}

// kind names the JSON type of the valid value v.
func kind(v []byte) string {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func compact(v []byte) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		panic("event: compact of checked JSON failed: " + err.Error())
	}
	return b.Bytes()
}

// shorten keeps error messages short when a producer sends a huge key.
func shorten(key string) string {
	const max = 64
	if len(key) <= max {
		return key
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(key[cut]) {
		cut--
	}
	return key[:cut] + "..."
}

// parseTime is time.Time's strict RFC 3339 parser behind the schema's
// pattern.
func parseTime(s string) (time.Time, bool) {
	var t time.Time
	if !timeRE.MatchString(s) || t.UnmarshalText([]byte(s)) != nil {
		return time.Time{}, false
	}
	return t, true
}
