package index

import (
	"encoding/json"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/trailaudit/trail/client"
)

// docOf returns client.DocOf(entry): the index and the client must derive
// the same document from an entry. DocOf decodes with encoding/json, more
// than a third of the indexing time; fastDoc reads the envelopes the
// server writes in one pass, and gives up (to DocOf) on anything it does
// not read exactly as encoding/json would.
func docOf(entry []byte) (client.SearchDoc, error) {
	if d, ok := fastDoc(entry); ok {
		return d, nil
	}
	return client.DocOf(entry)
}

// docScan reads JSON strictly; any doubt ends it with ok false.
type docScan struct {
	b []byte
	i int
}

// maxDocDepth is the nesting fastDoc reads; deeper is left to DocOf.
const maxDocDepth = 64

// docFields is what fastFields reads of an envelope: the document but its
// text, and what the text is made of.
type docFields struct {
	doc client.SearchDoc // Text ""
	// strs are the strings whose words start the text, in order; then
	// come the words of details and original's values.
	strs              [12]string
	details, original []byte
}

// fastDoc returns the document of an envelope without escapes, nulls or
// case variants in the fields DocOf reads, or false.
func fastDoc(b []byte) (client.SearchDoc, bool) {
	f, ok := fastFields(b)
	if !ok {
		return client.SearchDoc{}, false
	}
	t := make([]byte, 0, 256)
	for _, s := range f.strs {
		t = appendTokens(t, s)
	}
	t = appendJSONValues(t, f.details)
	t = appendJSONValues(t, f.original)
	if len(t) > 0 {
		t = t[:len(t)-1]
	}
	f.doc.Text = string(t)
	return f.doc, true
}

// fastFields reads an envelope as fastDoc does.
func fastFields(b []byte) (docFields, bool) {
	if !utf8.Valid(b) {
		return docFields{}, false
	}
	p := &docScan{b: b}
	var f docFields
	d := &f.doc
	var id, atype, ip, agent, reason string
	details, original := &f.details, &f.original
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
			return once(1<<0) && p.str(&d.Actor)
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
			return once(1<<4) && p.str(&d.ResourceType)
		case "id":
			return once(1<<5) && p.str(&d.ResourceID)
		}
		return p.unknown(key, 2, "type", "id")
	}
	event := func(key []byte) bool {
		switch string(key) {
		case "id":
			return once(1<<6) && p.str(&id)
		case "time":
			return once(1<<7) && p.time(&d.Time)
		case "actor":
			return once(1<<8) && p.object(2, actor)
		case "action":
			return once(1<<9) && p.str(&d.Action)
		case "resource":
			return once(1<<10) && p.object(2, resource)
		case "outcome":
			return once(1<<11) && p.str(&d.Outcome)
		case "reason":
			return once(1<<12) && p.str(&reason)
		case "details":
			return once(1<<13) && p.raw(details)
		case "original":
			return once(1<<14) && p.raw(original)
		}
		return p.unknown(key, 1, "id", "time", "actor", "action", "resource", "outcome", "reason", "details", "original")
	}
	top := func(key []byte) bool {
		switch string(key) {
		case "received":
			return once(1<<15) && p.time(&d.Received)
		case "source":
			return once(1<<16) && p.str(&d.Source)
		case "via":
			return once(1<<17) && p.str(&d.Via)
		case "event":
			return once(1<<18) && p.object(1, event)
		}
		return p.unknown(key, 0, "received", "source", "via", "event")
	}
	p.ws()
	if !p.object(0, top) {
		return docFields{}, false
	}
	if p.ws(); p.i != len(b) || d.Source == "" || d.Via == "" {
		return docFields{}, false
	}
	f.strs = [12]string{d.Source, d.Via, id, d.Actor, atype, ip, agent, d.Action, d.ResourceType, d.ResourceID, d.Outcome, reason}
	return f, true
}

func (p *docScan) ws() {
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
func (p *docScan) object(depth int, member func(key []byte) bool) bool {
	if depth > maxDocDepth || p.i >= len(p.b) || p.b[p.i] != '{' {
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
func (p *docScan) unknown(key []byte, depth int, known ...string) bool {
	for _, k := range known {
		if len(k) == len(key) && strings.EqualFold(k, string(key)) {
			return false
		}
	}
	return p.value(depth + 1)
}

// str reads a string without escapes. The string shares the entry's
// bytes: a document read by fastFields lives no longer than its entry, and
// entries are never changed once read.
func (p *docScan) str(dst *string) bool {
	v, ok := p.view()
	if ok && len(v) > 0 {
		*dst = unsafe.String(&v[0], len(v))
	}
	return ok
}

// view reads a string without escapes, returning its bytes.
func (p *docScan) view() ([]byte, bool) {
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

func (p *docScan) time(dst *time.Time) bool {
	start := p.i
	if _, ok := p.view(); !ok {
		return false
	}
	return dst.UnmarshalJSON(p.b[start:p.i]) == nil
}

// raw reads any value, as json.RawMessage holds it.
func (p *docScan) raw(dst *[]byte) bool {
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
func (p *docScan) value(depth int) bool {
	if depth > maxDocDepth || p.i >= len(p.b) {
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

func (p *docScan) literal(s string) bool {
	if !strings.HasPrefix(string(p.b[p.i:min(len(p.b), p.i+len(s))]), s) {
		return false
	}
	p.i += len(s)
	return true
}

// skipString skips a string, checking its escapes.
func (p *docScan) skipString() bool {
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
func (p *docScan) number() bool {
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

// The tokenizer below is client's (search.go), which DocOf uses: the same
// words, split the same way.

func isTokenRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Co, r)
}

func appendTokens(dst []byte, s string) []byte {
	in := false
	for _, r := range s {
		if r < utf8.RuneSelf {
			switch {
			case 'a' <= r && r <= 'z' || '0' <= r && r <= '9':
				dst = append(dst, byte(r))
				in = true
				continue
			case 'A' <= r && r <= 'Z':
				dst = append(dst, byte(r)+('a'-'A'))
				in = true
				continue
			}
		} else if isTokenRune(r) {
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
			in = true
			continue
		}
		if in {
			dst = append(dst, ' ')
			in = false
		}
	}
	if in {
		dst = append(dst, ' ')
	}
	return dst
}

func appendJSONValues(dst []byte, v []byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			start, esc := i, false
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					esc = true
					i++
				}
			}
			raw := v[start : i+1]
			j := i + 1
			for j < len(v) && (v[j] == ' ' || v[j] == '\t' || v[j] == '\n' || v[j] == '\r') {
				j++
			}
			if j < len(v) && v[j] == ':' {
				continue // a key
			}
			s := string(raw[1 : len(raw)-1])
			if esc {
				if err := json.Unmarshal(raw, &s); err != nil {
					continue
				}
			}
			dst = appendTokens(dst, s)
		case c == '-' || '0' <= c && c <= '9':
			start := i
			for i+1 < len(v) && strings.IndexByte("0123456789+-.eE", v[i+1]) >= 0 {
				i++
			}
			dst = appendTokens(dst, string(v[start:i+1]))
		}
	}
	return dst
}
