// Package event defines trail's audit event, the JSON Schema that describes
// it, the strict parser the HTTP API validates request bodies with, and the
// leaf: the envelope the server writes around each event.
//
// # The event
//
// An Event says who (Actor) did what (Action) to what (Resource), when (Time,
// by the producer's clock) and with what result (Outcome, Reason), plus free
// Details. Producers that speak trail's own JSON send an Event as-is; adapters
// for other formats (Kubernetes audit, syslog, OTLP, Teleport) map each record
// to an Event and keep the record itself in Original, so nothing is lost.
//
// On the wire an event is one JSON object:
//
//	field               required  limit (Unicode code points unless bytes)
//	id                  no        1024; the producer's event id, for idempotency
//	time                yes       RFC 3339, optional fraction of a second
//	actor               yes       object
//	actor.id            yes       1..1024
//	actor.type          no        256
//	actor.ip            no        64, not checked to be an address
//	actor.user_agent    no        1024
//	action              yes       1..256
//	resource            no        object
//	resource.type       no        256
//	resource.id         no        1024
//	outcome             no        success | failure | unknown (default unknown)
//	reason              no        4096
//	details             no        an object: 64 KiB compact, 16 levels deep
//	original            no        any JSON value but null
//
// The whole event is at most [MaxSize] bytes. Unknown fields, at the top level
// and inside actor and resource, are errors; so are duplicate keys anywhere
// and null in place of a value. An empty optional string is the same as an
// absent one. [Schema] is the same contract as a JSON Schema (draft 2020-12);
// tests keep the two in step.
//
// # The leaf
//
// The server wraps each accepted event in an [Envelope]: when it received it,
// from whom (the authenticated identity, never taken from the body), by which
// ingestion path, the idempotency key, the event, and a reserved section for
// encrypted personal data (see [Sealed]). [Encode] turns an Envelope into the
// leaf bytes, compact JSON with a fixed field order. Those bytes are what the
// log hashes, stores and serves; verifiers hash them as they are and never
// re-encode a decoded Envelope, so a change to this package's encoder can
// never invalidate an existing leaf.
package event

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// Schema is the JSON Schema (draft 2020-12) of an Event, as served to
// producers. Parse implements exactly this schema plus the limits its
// $comment lists.
//
//go:embed schema.json
var Schema []byte

// Limits of an event. String lengths count Unicode code points, as JSON
// Schema's maxLength does; sizes count bytes.
const (
	// MaxSize is the largest event Parse accepts, in bytes.
	MaxSize = 1 << 20
	// MaxDepth is the deepest nesting of objects and arrays in an event; the
	// event object itself is level 1.
	MaxDepth = 64
	// MaxIDLen bounds id, actor.id and resource.id.
	MaxIDLen = 1024
	// MaxActionLen bounds action.
	MaxActionLen = 256
	// MaxTypeLen bounds actor.type and resource.type.
	MaxTypeLen = 256
	// MaxIPLen bounds actor.ip.
	MaxIPLen = 64
	// MaxUserAgentLen bounds actor.user_agent.
	MaxUserAgentLen = 1024
	// MaxReasonLen bounds reason.
	MaxReasonLen = 4096
	// MaxDetailsSize bounds details, in bytes of compact JSON.
	MaxDetailsSize = 64 << 10
	// MaxDetailsDepth bounds the nesting of details; details itself is level 1.
	MaxDetailsDepth = 16
)

// Event is one audit event. The zero value is not valid: Time, Actor.ID and
// Action are required, and Outcome must be set (Parse sets it to Unknown when
// the body has none).
type Event struct {
	// ID is the producer's own id for the event, optional. The server may
	// use it as an idempotency key.
	ID string `json:"id,omitempty"`
	// Time is when the action happened, by the producer's clock. It keeps
	// the producer's UTC offset.
	Time time.Time `json:"time"`
	// Actor is who did it.
	Actor Actor `json:"actor"`
	// Action is what was done, for example "user.login".
	Action string `json:"action"`
	// Resource is what it was done to, optional.
	Resource Resource `json:"resource,omitzero"`
	// Outcome is the result.
	Outcome Outcome `json:"outcome"`
	// Reason explains the outcome, optional.
	Reason string `json:"reason,omitempty"`
	// Details is a free JSON object, optional. Parse stores it compact and
	// Encode writes it compact.
	Details json.RawMessage `json:"details,omitempty"`
	// Original is the sender's record this event was mapped from, compact
	// JSON, optional. Keys, their order, escapes and numbers are kept as
	// sent; only insignificant whitespace is dropped.
	Original json.RawMessage `json:"original,omitempty"`
}

