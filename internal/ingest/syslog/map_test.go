package syslog_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/syslog"
)

func mapRaw(raw string) event.Event {
	m := syslog.Parse([]byte(raw), received)
	return syslog.MapEvent(&m, []byte(raw), "sender-1", received)
}

func TestMapEvent(t *testing.T) {
	raw := `<86>1 2026-01-02T03:04:05.5+01:00 web1 sshd 77 LOGIN [origin ip="192.0.2.7"][x@1 k="a" k="b"][meta sequenceId="42"] ` + "\xef\xbb\xbfAccepted publickey for alice <ok> & done\n"
	ev := mapRaw(raw)
	want := event.Event{
		ID:      "syslog:42:" + ev.ID[len("syslog:42:"):],
		Time:    time.Date(2026, 1, 2, 3, 4, 5, 5e8, time.FixedZone("", 3600)),
		Actor:   event.Actor{ID: "sshd@web1", Type: "syslog", IP: "192.0.2.7"},
		Action:  "syslog.LOGIN",
		Outcome: event.Unknown,
		Details: json.RawMessage(`{"format":"rfc5424","facility":"authpriv","facility_code":10,"severity":"info","severity_code":6,` +
			`"hostname":"web1","app_name":"sshd","procid":"77","msgid":"LOGIN",` +
			`"structured_data":{"meta":{"sequenceId":"42"},"origin":{"ip":"192.0.2.7"},"x@1":{"k":["a","b"]}},` +
			`"msg":"Accepted publickey for alice <ok> & done","bom":true}`),
		Original: json.RawMessage(`{"raw":"<86>1 2026-01-02T03:04:05.5+01:00 web1 sshd 77 LOGIN [origin ip=\"192.0.2.7\"][x@1 k=\"a\" k=\"b\"][meta sequenceId=\"42\"] ` + "\ufeff" + `Accepted publickey for alice <ok> & done\n"}`),
	}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("MapEvent mismatch (-want +got):\n%s", diff)
	}
	if len(ev.ID) != len("syslog:42:")+32 {
		t.Errorf("ID = %q, want syslog:42: and 32 hex digits", ev.ID)
	}
	if err := ev.Validate(); err != nil {
		t.Error(err)
	}
	if again := mapRaw(raw); !cmp.Equal(again, ev) {
		t.Error("the same message mapped twice differs")
	}
	if other := mapRaw(strings.Replace(raw, "alice", "bob", 1)); other.ID == ev.ID {
		t.Error("different messages with one sequenceId got the same id")
	}
}

func TestMapEventFallbacks(t *testing.T) {
	for _, tc := range []struct {
		raw                    string
		actor, action, source  string
		id                     bool
		wantDetail, wantAbsent string
	}{
		// No TIMESTAMP: the received time, and no id even with a sequenceId.
		{raw: `<14>1 - - - - - [meta sequenceId="1"] x`, actor: "sender-1", action: "syslog.message", source: "received", wantAbsent: `"hostname"`},
		{raw: "<13>Mar  4 05:06:00 backup[4711]: done", actor: "backup", action: "syslog.backup", wantDetail: `"timestamp":"Mar  4 05:06:00"`},
		{raw: "<13>Mar  4 05:06:00 host1 plain text", actor: "host1", action: "syslog.message", wantDetail: `"msg":"plain text"`},
		{raw: "no pri at all", actor: "sender-1", action: "syslog.message", source: "received", wantDetail: `"no_pri":true`},
		{raw: `<14>1 2026-01-02T03:04:05Z h a - - [bad`, actor: "sender-1", action: "syslog.message", source: "received", wantDetail: `"parse_error":"at byte`},
		{raw: `<14>1 2026-01-02T03:04:05Z h a - - [meta sequenceId="0"] zero is not a sequenceId`, actor: "a@h", action: "syslog.a"},
		{raw: `<14>1 2026-01-02T03:04:05Z h a - - [meta sequenceId="5"] ok`, actor: "a@h", action: "syslog.a", id: true},
		{raw: "<14>1 2026-01-02T03:04:05Z h a - - - \xff\xfe bytes", actor: "a@h", action: "syslog.a", wantDetail: `"msg_not_utf8":true`},
	} {
		ev := mapRaw(tc.raw)
		if ev.Actor.ID != tc.actor || ev.Action != tc.action || (ev.ID != "") != tc.id {
			t.Errorf("MapEvent(%q): actor %q, action %q, id %q; want %q, %q, id %v", tc.raw, ev.Actor.ID, ev.Action, ev.ID, tc.actor, tc.action, tc.id)
		}
		if tc.source == "received" && !ev.Time.Equal(received) {
			t.Errorf("MapEvent(%q).Time = %v, want the received time", tc.raw, ev.Time)
		}
		d := string(ev.Details)
		if tc.wantDetail != "" && !strings.Contains(d, tc.wantDetail) {
			t.Errorf("MapEvent(%q).Details = %s, want %s in it", tc.raw, d, tc.wantDetail)
		}
		if tc.wantAbsent != "" && strings.Contains(d, tc.wantAbsent) {
			t.Errorf("MapEvent(%q).Details = %s, want no %s", tc.raw, d, tc.wantAbsent)
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("MapEvent(%q): %v", tc.raw, err)
		}
	}
	ev := mapRaw("<14>1 - - - - - - \xff")
	if want := `{"raw_base64":"PDE0PjEgLSAtIC0gLSAtIC0g/w=="}`; string(ev.Original) != want {
		t.Errorf("Original = %s, want %s", ev.Original, want)
	}
}

// TestMapEventLarge checks that a message far over the details limit still
// maps to a valid event: the text and the structured data are cut from
// details, never from original.
func TestMapEventLarge(t *testing.T) {
	big := strings.Repeat("é\x01", 100<<10) // escapes make the JSON six times longer
	raw := `<14>1 2026-01-02T03:04:05Z h a - - [x@1 v="` + strings.Repeat("v", 70<<10) + `"] ` + big
	ev := mapRaw(raw)
	if err := ev.Validate(); err != nil {
		t.Fatal(err)
	}
	d := string(ev.Details)
	for _, s := range []string{`"msg_truncated":true`, `"structured_data_omitted":true`} {
		if !strings.Contains(d, s) {
			t.Errorf("details lack %s", s)
		}
	}
	var o struct{ Raw string }
	if err := json.Unmarshal(ev.Original, &o); err != nil || o.Raw != raw {
		t.Errorf("original is not the whole message (err %v)", err)
	}
}
