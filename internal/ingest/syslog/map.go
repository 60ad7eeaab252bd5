package syslog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trailaudit/trail/event"
)

// facilityNames are RFC 5424's facility codes 0..23, in the keywords
// syslog daemons use.
var facilityNames = [...]string{
	"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
	"uucp", "cron", "authpriv", "ftp", "ntp", "audit", "alert", "clock",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
}

// severityNames are RFC 5424's severities 0..7.
var severityNames = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// maxDetailsMsg bounds the message text copied into details, in bytes. The
// whole message is always in original.
const maxDetailsMsg = 16 << 10

// details is the event's details object. The field order is the JSON
// order.
type details struct {
	Format       Format                    `json:"format"`
	Facility     string                    `json:"facility"`
	FacilityCode int                       `json:"facility_code"`
	Severity     string                    `json:"severity"`
	SeverityCode int                       `json:"severity_code"`
	NoPRI        bool                      `json:"no_pri,omitempty"`
	Timestamp    string                    `json:"timestamp,omitempty"`
	TimeSource   string                    `json:"time_source,omitempty"`
	Hostname     string                    `json:"hostname,omitempty"`
	AppName      string                    `json:"app_name,omitempty"`
	ProcID       string                    `json:"procid,omitempty"`
	MsgID        string                    `json:"msgid,omitempty"`
	SD           map[string]map[string]any `json:"structured_data,omitempty"`
	SDOmitted    bool                      `json:"structured_data_omitted,omitempty"`
	Msg          string                    `json:"msg,omitempty"`
	MsgTruncated bool                      `json:"msg_truncated,omitempty"`
	MsgNotUTF8   bool                      `json:"msg_not_utf8,omitempty"`
	BOM          bool                      `json:"bom,omitempty"`
	Problem      string                    `json:"parse_error,omitempty"`
}

// original is the event's original: the message as received, as text when
// it is UTF-8 and in base64 otherwise.
type original struct {
	Raw       *string `json:"raw,omitempty"`
	RawBase64 []byte  `json:"raw_base64,omitempty"`
}