// Actor is who performed an action.
type Actor struct {
	// ID identifies the actor, for example a user name or a service
	// account. Required.
	ID string `json:"id"`
	// Type is the kind of actor, for example "user" or "service".
	Type string `json:"type,omitempty"`
	// IP is the actor's address as the producer saw it. It is not checked
	// to be an address: producers send ports, zones and proxies' lists.
	IP string `json:"ip,omitempty"`
	// UserAgent is the actor's client software.
	UserAgent string `json:"user_agent,omitempty"`
}

// Resource is what an action was done to.
type Resource struct {
	// Type is the kind of resource, for example "secret".
	Type string `json:"type,omitempty"`
	// ID identifies the resource.
	ID string `json:"id,omitempty"`
}

// Outcome is the result of an action.
type Outcome string

// The outcomes an event may carry.
const (
	Success Outcome = "success"
	Failure Outcome = "failure"
	Unknown Outcome = "unknown"
)

// ValidationError reports the one field that made an event or a leaf
// invalid. Every error Parse returns is a *ValidationError, and its message
// is fit to show the producer (the HTTP API answers 400 with it).
type ValidationError struct {
	// Field is the dotted path of the bad field, such as "actor.id", with
	// array indexes in brackets ("details.list[2]"). It is empty when the
	// problem is the body as a whole (empty, not JSON, too large).
	Field string
	// Problem says what is wrong, for example "required".
	Problem string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

func invalid(field, format string, args ...any) *ValidationError {
	return &ValidationError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Validate checks e against the limits of the package documentation and
// returns a *ValidationError naming the first bad field, in schema order.
// It cannot see JSON-level faults (duplicate keys, wrong types), which
// Parse reports before it validates.
func (e *Event) Validate() error {
	return e.validate(nil)
}

// validate skips the presence check of the fields in sealed, whose clear
// value an Envelope replaces with ciphertext.
func (e *Event) validate(sealed map[string]Sealed) error {
	required := func(field string) int {
		if _, ok := sealed[field]; ok {
			return 0
		}
		return 1
	}
	if err := checkString("id", e.ID, 0, MaxIDLen); err != nil {
		return err
	}
	if e.Time.IsZero() {
		return invalid("time", "required")
	}
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return invalid("time", "year %d outside 0000..9999", y)
	}
	for _, c := range []struct {
		field    string
		value    string
		min, max int
	}{
		{"actor.id", e.Actor.ID, required("actor.id"), MaxIDLen},
		{"actor.type", e.Actor.Type, 0, MaxTypeLen},
		{"actor.ip", e.Actor.IP, 0, MaxIPLen},
		{"actor.user_agent", e.Actor.UserAgent, 0, MaxUserAgentLen},
		{"action", e.Action, 1, MaxActionLen},
		{"resource.type", e.Resource.Type, 0, MaxTypeLen},
		{"resource.id", e.Resource.ID, 0, MaxIDLen},
	} {
		if err := checkString(c.field, c.value, c.min, c.max); err != nil {
			return err
		}
	}
	switch e.Outcome {
	case Success, Failure, Unknown:
	default:
		return invalid("outcome", "must be one of success, failure, unknown")
	}
	if err := checkString("reason", e.Reason, 0, MaxReasonLen); err != nil {
		return err
	}
	if e.Details != nil {
		if err := checkDetails(e.Details); err != nil {
			return err
		}
	}
	if e.Original != nil {
		if !utf8.Valid(e.Original) || !json.Valid(e.Original) {
			return invalid("original", "invalid JSON")
		}
		if string(e.Original) == "null" {
			return invalid("original", "must not be null")
		}
	}
	return nil
}

func checkString(field, value string, minLen, maxLen int) error {
	if !utf8.ValidString(value) {
		return invalid(field, "invalid UTF-8")
	}
	n := utf8.RuneCountInString(value)
	switch {
	case n < minLen:
		return invalid(field, "required")
	case n > maxLen:
		return invalid(field, "longer than %d characters", maxLen)
	}
	return nil
}

func checkDetails(d json.RawMessage) error {
	if !utf8.Valid(d) || !json.Valid(d) {
		return invalid("details", "invalid JSON")
	}
	if kind(d) != "an object" {
		return invalid("details", "must be an object")
	}
	if len(d) > MaxDetailsSize {
		return invalid("details", "larger than %d bytes", MaxDetailsSize)
	}
	if depth(d) > MaxDetailsDepth {
		return invalid("details", "nested deeper than %d levels", MaxDetailsDepth)
	}
	return nil
}

// depth returns the deepest nesting of objects and arrays in the valid JSON
// value v.
func depth(v []byte) int {
	d, deepest, inString := 0, 0, false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case inString:
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			deepest = max(deepest, d)
		case c == '}' || c == ']':
			d--
		}
	}
	return deepest
}
