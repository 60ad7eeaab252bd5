package syslog

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Format is the syntax a message was parsed as.
type Format string

const (
	// RFC5424 is a message that conforms to RFC 5424's syntax.
	RFC5424 Format = "rfc5424"
	// RFC3164 is anything else, parsed best effort as the BSD format of
	// RFC 3164: "<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG", each part
	// optional.
	RFC3164 Format = "rfc3164"
	// Invalid5424 is a message that announces RFC 5424 (PRI, then a
	// VERSION digit and a space) but breaks its syntax. Only PRI is taken
	// from it; Problem says where it went wrong and Msg holds the rest.
	Invalid5424 Format = "rfc5424-invalid"
)

// Message is one syslog message, parsed. Fields the message leaves out or
// gives as NILVALUE ("-") are empty.
type Message struct {
	Format Format
	// HasPRI is false when the message does not start with a valid PRI;
	// Facility and Severity then take RFC 3164's defaults, user and notice.
	HasPRI   bool
	Facility int
	Severity int
	// Version is RFC 5424's VERSION, normally 1.
	Version int
	// Timestamp is the message's time; zero if absent or NILVALUE.
	Timestamp time.Time
	// TimestampText is an RFC 3164 timestamp as sent, which carries no
	// year and no zone.
	TimestampText string
	Hostname      string
	AppName       string
	ProcID        string
	MsgID         string
	// StructuredData holds RFC 5424 SD-ELEMENTs in order, PARAM-VALUEs
	// unescaped.
	StructuredData []SDElement
	// BOM reports that MSG started with a UTF-8 byte order mark (RFC 5424's
	// MSG-UTF8), which Msg leaves out.
	BOM bool
	// Msg is the free-form message. One trailing LF (with a CR before it),
	// or NUL, that a sender appended is not part of it.
	Msg []byte
	// Problem says why a message that announced RFC 5424 is Invalid5424.
	Problem string
}

// SDElement is one RFC 5424 SD-ELEMENT.
type SDElement struct {
	ID     string
	Params []SDParam
}

// SDParam is one SD-PARAM, its value unescaped.
type SDParam struct {
	Name  string
	Value string
}

// Param returns the value of the first parameter name of the first element
// id.
func (m *Message) Param(id, name string) (string, bool) {
	for _, e := range m.StructuredData {
		if e.ID != id {
			continue
		}
		for _, p := range e.Params {
			if p.Name == name {
				return p.Value, true
			}
		}
	}
	return "", false
}

const bom = "\xef\xbb\xbf"

// Limits of RFC 5424's header fields, in bytes.
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
	maxSDName   = 32
)

// Parse parses one message. It never fails: a message that is not RFC 5424
// is parsed best effort as RFC 3164, or, if it announced RFC 5424 and broke
// its syntax, kept as Invalid5424. received is the time the message
// arrived, which supplies the year of an RFC 3164 timestamp.
func Parse(b []byte, received time.Time) Message {
	b = trimTrailer(b)
	var m Message
	rest, ok := m.parsePRI(b)
	if !ok {
		m.Facility, m.Severity = 1, 5 // RFC 3164 §4.3.3: a relay assumes <13>
		m.parse3164(b, received)
		return m
	}
	if v, after, ok := versionPrefix(rest); ok {
		m.Version = v
		if err := m.parse5424(after); err != nil {
			pri := Message{HasPRI: true, Facility: m.Facility, Severity: m.Severity, Version: v}
			m = pri
			m.Format = Invalid5424
			m.Problem = err.Error()
			m.Msg = rest
		}
		return m
	}
	m.parse3164(rest, received)
	return m
}

// trimTrailer drops one trailing LF (and a CR before it), or one NUL, that
// senders append to a message and count in its length.
func trimTrailer(b []byte) []byte {
	switch {
	case bytes.HasSuffix(b, []byte("\r\n")):
		return b[:len(b)-2]
	case bytes.HasSuffix(b, []byte("\n")), bytes.HasSuffix(b, []byte("\x00")):
		return b[:len(b)-1]
	}
	return b
}

// parsePRI reads "<PRIVAL>" with PRIVAL 0..191 in 1 to 3 digits.
func (m *Message) parsePRI(b []byte) ([]byte, bool) {
	if len(b) < 3 || b[0] != '<' {
		return b, false
	}
	i := 1
	for i < len(b) && i <= 4 && isDigit(b[i]) {
		i++
	}
	if i == 1 || i > 4 || i >= len(b) || b[i] != '>' {
		return b, false
	}
	if i > 2 && b[1] == '0' { // RFC 5424: no leading zeros
		return b, false
	}
	v, _ := strconv.Atoi(string(b[1:i]))
	if v > 191 {
		return b, false
	}
	m.HasPRI, m.Facility, m.Severity = true, v/8, v%8
	return b[i+1:], true
}

