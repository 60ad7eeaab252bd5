package event

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// appendEnvelope appends the JSON of env, which has no Encrypted section,
// exactly as encoding/json writes it with HTML escaping off, but without
// reflection: leaves are encoded once per event on the append path.
func appendEnvelope(b []byte, env *Envelope) ([]byte, error) {
	b = append(b, `{"received":`...)
	b = appendTime(b, env.Received)
	b = append(b, `,"source":`...)
	b = appendString(b, env.Source)
	b = append(b, `,"via":`...)
	b = appendString(b, env.Via)
	if env.Key != "" {
		b = append(b, `,"key":`...)
		b = appendString(b, env.Key)
	}
	b = append(b, `,"event":`...)
	b, err := appendEvent(b, &env.Event)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func appendEvent(b []byte, e *Event) ([]byte, error) {
	b = append(b, '{')
	if e.ID != "" {
		b = append(b, `"id":`...)
		b = appendString(b, e.ID)
		b = append(b, ',')
	}
	b = append(b, `"time":`...)
	b = appendTime(b, e.Time)
	b = append(b, `,"actor":{"id":`...)
	b = appendString(b, e.Actor.ID)
	for _, f := range [...]struct{ name, v string }{{"type", e.Actor.Type}, {"ip", e.Actor.IP}, {"user_agent", e.Actor.UserAgent}} {
		if f.v != "" {
			b = append(b, ',', '"')
			b = append(b, f.name...)
			b = append(b, '"', ':')
			b = appendString(b, f.v)
		}
	}
	b = append(b, `},"action":`...)
	b = appendString(b, e.Action)
	if e.Resource != (Resource{}) {
		b = append(b, `,"resource":{`...)
		if e.Resource.Type != "" {
			b = append(b, `"type":`...)
			b = appendString(b, e.Resource.Type)
		}
		if e.Resource.ID != "" {
			if e.Resource.Type != "" {
				b = append(b, ',')
			}
			b = append(b, `"id":`...)
			b = appendString(b, e.Resource.ID)
		}
		b = append(b, '}')
	}
	b = append(b, `,"outcome":`...)
	b = appendString(b, string(e.Outcome))
	if e.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, e.Reason)
	}
	var err error
	if len(e.Details) > 0 {
		b = append(b, `,"details":`...)
		if b, err = appendRaw(b, e.Details); err != nil {
			return nil, err
		}
	}
	if len(e.Original) > 0 {
		b = append(b, `,"original":`...)
		if b, err = appendRaw(b, e.Original); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendRaw appends a JSON value compacted, as encoding/json does with a
// json.RawMessage. Validate has checked raw; Parse makes it compact already.
func appendRaw(b, raw []byte) ([]byte, error) {
	if isCompact(raw) {
		return append(b, raw...), nil
	}
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json quotes it without HTML
// escaping: '"', '\\' and control characters escaped, U+2028 and U+2029
// escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// isCompact reports whether the valid JSON value v has no insignificant
// whitespace.
func isCompact(v []byte) bool {
	inString := false
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
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return false
		}
	}
	return true
}

// AppendJSON appends the event's JSON exactly as Encode writes it inside a
// leaf: the canonical form, the same for the same Event. It does not
// validate e.
func (e *Event) AppendJSON(b []byte) ([]byte, error) { return appendEvent(b, e) }
