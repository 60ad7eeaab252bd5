package event

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"time"
)

// Envelope is a leaf of the log: an event as the server accepted it. Its
// JSON form, written by Encode, is
//
//	{"received":"2026-01-02T03:04:05.123456789Z","source":"...","via":"json",
//	 "key":"...","event":{...},"encrypted":{...}}
//
// with the members in that order, key and encrypted omitted when empty.
type Envelope struct {
	// Received is when the server accepted the event, by its own clock.
	// Encode writes it in UTC with up to nanosecond precision.
	Received time.Time `json:"received"`
	// Source is the authenticated identity of the producer (the client
	// certificate's or token's subject). It is never taken from the body.
	// Required, at most 1024 bytes.
	Source string `json:"source"`
	// Via names the ingestion path: "json", "k8s", "syslog", "otlp", ...
	// Required: lower-case letters, digits, '.' and '-', at most 32 bytes.
	Via string `json:"via"`
	// Key is the idempotency key the producer gave, if any; at most 1024
	// characters.
	Key string `json:"key,omitempty"`
	// Event is the normalised event.
	Event Event `json:"event"`
	// Encrypted is reserved for erasable personal data (GDPR Art. 17): it
	// maps the dotted path of an event field (one of SealableFields) to its
	// value encrypted under a per-data-subject key kept outside the log.
	// The clear Event leaves those fields empty. Destroying the key erases
	// the data while every hash and proof still verifies. This package
	// defines the shape only; it does no cryptography.
	Encrypted map[string]Sealed `json:"encrypted,omitempty"`
}

// Sealed is one encrypted event field.
type Sealed struct {
	// KID names the data subject's key, in the key store outside the log.
	KID string `json:"kid"`
	// Alg names the encryption algorithm, for example "A256GCM".
	Alg string `json:"alg"`
	// Ciphertext is the encrypted JSON encoding of the field's value,
	// including any nonce and tag the algorithm defines; base64 (standard,
	// padded) in JSON.
	Ciphertext []byte `json:"ciphertext"`
}

// SealableFields are the event fields that may hold personal data and so
// may be moved into Envelope.Encrypted.
var SealableFields = []string{"actor.id", "actor.ip", "actor.user_agent", "resource.id", "reason", "details", "original"}

// validVia matches ^[a-z0-9][a-z0-9.-]{0,31}$.
func validVia(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '-')) {
			return false
		}
	}
	return true
}

// Encode returns the leaf bytes of env: compact JSON, members in a fixed
// order, no HTML escaping, no trailing newline. The same Envelope always
// encodes to the same bytes. It returns a *ValidationError if env or its
// event is invalid, so that nothing invalid is ever appended.
//
// The bytes are what the log hashes. Verifiers must hash leaf bytes as
// stored and never re-encode a decoded Envelope.
func Encode(env Envelope) ([]byte, error) {
	if err := env.validate(); err != nil {
		return nil, err
	}
	env.Received = env.Received.UTC()
	if len(env.Encrypted) == 0 {
		return appendEnvelope(make([]byte, 0, 256+len(env.Event.Details)+len(env.Event.Original)), &env)
	}
	return encodeReflect(env)
}

// encodeReflect is Encode by encoding/json, the reference that
// appendEnvelope must match byte for byte (FuzzEncode checks).
func encodeReflect(env Envelope) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(env); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func (env *Envelope) validate() error {
	if env.Received.IsZero() {
		return invalid("received", "required")
	}
	if y := env.Received.UTC().Year(); y < 0 || y > 9999 {
		return invalid("received", "year %d outside 0000..9999", y)
	}
	if err := checkString("source", env.Source, 1, MaxIDLen); err != nil {
		return err
	}
	if !validVia(env.Via) {
		return invalid("via", "must be 1 to 32 of a-z, 0-9, '.' and '-'")
	}
	if err := checkString("key", env.Key, 0, MaxIDLen); err != nil {
		return err
	}
	if err := env.Event.validate(env.Encrypted); err != nil {
		ve := err.(*ValidationError)
		return invalid("event."+ve.Field, "%s", ve.Problem)
	}
	paths := make([]string, 0, len(env.Encrypted))
	for p := range env.Encrypted {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		s := env.Encrypted[p]
		field := "encrypted." + shorten(p)
		switch {
		case !slices.Contains(SealableFields, p):
			return invalid(field, "not one of %s", strings.Join(SealableFields, ", "))
		case !env.Event.empty(p):
			return invalid(field, "event.%s must be empty when it is encrypted", p)
		case s.KID == "" || len(s.KID) > MaxIDLen:
			return invalid(field+".kid", "must be 1 to %d bytes", MaxIDLen)
		case s.Alg == "" || len(s.Alg) > MaxTypeLen:
			return invalid(field+".alg", "must be 1 to %d bytes", MaxTypeLen)
		case len(s.Ciphertext) == 0:
			return invalid(field+".ciphertext", "required")
		}
	}
	return nil
}

// empty reports whether the sealable field path is empty in e.
func (e *Event) empty(path string) bool {
	switch path {
	case "actor.id":
		return e.Actor.ID == ""
	case "actor.ip":
		return e.Actor.IP == ""
	case "actor.user_agent":
		return e.Actor.UserAgent == ""
	case "resource.id":
		return e.Resource.ID == ""
	case "reason":
		return e.Reason == ""
	case "details":
		return e.Details == nil
	case "original":
		return e.Original == nil
	}
	return false
}

var envelopeFields = []string{"received", "source", "via", "key", "event", "encrypted"}

// DecodeLeaf decodes leaf bytes written by Encode, as strictly as Parse
// decodes events, and validates them as Encode does. Errors are
// *ValidationError. It accepts exactly what this version of Encode writes,
// and is meant for reading and display: to verify a leaf, hash its bytes.
func DecodeLeaf(leaf []byte) (Envelope, error) {
	var env Envelope
	if len(bytes.TrimSpace(leaf)) == 0 {
		return env, invalid("", "empty leaf")
	}
	o, err := decodeObject(leaf, MaxDepth+1)
	if err != nil {
		return env, err
	}
	o.only(envelopeFields)
	var received string
	if o.str("received", true, &received) {
		var ok bool
		env.Received, ok = parseTime(received)
		if !ok || !strings.HasSuffix(received, "Z") {
			o.fail("received", "must be an RFC 3339 time in UTC")
		}
	}
	o.str("source", true, &env.Source)
	o.str("via", true, &env.Via)
	o.str("key", false, &env.Key)
	if ev := o.object("event", true); ev != nil {
		env.Event, _ = decodeEvent(ev)
		if raw := ev.members["outcome"]; raw == nil && o.problem() == nil {
			// Encode always writes the outcome; Parse's default is for producers.
			o.fail("event.outcome", "required")
		}
	}
	if raw := o.raw("encrypted"); raw != nil {
		if kind(raw) != "an object" {
			o.fail("encrypted", "must be an object")
		} else if err := decodeSealed(raw, &env.Encrypted); err != nil {
			o.fail("encrypted", "must map field paths to {kid, alg, ciphertext}")
		}
	}
	if err := o.problem(); err != nil {
		return Envelope{}, err
	}
	if err := env.validate(); err != nil {
		return Envelope{}, err
	}
	return env, nil
}

func decodeSealed(raw []byte, dst *map[string]Sealed) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(dst)
}