// versionPrefix reads RFC 5424's VERSION (NONZERO-DIGIT 0*2DIGIT) and the
// space after it.
func versionPrefix(b []byte) (int, []byte, bool) {
	if len(b) == 0 || b[0] < '1' || b[0] > '9' {
		return 0, b, false
	}
	i := 1
	for i < len(b) && i < 3 && isDigit(b[i]) {
		i++
	}
	if i >= len(b) || b[i] != ' ' {
		return 0, b, false
	}
	v, _ := strconv.Atoi(string(b[:i]))
	return v, b[i+1:], true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parse5424 parses what follows "<PRI>VERSION SP".
func (m *Message) parse5424(b []byte) error {
	m.Format = RFC5424
	p := parser{b: b}
	ts := p.field()
	if ts != "-" {
		t, err := parseTimestamp(ts)
		if err != nil {
			return p.errorf("TIMESTAMP %q: %v", ts, err)
		}
		m.Timestamp = t
	}
	for _, f := range []struct {
		name string
		max  int
		dst  *string
	}{
		{"HOSTNAME", maxHostname, &m.Hostname},
		{"APP-NAME", maxAppName, &m.AppName},
		{"PROCID", maxProcID, &m.ProcID},
		{"MSGID", maxMsgID, &m.MsgID},
	} {
		if !p.space() {
			return p.errorf("want a space before %s", f.name)
		}
		v := p.field()
		if err := checkHeaderField(v, f.max); err != nil {
			return p.errorf("%s: %v", f.name, err)
		}
		if v != "-" {
			*f.dst = v
		}
	}
	if !p.space() {
		return p.errorf("want a space before STRUCTURED-DATA")
	}
	if err := p.structuredData(m); err != nil {
		return err
	}
	if p.done() {
		return nil
	}
	if !p.space() {
		return p.errorf("want a space after STRUCTURED-DATA")
	}
	msg := p.b[p.i:]
	if bytes.HasPrefix(msg, []byte(bom)) {
		m.BOM, msg = true, msg[len(bom):]
	}
	m.Msg = msg
	return nil
}

// checkHeaderField checks an RFC 5424 header field: NILVALUE or 1 to max
// PRINTUSASCII characters.
func checkHeaderField(v string, max int) error {
	switch {
	case v == "":
		return fmt.Errorf("empty")
	case len(v) > max:
		return fmt.Errorf("longer than %d characters", max)
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 33 || v[i] > 126 {
			return fmt.Errorf("byte %#02x is not printable US-ASCII", v[i])
		}
	}
	return nil
}

// parser walks an RFC 5424 message after its VERSION.
type parser struct {
	b []byte
	i int
}

func (p *parser) done() bool { return p.i >= len(p.b) }

// errorf reports a problem at the current position, counted from the
// TIMESTAMP.
func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at byte %d after VERSION: %s", p.i, fmt.Sprintf(format, args...))
}

// field reads up to the next space or the end.
func (p *parser) field() string {
	j := p.i
	for j < len(p.b) && p.b[j] != ' ' {
		j++
	}
	v := string(p.b[p.i:j])
	p.i = j
	return v
}

func (p *parser) space() bool {
	if p.i < len(p.b) && p.b[p.i] == ' ' {
		p.i++
		return true
	}
	return false
}

// structuredData reads NILVALUE or one or more SD-ELEMENTs.
func (p *parser) structuredData(m *Message) error {
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
		return nil
	}
	if p.i >= len(p.b) || p.b[p.i] != '[' {
		return p.errorf("STRUCTURED-DATA: want '-' or '['")
	}
	for p.i < len(p.b) && p.b[p.i] == '[' {
		p.i++
		id, err := p.sdName("SD-ID")
		if err != nil {
			return err
		}
		el := SDElement{ID: id}
		for {
			if p.i >= len(p.b) {
				return p.errorf("SD-ELEMENT %q not closed with ']'", id)
			}
			if p.b[p.i] == ']' {
				p.i++
				break
			}
			if !p.space() {
				return p.errorf("SD-ELEMENT %q: want a space or ']'", id)
			}
			name, err := p.sdName("PARAM-NAME")
			if err != nil {
				return err
			}
			if p.i+1 >= len(p.b) || p.b[p.i] != '=' || p.b[p.i+1] != '"' {
				return p.errorf("PARAM-NAME %q: want =\"", name)
			}
			p.i += 2
			value, err := p.paramValue()
			if err != nil {
				return err
			}
			el.Params = append(el.Params, SDParam{Name: name, Value: value})
		}
		m.StructuredData = append(m.StructuredData, el)
	}
	return nil
}

