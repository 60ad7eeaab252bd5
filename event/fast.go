package event

import (
	"bytes"
	"encoding/json"
	"time"
	"unicode/utf8"
)

// parseFast decodes the common shape of an event in one pass over data,
// without reflection: string members without escapes, details and original
// copied as they are. It reports false for anything else, and Parse then
// takes the general path, which also finds the error to report. So
// parseFast may give up freely, but when it succeeds (and Validate passes)
// its Event must be exactly the general path's: FuzzParseFast checks that.
func parseFast(data []byte) (Event, bool) {
	if !utf8.Valid(data) {
		return Event{}, false
	}
	p := scanner{b: data}
	var e Event
	p.ws()
	if !p.consume('{') {
		return Event{}, false
	}
	var seen uint16
	p.ws()
	if p.peek() == '}' {
		return Event{}, false // no members: the general path says what is missing
	}
	e.Outcome = Unknown
	for {
		p.ws()
		key, ok := p.plainString()
		if !ok {
			return Event{}, false
		}
		p.ws()
		if !p.consume(':') {
			return Event{}, false
		}
		p.ws()
		bit := uint16(0)
		switch string(key) {
		case "id":
			bit, ok = 1<<0, p.stringInto(&e.ID)
		case "time":
			var t string
			bit, ok = 1<<1, p.stringInto(&t)
			if ok {
				e.Time, ok = parseTimeFast(t)
			}
		case "actor":
			bit, ok = 1<<2, p.actor(&e.Actor)
		case "action":
			bit, ok = 1<<3, p.stringInto(&e.Action)
		case "resource":
			bit, ok = 1<<4, p.resource(&e.Resource)
		case "outcome":
			var s string
			bit, ok = 1<<5, p.stringInto(&s)
			e.Outcome = Outcome(s)
		case "reason":
			bit, ok = 1<<6, p.stringInto(&e.Reason)
		case "details":
			if p.peek() != '{' {
				return Event{}, false
			}
			bit = 1 << 7
			e.Details, ok = p.rawValue()
		case "original":
			if p.peek() == 'n' {
				return Event{}, false // null is refused by the general path
			}
			bit = 1 << 8
			e.Original, ok = p.rawValue()
		default:
			return Event{}, false
		}
		if !ok || seen&bit != 0 {
			return Event{}, false
		}
		seen |= bit
		p.ws()
		if p.consume(',') {
			continue
		}
		if !p.consume('}') {
			return Event{}, false
		}
		break
	}
	p.ws()
	if p.i != len(p.b) {
		return Event{}, false
	}
	return e, true
}

// scanner walks JSON bytes that are valid UTF-8.
type scanner struct {
	b []byte
	i int
}

func (p *scanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *scanner) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *scanner) consume(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// plainString reads a string without escapes or control characters and
// returns its bytes.
func (p *scanner) plainString() ([]byte, bool) {
	if !p.consume('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *scanner) stringInto(dst *string) bool {
	s, ok := p.plainString()
	if ok {
		*dst = string(s)
	}
	return ok
}

// members reads an object of plain string members, each of which set
// accepts by name (reporting whether it knows it), with no duplicates.
func (p *scanner) members(set func(key string, val string) (bit uint16)) bool {
	if !p.consume('{') {
		return false
	}
	p.ws()
	if p.consume('}') {
		return true
	}
	var seen uint16
	for {
		p.ws()
		key, ok := p.plainString()
		if !ok {
			return false
		}
		p.ws()
		if !p.consume(':') {
			return false
		}
		p.ws()
		val, ok := p.plainString()
		if !ok {
			return false
		}
		bit := set(string(key), string(val))
		if bit == 0 || seen&bit != 0 {
			return false
		}
		seen |= bit
		p.ws()
		if p.consume(',') {
			continue
		}
		return p.consume('}')
	}
}

func (p *scanner) actor(a *Actor) bool {
	return p.members(func(k, v string) uint16 {
		switch k {
		case "id":
			a.ID = v
			return 1
		case "type":
			a.Type = v
			return 2
		case "ip":
			a.IP = v
			return 4
		case "user_agent":
			a.UserAgent = v
			return 8
		}
		return 0
	})
}

func (p *scanner) resource(r *Resource) bool {
	return p.members(func(k, v string) uint16 {
		switch k {
		case "type":
			r.Type = v
			return 1
		case "id":
			r.ID = v
			return 2
		}
		return 0
	})
}

// rawValue skips one value and returns it compact. It gives up on keys with
// escapes (duplicates could hide behind them), on duplicate keys and on
// nesting past the general path's limit; Validate checks the grammar of
// what it returns.
func (p *scanner) rawValue() (json.RawMessage, bool) {
	start := p.i
	spaced := false
	if !p.skip(2, &spaced) { // the event is level 1; its members' values start at 2
		return nil, false
	}
	raw := p.b[start:p.i]
	if !spaced {
		return bytes.Clone(raw), true
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return nil, false
	}
	return b.Bytes(), true
}

// skip passes over one value at the given depth, noting in spaced whether
// it held insignificant whitespace.
func (p *scanner) skip(depth int, spaced *bool) bool {
	switch c := p.peek(); {
	case c == '{':
		if depth > MaxDepth {
			return false
		}
		p.i++
		var keys [][]byte
		p.skipWS(spaced)
		if p.consume('}') {
			return true
		}
		for {
			p.skipWS(spaced)
			key, ok := p.plainString()
			if !ok {
				return false
			}
			for _, k := range keys {
				if bytes.Equal(k, key) {
					return false
				}
			}
			keys = append(keys, key)
			p.skipWS(spaced)
			if !p.consume(':') {
				return false
			}
			p.skipWS(spaced)
			if !p.skip(depth+1, spaced) {
				return false
			}
			p.skipWS(spaced)
			if p.consume(',') {
				continue
			}
			return p.consume('}')
		}
	case c == '[':
		if depth > MaxDepth {
			return false
		}
		p.i++
		p.skipWS(spaced)
		if p.consume(']') {
			return true
		}
		for {
			p.skipWS(spaced)
			if !p.skip(depth+1, spaced) {
				return false
			}
			p.skipWS(spaced)
			if p.consume(',') {
				continue
			}
			return p.consume(']')
		}
	case c == '"':
		p.i++
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				p.i++
				return true
			case '\\':
				p.i++
			}
			p.i++
		}
		return false
	case c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n':
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return true
			}
			p.i++
		}
		return true
	}
	return false
}

