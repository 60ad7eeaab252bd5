package searchdoc

import (
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"
)

// NumStrs is the number of Fields.Strs.
const NumStrs = 12

// Fields is what Read reads of an envelope: the fields of the search
// document, and what its text is made of.
type Fields struct {
	Time, Received                                                time.Time
	Actor, Action, ResourceType, ResourceID, Outcome, Source, Via string
	// Strs are the strings whose words start the text, in order: source,
	// via, event id, actor id, actor type, ip, user agent, action,
	// resource type, resource id, outcome and reason.
	Strs [NumStrs]string
	// Details and Original are the event's values of those names, as
	// json.RawMessage holds them (empty if absent); the words of their
	// values end the text.
	Details, Original []byte
}

// Read reads the fields of an envelope as the client's DocOf does with
// encoding/json, in one pass, or returns false. It gives up on anything
// it does not read exactly as encoding/json would: invalid UTF-8, escapes
// in keys or in the strings it keeps, nulls and repeated keys where
// DocOf reads, keys that match one of DocOf's only without regard to
// case, nesting deeper than 64, and envelopes without a source or a via.
//
// The strings of Fields share b's bytes: they change if b does, so b
// must not change while they are in use.
func Read(b []byte) (Fields, bool) {
	if !utf8.Valid(b) {
		return Fields{}, false
	}
	p := &scanner{b: b}
	var f Fields
	var id, atype, ip, agent, reason string
	var seen uint32
	once := func(bit uint32) bool {
		if seen&bit != 0 {
			return false // a repeated key: encoding/json keeps the last, or merges objects
		}
		seen |= bit
		return true
	}
	actor := func(key []byte) bool {
		switch string(key) {
		case "id":
			return once(1<<0) && p.str(&f.Actor)
		case "type":
			return once(1<<1) && p.str(&atype)
		case "ip":
			return once(1<<2) && p.str(&ip)
		case "user_agent":
			return once(1<<3) && p.str(&agent)
		}
		return p.unknown(key, 2, "id", "type", "ip", "user_agent")
	}
	resource := func(key []byte) bool {
		switch string(key) {
		case "type":
			return once(1<<4) && p.str(&f.ResourceType)
		case "id":
			return once(1<<5) && p.str(&f.ResourceID)
		}
		return p.unknown(key, 2, "type", "id")
	}
	event := func(key []byte) bool {
		switch string(key) {
		case "id":
			return once(1<<6) && p.str(&id)
		case "time":
			return once(1<<7) && p.time(&f.Time)
		case "actor":
			return once(1<<8) && p.object(2, actor)
		case "action":
			return once(1<<9) && p.str(&f.Action)
		case "resource":
			return once(1<<10) && p.object(2, resource)
		case "outcome":
			return once(1<<11) && p.str(&f.Outcome)
		case "reason":
			return once(1<<12) && p.str(&reason)
		case "details":
			return once(1<<13) && p.raw(&f.Details)
		case "original":
			return once(1<<14) && p.raw(&f.Original)
		}
		return p.unknown(key, 1, "id", "time", "actor", "action", "resource", "outcome", "reason", "details", "original")
	}
	top := func(key []byte) bool {
		switch string(key) {
		case "received":
			return once(1<<15) && p.time(&f.Received)
		case "source":
			return once(1<<16) && p.str(&f.Source)
		case "via":
			return once(1<<17) && p.str(&f.Via)
		case "event":
			return once(1<<18) && p.object(1, event)
		}
		return p.unknown(key, 0, "received", "source", "via", "event")
	}
	p.ws()
	if !p.object(0, top) {
		return Fields{}, false
	}
	if p.ws(); p.i != len(b) || f.Source == "" || f.Via == "" {
		return Fields{}, false
	}
	f.Strs = [NumStrs]string{f.Source, f.Via, id, f.Actor, atype, ip, agent, f.Action, f.ResourceType, f.ResourceID, f.Outcome, reason}
	return f, true
}

// scanner reads JSON strictly; any doubt ends it with ok false.
type scanner struct {
	b []byte
	i int
}

// maxDepth is the nesting Read reads; deeper is left to DocOf.
const maxDepth = 64

func (p *scanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object reads an object, calling member with each key, to read its value.
// Keys must be ASCII without escapes.
func (p *scanner) object(depth int, member func(key []byte) bool) bool {
	if depth > maxDepth || p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.ws()
		key, ok := p.view()
		if !ok {
			return false
		}
		for k := 0; k < len(key); k++ {
			if key[k] >= utf8.RuneSelf {
				return false // could fold to a known key
			}
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.ws()
		if !member(key) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// unknown skips the value of a key that is none of known, unless it
// matches one without regard to case, as encoding/json would.
func (p *scanner) unknown(key []byte, depth int, known ...string) bool {
	for _, k := range known {
		if len(k) == len(key) && strings.EqualFold(k, string(key)) {
			return false
		}
	}
	return p.value(depth + 1)
}

// str reads a string without escapes. The string shares the bytes read,
// without a copy (see Read).
func (p *scanner) str(dst *string) bool {
	v, ok := p.view()
	if ok && len(v) > 0 {
		*dst = unsafe.String(&v[0], len(v))
	}
	return ok
}

// view reads a string without escapes, returning its bytes.
func (p *scanner) view() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	for i := start; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			p.i = i + 1
			return p.b[start:i], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

func (p *scanner) time(dst *time.Time) bool {
	start := p.i
	if _, ok := p.view(); !ok {
		return false
	}
	return dst.UnmarshalJSON(p.b[start:p.i]) == nil
}

// raw reads any value, as json.RawMessage holds it.
func (p *scanner) raw(dst *[]byte) bool {
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == 'n' {
		return false // null: left to encoding/json
	}
	if !p.value(2) {
		return false
	}
	*dst = p.b[start:p.i]
	return true
}

// value skips a valid JSON value.
func (p *scanner) value(depth int) bool {
	if depth > maxDepth || p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		return p.object(depth, func([]byte) bool { return p.value(depth + 1) })
	case c == '[':
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return true
		}
		for {
			p.ws()
			if !p.value(depth + 1) {
				return false
			}
			p.ws()
			if p.i >= len(p.b) {
				return false
			}
			if p.b[p.i] == ']' {
				p.i++
				return true
			}
			if p.b[p.i] != ',' {
				return false
			}
			p.i++
		}
	case c == '"':
		return p.skipString()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	}
	return false
}

func (p *scanner) literal(s string) bool {
	if !strings.HasPrefix(string(p.b[p.i:min(len(p.b), p.i+len(s))]), s) {
		return false
	}
	p.i += len(s)
	return true
}

// skipString skips a string, checking its escapes.
func (p *scanner) skipString() bool {
	for i := p.i + 1; i < len(p.b); i++ {
		switch c := p.b[i]; {
		case c == '"':
			p.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if i++; i >= len(p.b) {
				return false
			}
			switch p.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(p.b) {
					return false
				}
				for _, h := range p.b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

// number skips a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *scanner) number() bool {
	b, i := p.b, p.i
	digits := func() bool {
		j := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	p.i = i
	return true
}