// sdName reads an SD-NAME: 1 to 32 PRINTUSASCII except '=', SP, ']' and '"'.
func (p *parser) sdName(what string) (string, error) {
	j := p.i
	for j < len(p.b) {
		c := p.b[j]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			break
		}
		j++
	}
	switch n := j - p.i; {
	case n == 0:
		return "", p.errorf("%s: empty", what)
	case n > maxSDName:
		return "", p.errorf("%s: longer than %d characters", what, maxSDName)
	}
	name := string(p.b[p.i:j])
	p.i = j
	return name, nil
}

// paramValue reads a PARAM-VALUE and its closing quote. Inside it '"', '\'
// and ']' are escaped with '\'; a '\' before any other character is a
// literal backslash (RFC 5424 §6.3.3). The value must be UTF-8.
func (p *parser) paramValue() (string, error) {
	var sb strings.Builder
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '\\' && p.i+1 < len(p.b) && (p.b[p.i+1] == '"' || p.b[p.i+1] == '\\' || p.b[p.i+1] == ']'):
			sb.WriteByte(p.b[p.i+1])
			p.i += 2
		case c == '"':
			p.i++
			v := sb.String()
			if !utf8.ValidString(v) {
				return "", fmt.Errorf("at byte %d after VERSION: PARAM-VALUE is not UTF-8", start)
			}
			return v, nil
		case c == ']':
			// An unescaped ']' is forbidden; taking it literally would let a
			// broken sender's value swallow the next element.
			return "", p.errorf("unescaped ']' in PARAM-VALUE")
		default:
			sb.WriteByte(c)
			p.i++
		}
	}
	return "", fmt.Errorf("at byte %d after VERSION: PARAM-VALUE not closed with '\"'", start)
}