// MapEvent maps a message to a trail event. raw is the message as framed
// (Original keeps it), sender the authenticated producer, received when it
// arrived. The mapping:
//
//   - time: TIMESTAMP; the received time if the message has none
//     (details.time_source is then "received");
//   - actor: id "APP-NAME@HOSTNAME" (either alone if the other is missing,
//     the sender if both are), type "syslog", ip from [origin ip=...];
//   - action: "syslog." + MSGID, else "syslog." + APP-NAME, else
//     "syslog.message";
//   - outcome: unknown (syslog has no notion of one);
//   - details: format, facility and severity (name and code), hostname,
//     app_name, procid, msgid, structured_data as {SD-ID: {PARAM: value}}
//     (a repeated PARAM becomes an array), msg (at most 16 KiB; the whole
//     message is in original);
//   - original: {"raw": "<message>"}, or {"raw_base64": "..."} for a
//     message that is not UTF-8;
//   - id: for an RFC 5424 message with a TIMESTAMP and a
//     [meta sequenceId], "syslog:<sequenceId>:<first 16 bytes of the
//     SHA-256 of raw, hex>", so that the same message sent again is
//     appended once; otherwise none.
//
// The event depends only on raw, sender and (for a message without a time)
// received, so an event with an id is the same each time it is sent.
func MapEvent(m *Message, raw []byte, sender string, received time.Time) event.Event {
	ev := event.Event{Time: m.Timestamp, Outcome: event.Unknown}
	d := details{
		Format:       m.Format,
		FacilityCode: m.Facility,
		SeverityCode: m.Severity,
		NoPRI:        !m.HasPRI,
		Timestamp:    clean(m.TimestampText),
		Hostname:     clean(m.Hostname),
		AppName:      clean(m.AppName),
		ProcID:       clean(m.ProcID),
		MsgID:        clean(m.MsgID),
		BOM:          m.BOM,
		Problem:      m.Problem,
	}
	if m.Facility < len(facilityNames) {
		d.Facility = facilityNames[m.Facility]
	}
	if m.Severity < len(severityNames) {
		d.Severity = severityNames[m.Severity]
	}
	if ev.Time.IsZero() || ev.Time.Year() > 9999 {
		ev.Time, d.TimeSource = received, "received"
	}

	host, app := d.Hostname, d.AppName
	switch {
	case app != "" && host != "":
		ev.Actor.ID = app + "@" + host
	case app != "":
		ev.Actor.ID = app
	case host != "":
		ev.Actor.ID = host
	default:
		ev.Actor.ID = sender
	}
	ev.Actor.ID = truncate(ev.Actor.ID, event.MaxIDLen)
	ev.Actor.Type = "syslog"
	if ip, ok := m.Param("origin", "ip"); ok && utf8.RuneCountInString(ip) <= event.MaxIPLen {
		ev.Actor.IP = ip
	}
	switch {
	case d.MsgID != "":
		ev.Action = "syslog." + d.MsgID
	case d.AppName != "":
		ev.Action = "syslog." + d.AppName
	default:
		ev.Action = "syslog.message"
	}
	ev.Action = truncate(ev.Action, event.MaxActionLen)

	if len(m.StructuredData) > 0 {
		d.SD = structuredData(m.StructuredData)
	}
	msg := m.Msg
	if !utf8.Valid(msg) {
		d.MsgNotUTF8 = true
		msg = []byte(strings.ToValidUTF8(string(msg), "\uFFFD"))
	}
	if len(msg) > maxDetailsMsg {
		msg, d.MsgTruncated = msg[:runeStart(msg, maxDetailsMsg)], true
	}
	d.Msg = string(msg)
	ev.Details = fitDetails(&d)

	var o original
	if utf8.Valid(raw) {
		s := string(raw)
		o.Raw = &s
	} else {
		o.RawBase64 = raw
	}
	ev.Original = marshal(o)

	if seq, ok := sequenceID(m); ok && m.Format == RFC5424 && !m.Timestamp.IsZero() {
		sum := sha256.Sum256(raw)
		ev.ID = "syslog:" + strconv.FormatInt(seq, 10) + ":" + hex.EncodeToString(sum[:16])
	}
	return ev
}

// structuredData turns SD-ELEMENTs into an object of objects. An SD-ID
// that appears twice (RFC 5424 forbids it) has its parameters merged; a
// parameter name that appears twice gets an array of its values.
func structuredData(sd []SDElement) map[string]map[string]any {
	out := make(map[string]map[string]any, len(sd))
	for _, e := range sd {
		params := out[e.ID]
		if params == nil {
			params = make(map[string]any, len(e.Params))
			out[e.ID] = params
		}
		for _, p := range e.Params {
			switch v := params[p.Name].(type) {
			case nil:
				params[p.Name] = p.Value
			case string:
				params[p.Name] = []string{v, p.Value}
			case []string:
				params[p.Name] = append(v, p.Value)
			}
		}
	}
	return out
}

// fitDetails encodes d within event.MaxDetailsSize: first the message
// text is shortened, then the structured data left out (both stay whole
// in original).
func fitDetails(d *details) json.RawMessage {
	for {
		b := marshal(d)
		if len(b) <= event.MaxDetailsSize {
			return b
		}
		switch {
		case len(d.Msg) > 1024:
			d.Msg, d.MsgTruncated = d.Msg[:runeStart([]byte(d.Msg), len(d.Msg)/2)], true
		case d.SD != nil:
			d.SD, d.SDOmitted = nil, true
		default:
			d.Msg, d.MsgTruncated = "", true
		}
	}
}

// marshal encodes v as compact JSON without HTML escapes.
func marshal(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only strings, numbers and maps of them
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// clean makes s valid UTF-8.
func clean(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// truncate cuts s to at most n characters.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// runeStart returns the largest i <= n at which a UTF-8 character of b
// starts.
func runeStart(b []byte, n int) int {
	for n > 0 && n < len(b) && !utf8.RuneStart(b[n]) {
		n--
	}
	return n
}