func (p *scanner) skipWS(spaced *bool) {
	i := p.i
	p.ws()
	if p.i != i {
		*spaced = true
	}
}

// parseTimeFast checks the schema's time pattern by hand, then parses.
func parseTimeFast(s string) (time.Time, bool) {
	// 2006-01-02T15:04:05[.frac](Z|+07:00)
	if len(s) < 20 {
		return time.Time{}, false
	}
	for i := range 19 {
		c := s[i]
		switch i {
		case 4, 7:
			if c != '-' {
				return time.Time{}, false
			}
		case 10:
			if c != 'T' {
				return time.Time{}, false
			}
		case 13, 16:
			if c != ':' {
				return time.Time{}, false
			}
		default:
			if c < '0' || c > '9' {
				return time.Time{}, false
			}
		}
	}
	rest := s[19:]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return time.Time{}, false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':' &&
		isDigit(rest[1]) && isDigit(rest[2]) && isDigit(rest[4]) && isDigit(rest[5]):
	default:
		return time.Time{}, false
	}
	var t time.Time
	if t.UnmarshalText([]byte(s)) != nil {
		return time.Time{}, false
	}
	return t, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// SplitArray splits a JSON array into its elements, which alias b, without
// checking them: Parse checks each. It reports false when b is not an
// array it can split quickly (the caller then uses encoding/json, which
// also says what is wrong).
func SplitArray(b []byte) ([][]byte, bool) {
	p := scanner{b: b}
	p.ws()
	if !p.consume('[') {
		return nil, false
	}
	p.ws()
	if p.consume(']') {
		p.ws()
		return nil, p.i == len(p.b)
	}
	var out [][]byte
	var spaced bool
	for {
		p.ws()
		start := p.i
		if !p.skip(1, &spaced) {
			return nil, false
		}
		out = append(out, b[start:p.i])
		p.ws()
		if p.consume(',') {
			continue
		}
		if !p.consume(']') {
			return nil, false
		}
		p.ws()
		return out, p.i == len(p.b)
	}
}

// LeafKeys is what an idempotency memory needs of a leaf: who sent it, the
// keys it carries, and the event's canonical JSON (as Event.AppendJSON
// writes it), without decoding the event.
type LeafKeys struct {
	// Received is the envelope's received time, as written.
	Received string
	Source   string
	Key      string
	EventID  string
	// Event aliases the leaf.
	Event []byte
}

// ReadLeafKeys reads a leaf written by Encode in one pass. It reports false
// for any leaf it cannot read quickly (escaped strings, say); DecodeLeaf
// reads those.
func ReadLeafKeys(leaf []byte) (LeafKeys, bool) {
	var k LeafKeys
	p := scanner{b: leaf}
	field := func(name string) bool {
		if !p.consume('"') || !bytes.HasPrefix(p.b[p.i:], []byte(name)) {
			return false
		}
		p.i += len(name)
		return p.consume('"') && p.consume(':')
	}
	str := func(dst *string) bool {
		s, ok := p.plainString()
		*dst = string(s)
		return ok
	}
	var via string
	if !p.consume('{') || !field("received") || !str(&k.Received) ||
		!p.consume(',') || !field("source") || !str(&k.Source) ||
		!p.consume(',') || !field("via") || !str(&via) || !p.consume(',') {
		return LeafKeys{}, false
	}
	if bytes.HasPrefix(p.b[p.i:], []byte(`"key"`)) {
		if !field("key") || !str(&k.Key) || !p.consume(',') {
			return LeafKeys{}, false
		}
	}
	if !field("event") {
		return LeafKeys{}, false
	}
	start := p.i
	var spaced bool
	if p.peek() != '{' || !p.skip(2, &spaced) || spaced {
		return LeafKeys{}, false
	}
	k.Event = leaf[start:p.i]
	if c := p.peek(); c != '}' && c != ',' {
		return LeafKeys{}, false
	}
	e := scanner{b: k.Event, i: 1}
	if bytes.HasPrefix(k.Event, []byte(`{"id":`)) {
		e.i = len(`{"id":`)
		s, ok := e.plainString()
		if !ok {
			return LeafKeys{}, false
		}
		k.EventID = string(s)
	}
	return k, true
}