// parseTimestamp parses RFC 5424's TIMESTAMP: FULL-DATE "T" FULL-TIME with
// at most 6 digits of fraction and a "Z" or ±hh:mm offset, upper case.
func parseTimestamp(s string) (time.Time, error) {
	bad := func(what string) (time.Time, error) { return time.Time{}, fmt.Errorf("bad %s", what) }
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return bad("layout: want YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm)")
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if !isDigit(c) {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	hour, ok4 := num(11, 2)
	minute, ok5 := num(14, 2)
	sec, ok6 := num(17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return bad("digits")
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return bad("date")
	}
	if hour > 23 || minute > 59 || sec > 59 { // RFC 5424: no leap seconds
		return bad("time of day")
	}
	rest := s[19:]
	nsec := 0
	if strings.HasPrefix(rest, ".") {
		j := 1
		for j < len(rest) && isDigit(rest[j]) {
			j++
		}
		digits := rest[1:j]
		if len(digits) == 0 || len(digits) > 6 {
			return bad("fraction: want 1 to 6 digits")
		}
		f, _ := strconv.Atoi(digits + strings.Repeat("0", 9-len(digits)))
		nsec = f
		rest = rest[j:]
	}
	var loc *time.Location
	switch {
	case rest == "Z":
		loc = time.UTC
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, ok1 := num(len(s)-5, 2)
		om, ok2 := num(len(s)-2, 2)
		if !ok1 || !ok2 || oh > 23 || om > 59 {
			return bad("offset")
		}
		off := oh*3600 + om*60
		if rest[0] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	default:
		return bad("offset: want Z or +hh:mm")
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), nil
}

func daysIn(month, year int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// parse3164 parses b (after PRI, if any) best effort as
// "TIMESTAMP HOSTNAME TAG[PID]: MSG", where each part may be missing. The
// timestamp is "Mmm dd hh:mm:ss" (read in UTC, with the year that puts it
// nearest before received) or an RFC 3339 time.
func (m *Message) parse3164(b []byte, received time.Time) {
	m.Format = RFC3164
	rest := b
	if t, text, after, ok := bsdTimestamp(rest, received); ok {
		m.Timestamp, m.TimestampText, rest = t, text, after
	} else if t, text, after, ok := isoTimestamp(rest); ok {
		m.Timestamp, m.TimestampText, rest = t, text, after
	}
	if m.TimestampText != "" {
		// After a timestamp comes the host name, unless the next word is
		// already a tag ("sshd[42]:" or "sshd:").
		word, after, _ := bytes.Cut(rest, []byte(" "))
		if len(word) > 0 && len(word) <= maxHostname && !bytes.ContainsAny(word, "[:") && len(after) > 0 {
			m.Hostname, rest = string(word), after
		}
	}
	if tag, pid, after, ok := bsdTag(rest); ok {
		m.AppName, m.ProcID, rest = tag, pid, after
	}
	m.Msg = rest
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// bsdTimestamp reads "Mmm dd hh:mm:ss " (dd space-padded or two digits).
func bsdTimestamp(b []byte, received time.Time) (time.Time, string, []byte, bool) {
	const n = len("Jan _2 15:04:05")
	if len(b) < n+1 || b[n] != ' ' {
		return time.Time{}, "", b, false
	}
	text := string(b[:n])
	month := 0
	for i, name := range months {
		if text[:3] == name {
			month = i + 1
		}
	}
	if month == 0 || text[3] != ' ' || text[6] != ' ' || text[9] != ':' || text[12] != ':' {
		return time.Time{}, "", b, false
	}
	dayText := strings.TrimPrefix(text[4:6], " ")
	day, err1 := strconv.Atoi(dayText)
	hour, err2 := strconv.Atoi(text[7:9])
	minute, err3 := strconv.Atoi(text[10:12])
	sec, err4 := strconv.Atoi(text[13:15])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 60 {
		return time.Time{}, "", b, false
	}
	received = received.UTC()
	year := received.Year()
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.After(received.Add(7 * 24 * time.Hour)) {
		// "Dec 31" arriving on January 1st is from last year.
		t = time.Date(year-1, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	}
	if t.Day() != day { // Feb 30 and the like
		return time.Time{}, "", b, false
	}
	return t, text, b[n+1:], true
}

// isoTimestamp reads an RFC 3339 time and the space after it, as rsyslog's
// RSYSLOG_ForwardFormat writes it after PRI.
func isoTimestamp(b []byte) (time.Time, string, []byte, bool) {
	word, after, found := bytes.Cut(b, []byte(" "))
	if !found || len(word) < len("2006-01-02T15:04:05Z") || len(word) > 40 {
		return time.Time{}, "", b, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(word))
	if err != nil || t.Year() < 1 {
		return time.Time{}, "", b, false
	}
	return t, string(word), after, true
}

// bsdTag reads "TAG[PID]: " or "TAG: ". A word not followed by '[' or ':'
// is taken as the start of the message, not as a tag.
func bsdTag(b []byte) (tag, pid string, rest []byte, ok bool) {
	i := 0
	for i < len(b) && i <= maxAppName && b[i] > ' ' && b[i] < 127 && b[i] != '[' && b[i] != ':' {
		i++
	}
	if i == 0 || i > maxAppName || i >= len(b) {
		return "", "", b, false
	}
	tag = string(b[:i])
	j := i
	if b[j] == '[' {
		k := bytes.IndexByte(b[j:], ']')
		if k < 0 || k > maxProcID+1 {
			return "", "", b, false
		}
		pid = string(b[j+1 : j+k])
		if checkHeaderField(pid, maxProcID) != nil {
			return "", "", b, false
		}
		j += k + 1
	}
	if j < len(b) && b[j] == ':' {
		j++
	} else if pid == "" {
		return "", "", b, false
	}
	if j < len(b) && b[j] == ' ' {
		j++
	}
	return tag, pid, b[j:], true
}

// AppendRFC5424 appends m in RFC 5424 syntax (without framing). Empty
// header fields are written as NILVALUE and PARAM-VALUEs are escaped, so
// Parse gives back m for any m it returned as RFC5424.
func AppendRFC5424(b []byte, m *Message) []byte {
	b = fmt.Appendf(b, "<%d>%d ", m.Facility*8+m.Severity, max(m.Version, 1))
	if m.Timestamp.IsZero() {
		b = append(b, '-')
	} else {
		b = appendTimestamp(b, m.Timestamp)
	}
	for _, f := range []string{m.Hostname, m.AppName, m.ProcID, m.MsgID} {
		b = append(b, ' ')
		if f == "" {
			f = "-"
		}
		b = append(b, f...)
	}
	b = append(b, ' ')
	if len(m.StructuredData) == 0 {
		b = append(b, '-')
	}
	for _, e := range m.StructuredData {
		b = append(b, '[')
		b = append(b, e.ID...)
		for _, p := range e.Params {
			b = append(b, ' ')
			b = append(b, p.Name...)
			b = append(b, '=', '"')
			for i := 0; i < len(p.Value); i++ {
				if c := p.Value[i]; c == '"' || c == '\\' || c == ']' {
					b = append(b, '\\')
				}
				b = append(b, p.Value[i])
			}
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	if m.BOM || len(m.Msg) > 0 {
		b = append(b, ' ')
		if m.BOM {
			b = append(b, bom...)
		}
		b = append(b, m.Msg...)
	}
	return b
}

// appendTimestamp writes t as RFC 5424 allows: at most microseconds, the
// offset in minutes.
func appendTimestamp(b []byte, t time.Time) []byte {
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	if us := t.Nanosecond() / 1000; us != 0 {
		b = fmt.Appendf(b, ".%06d", us)
	}
	_, off := t.Zone()
	if off == 0 {
		return append(b, 'Z')
	}
	sign := byte('+')
	if off < 0 {
		sign, off = '-', -off
	}
	return fmt.Appendf(b, "%c%02d:%02d", sign, off/3600, off/60%60)
}
