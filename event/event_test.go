package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// validEvents are bodies Parse must accept, with the events they give.
func validEvents(t testing.TB) []struct {
	name string
	body string
	want Event
} {
	return []struct {
		name string
		body string
		want Event
	}{
		{
			name: "minimal",
			body: `{"time":"2026-01-02T03:04:05Z","actor":{"id":"alice"},"action":"user.login"}`,
			want: Event{Time: mustTime(t, "2026-01-02T03:04:05Z"), Actor: Actor{ID: "alice"}, Action: "user.login", Outcome: Unknown},
		},
		{
			name: "full",
			body: `{
				"id": "evt-1",
				"time": "2026-01-02T03:04:05.123456789+02:00",
				"actor": {"id": "alice", "type": "user", "ip": "203.0.113.10", "user_agent": "curl/8.0 <x&y>"},
				"action": "secrets.create",
				"resource": {"type": "secret", "id": "default/db-password"},
				"outcome": "failure",
				"reason": "forbidden",
				"details": {"b": [1, 2.50, {"c": null}], "a": "\u00e9<"},
				"original": {"kind": "Event", "n": 1e3}
			}`,
			want: Event{
				ID:       "evt-1",
				Time:     mustTime(t, "2026-01-02T03:04:05.123456789+02:00"),
				Actor:    Actor{ID: "alice", Type: "user", IP: "203.0.113.10", UserAgent: "curl/8.0 <x&y>"},
				Action:   "secrets.create",
				Resource: Resource{Type: "secret", ID: "default/db-password"},
				Outcome:  Failure,
				Reason:   "forbidden",
				Details:  json.RawMessage(`{"b":[1,2.50,{"c":null}],"a":"\u00e9<"}`),
				Original: json.RawMessage(`{"kind":"Event","n":1e3}`),
			},
		},
		{
			name: "empty optional strings and resource",
			body: `{"id":"","time":"2026-01-02T03:04:05.5-07:30","actor":{"id":"svc","type":""},"action":"x","resource":{},"outcome":"success","reason":""}`,
			want: Event{Time: mustTime(t, "2026-01-02T03:04:05.5-07:30"), Actor: Actor{ID: "svc"}, Action: "x", Outcome: Success},
		},
		{
			name: "original a string, details empty",
			body: "\ufeff"[:0] + `{"time":"2026-01-02T03:04:05Z","actor":{"id":"root"},"action":"sshd.login","original":"<34>1 2026-01-02T03:04:05Z host sshd - - - msg","details":{}}`,
			want: Event{Time: mustTime(t, "2026-01-02T03:04:05Z"), Actor: Actor{ID: "root"}, Action: "sshd.login", Outcome: Unknown,
				Original: json.RawMessage(`"<34>1 2026-01-02T03:04:05Z host sshd - - - msg"`), Details: json.RawMessage(`{}`)},
		},
		{
			name: "limits exactly",
			body: `{"time":"0000-01-01T00:00:00Z","actor":{"id":"` + strings.Repeat("é", MaxIDLen) + `"},"action":"` + strings.Repeat("a", MaxActionLen) + `"}`,
			want: Event{Time: mustTime(t, "0000-01-01T00:00:00Z"), Actor: Actor{ID: strings.Repeat("é", MaxIDLen)}, Action: strings.Repeat("a", MaxActionLen), Outcome: Unknown},
		},
	}
}

func TestParse(t *testing.T) {
	for _, tc := range validEvents(t) {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.body))
			if err != nil {
				t.Fatalf("Parse = %v, want success", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range validEvents(t) {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := Parse([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			env := Envelope{
				Received: time.Date(2026, 1, 2, 3, 4, 6, 7, time.FixedZone("x", 3600)),
				Source:   "CN=producer-1",
				Via:      "json",
				Key:      "k-1",
				Event:    ev,
			}
			leaf, err := Encode(env)
			if err != nil {
				t.Fatalf("Encode = %v", err)
			}
			got, err := DecodeLeaf(leaf)
			if err != nil {
				t.Fatalf("DecodeLeaf(%s) = %v", leaf, err)
			}
			if diff := cmp.Diff(env, got); diff != "" {
				t.Errorf("DecodeLeaf(Encode(env)) mismatch (-want +got):\n%s", diff)
			}
			if got.Received.Location() != time.UTC {
				t.Errorf("Received location = %v, want UTC", got.Received.Location())
			}
			again, err := Encode(got)
			if err != nil || string(again) != string(leaf) {
				t.Errorf("Encode(DecodeLeaf(leaf)) = %s, %v, want %s", again, err, leaf)
			}
			// The event inside the leaf is itself a valid producer event.
			var inner struct{ Event json.RawMessage }
			if err := json.Unmarshal(leaf, &inner); err != nil {
				t.Fatal(err)
			}
			reparsed, err := Parse(inner.Event)
			if err != nil {
				t.Fatalf("Parse(leaf event) = %v", err)
			}
			if diff := cmp.Diff(ev, reparsed); diff != "" {
				t.Errorf("Parse(leaf event) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeExact(t *testing.T) {
	env := Envelope{
		Received: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC),
		Source:   "CN=a&b",
		Via:      "k8s",
		Event: Event{
			Time:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", -3600)),
			Actor:   Actor{IP: "::1"},
			Action:  "<get>",
			Outcome: Success,
			Details: json.RawMessage(`{"a":"<&>"}`),
		},
		Encrypted: map[string]Sealed{
			"reason":   {KID: "subject-7", Alg: "A256GCM", Ciphertext: []byte{1, 2, 3}},
			"actor.id": {KID: "subject-7", Alg: "A256GCM", Ciphertext: []byte("hello")},
		},
	}
	got, err := Encode(env)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"received":"2026-01-02T03:04:05.123456789Z","source":"CN=a&b","via":"k8s","event":{"time":"2026-01-02T03:04:05-01:00","actor":{"id":""` +
		`,"ip":"::1"},"action":"<get>","outcome":"success","details":{"a":"<&>"}},"encrypted":{"actor.id":{"kid":"subject-7","alg":"A256GCM","ciphertext":"aGVsbG8="},` +
		`"reason":{"kid":"subject-7","alg":"A256GCM","ciphertext":"AQID"}}}`
	if string(got) != want {
		t.Errorf("Encode =\n%s\nwant\n%s", got, want)
	}
	back, err := DecodeLeaf(got)
	if err != nil {
		t.Fatalf("DecodeLeaf = %v", err)
	}
	if diff := cmp.Diff(env, back); diff != "" {
		t.Errorf("DecodeLeaf mismatch (-want +got):\n%s", diff)
	}
}

func TestEncodeInvalid(t *testing.T) {
	good := func() Envelope {
		return Envelope{
			Received: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Source:   "producer",
			Via:      "json",
			Event:    Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: Actor{ID: "a"}, Action: "x", Outcome: Unknown},
		}
	}
	seal := Sealed{KID: "k", Alg: "A256GCM", Ciphertext: []byte{1}}
	for _, tc := range []struct {
		name   string
		change func(*Envelope)
		want   string
	}{
		{"no received", func(e *Envelope) { e.Received = time.Time{} }, "received: required"},
		{"no source", func(e *Envelope) { e.Source = "" }, "source: required"},
		{"bad via", func(e *Envelope) { e.Via = "JSON" }, "via: must be 1 to 32 of a-z, 0-9, '.' and '-'"},
		{"no outcome", func(e *Envelope) { e.Event.Outcome = "" }, "event.outcome: must be one of success, failure, unknown"},
		{"no action", func(e *Envelope) { e.Event.Action = "" }, "event.action: required"},
		{"details not object", func(e *Envelope) { e.Event.Details = json.RawMessage(`[1]`) }, "event.details: must be an object"},
		{"original null", func(e *Envelope) { e.Event.Original = json.RawMessage(`null`) }, "event.original: must not be null"},
		{"not sealable", func(e *Envelope) { e.Encrypted = map[string]Sealed{"action": seal} }, "encrypted.action: not one of " + strings.Join(SealableFields, ", ")},
		{"sealed and clear", func(e *Envelope) { e.Encrypted = map[string]Sealed{"actor.id": seal} }, "encrypted.actor.id: event.actor.id must be empty when it is encrypted"},
		{"no kid", func(e *Envelope) { e.Encrypted = map[string]Sealed{"reason": {Alg: "a", Ciphertext: []byte{1}}} }, "encrypted.reason.kid: must be 1 to 1024 bytes"},
		{"no ciphertext", func(e *Envelope) { e.Encrypted = map[string]Sealed{"reason": {KID: "k", Alg: "a"}} }, "encrypted.reason.ciphertext: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := good()
			tc.change(&env)
			_, err := Encode(env)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Encode = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestDecodeLeafErrors(t *testing.T) {
	const ev = `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","outcome":"unknown"}`
	for _, tc := range []struct{ leaf, want string }{
		{``, "empty leaf"},
		{`{"received":"2026-01-02T03:04:05Z","source":"s","via":"json","event":` + ev + `,"extra":1}`, "extra: unknown field"},
		{`{"received":"2026-01-02T03:04:05+01:00","source":"s","via":"json","event":` + ev + `}`, "received: must be an RFC 3339 time in UTC"},
		{`{"received":"2026-01-02T03:04:05Z","via":"json","event":` + ev + `}`, "source: required"},
		{`{"received":"2026-01-02T03:04:05Z","source":"s","via":"json","event":{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x"}}`, "event.outcome: required"},
		{`{"received":"2026-01-02T03:04:05Z","source":"s","via":"json","event":{"time":"x","actor":{"id":"a"},"action":"x","outcome":"unknown"}}`, "event.time: must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z"},
		{`{"received":"2026-01-02T03:04:05Z","source":"s","via":"json","event":` + ev + `,"encrypted":{"reason":{"kid":"k","alg":"a","ciphertext":"AQ==","x":1}}}`, "encrypted: must map field paths to {kid, alg, ciphertext}"},
	} {
		_, err := DecodeLeaf([]byte(tc.leaf))
		if err == nil || err.Error() != tc.want {
			t.Errorf("DecodeLeaf(%s) = %v, want %q", tc.leaf, err, tc.want)
		}
	}
}

// badEvents are bodies Parse must refuse, with the error it must give.
// goOnly marks faults JSON Schema cannot see (see schema.json's $comment).
var badEvents = []struct {
	name   string
	body   string
	want   string
	goOnly bool
}{
	{"empty", "", "empty body", true},
	{"blank", " \n\t", "empty body", true},
	{"not JSON", `{"time":`, "invalid JSON: unexpected end of input", true},
	{"bad literal", `{"time":nope}`, "invalid JSON at byte 8: invalid character 'o' in literal null (expecting 'u')", true},
	{"array", `[1]`, "must be a JSON object", false},
	{"string", `"x"`, "must be a JSON object", false},
	{"null", `null`, "must be a JSON object", false},
	{"trailing data", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x"} {}`, "unexpected data after the JSON object", true},
	{"trailing garbage", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x"}]`, "unexpected data after the JSON object", true},
	{"invalid UTF-8", "{\"time\":\"2026-01-02T03:04:05Z\",\"actor\":{\"id\":\"a\xff\"},\"action\":\"x\"}", "invalid UTF-8", true},
	{"duplicate key", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","action":"y"}`, "action: duplicate key", true},
	{"duplicate escaped key", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a","\u0069d":"b"},"action":"x"}`, "actor.id: duplicate key", true},
	{"duplicate in details", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","details":{"l":[{"k":1,"k":2}]}}`, "details.l[0].k: duplicate key", true},
	{"unknown field", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","severity":3}`, "severity: unknown field", false},
	{"unknown actor field", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a","name":"A"},"action":"x"}`, "actor.name: unknown field", false},
	{"unknown resource field", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","resource":{"kind":"pod"}}`, "resource.kind: unknown field", false},
	{"no time", `{"actor":{"id":"a"},"action":"x"}`, "time: required", false},
	{"time not a string", `{"time":1767322645,"actor":{"id":"a"},"action":"x"}`, "time: must be a string", false},
	{"time not RFC 3339", `{"time":"2026-01-02 03:04:05Z","actor":{"id":"a"},"action":"x"}`, "time: must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z", false},
	{"time without zone", `{"time":"2026-01-02T03:04:05","actor":{"id":"a"},"action":"x"}`, "time: must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z", false},
	{"time lower-case z", `{"time":"2026-01-02T03:04:05z","actor":{"id":"a"},"action":"x"}`, "time: must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z", false},
	{"time month 13", `{"time":"2026-13-02T03:04:05Z","actor":{"id":"a"},"action":"x"}`, "time: must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z", true},
	{"time zero", `{"time":"0001-01-01T00:00:00Z","actor":{"id":"a"},"action":"x"}`, "time: required", true},
	{"no actor", `{"time":"2026-01-02T03:04:05Z","action":"x"}`, "actor: required", false},
	{"actor a string", `{"time":"2026-01-02T03:04:05Z","actor":"alice","action":"x"}`, "actor: must be an object", false},
	{"actor null", `{"time":"2026-01-02T03:04:05Z","actor":null,"action":"x"}`, "actor: must be an object", false},
	{"no actor id", `{"time":"2026-01-02T03:04:05Z","actor":{"type":"user"},"action":"x"}`, "actor.id: required", false},
	{"empty actor id", `{"time":"2026-01-02T03:04:05Z","actor":{"id":""},"action":"x"}`, "actor.id: required", false},
	{"actor id a number", `{"time":"2026-01-02T03:04:05Z","actor":{"id":7},"action":"x"}`, "actor.id: must be a string", false},
	{"actor id too long", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"` + strings.Repeat("é", MaxIDLen+1) + `"},"action":"x"}`, "actor.id: longer than 1024 characters", false},
	{"actor ip too long", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a","ip":"` + strings.Repeat("1", MaxIPLen+1) + `"},"action":"x"}`, "actor.ip: longer than 64 characters", false},
	{"user agent null", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a","user_agent":null},"action":"x"}`, "actor.user_agent: must be a string", false},
	{"no action", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"}}`, "action: required", false},
	{"empty action", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":""}`, "action: required", false},
	{"action too long", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"` + strings.Repeat("a", MaxActionLen+1) + `"}`, "action: longer than 256 characters", false},
	{"action an array", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":["x"]}`, "action: must be a string", false},
	{"resource an array", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","resource":[]}`, "resource: must be an object", false},
	{"resource id a bool", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","resource":{"id":true}}`, "resource.id: must be a string", false},
	{"outcome not in enum", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","outcome":"ok"}`, "outcome: must be one of success, failure, unknown", false},
	{"outcome empty", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","outcome":""}`, "outcome: must be one of success, failure, unknown", false},
	{"outcome null", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","outcome":null}`, "outcome: must be a string", false},
	{"reason too long", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","reason":"` + strings.Repeat("r", MaxReasonLen+1) + `"}`, "reason: longer than 4096 characters", false},
	{"id a number", `{"id":1,"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x"}`, "id: must be a string", false},
	{"details an array", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","details":[1]}`, "details: must be an object", false},
	{"details null", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","details":null}`, "details: must be an object", false},
	{"details too deep", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","details":` + strings.Repeat(`{"a":`, MaxDetailsDepth) + `[]` + strings.Repeat(`}`, MaxDetailsDepth) + `}`, "details: nested deeper than 16 levels", true},
	{"details too large", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","details":{"a":"` + strings.Repeat("d", MaxDetailsSize) + `"}}`, "details: larger than 65536 bytes", true},
	{"original null", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","original":null}`, "original: must not be null", false},
	{"original too deep", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","original":` + strings.Repeat(`[`, MaxDepth) + strings.Repeat(`]`, MaxDepth) + `}`, "original" + strings.Repeat("[0]", MaxDepth-1) + ": nested deeper than 64 levels", true},
	{"too large", `{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","original":"` + strings.Repeat("o", MaxSize) + `"}`, "event larger than 1048576 bytes", true},
	{"first bad field in schema order", `{"action":"","actor":{"id":""},"time":"x"}`, "time: must be an RFC 3339 time such as 2006-01-02T15:04:05.123Z", false},
}

func TestParseErrors(t *testing.T) {
	for _, tc := range badEvents {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.body))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v (%T), want *ValidationError %q", err, err, tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("Parse = %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range validEvents(f) {
		f.Add([]byte(tc.body))
	}
	for _, tc := range badEvents {
		if len(tc.body) < 4096 {
			f.Add([]byte(tc.body))
		}
	}
	received := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error %v is a %T, want *ValidationError", err, err)
			}
			return
		}
		leaf, err := Encode(Envelope{Received: received, Source: "s", Via: "json", Event: ev})
		if err != nil {
			t.Fatalf("Encode(Parse(%q)) = %v", data, err)
		}
		env, err := DecodeLeaf(leaf)
		if err != nil {
			t.Fatalf("DecodeLeaf(%s) = %v", leaf, err)
		}
		if diff := cmp.Diff(ev, env.Event); diff != "" {
			t.Fatalf("round trip of %q mismatch (-parsed +decoded):\n%s", data, diff)
		}
		again, err := Encode(env)
		if err != nil || string(again) != string(leaf) {
			t.Fatalf("re-encoding %s = %s, %v", leaf, again, err)
		}
	})
}

// FuzzParseFast checks that the fast path agrees with the general one:
// whatever it accepts, the general path accepts as the same Event.
func FuzzParseFast(f *testing.F) {
	for _, s := range []string{
		`{"time":"2026-01-02T03:04:05Z","actor":{"id":"alice"},"action":"login"}`,
		`{"id":"e1","time":"2026-01-02T03:04:05.123+02:00","actor":{"id":"a","type":"user","ip":"10.0.0.1","user_agent":"curl"},"action":"x","resource":{"type":"t","id":"i"},"outcome":"failure","reason":"r","details":{"a":[1,2.5e3,{"b":null}],"c":"\u00e9"},"original":[true, {"x" : "y"}]}`,
		`{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","details":{"a":1,"a":2}}`,
		`{"time":"2026-01-02T03:04:05Z","actor":{"id":"a"},"action":"x","original":"s"} `,
		` {"time":"2026-01-02T03:04:05Z","actor":{"id":"a","id":"b"},"action":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseFast(b)
		if !ok || fast.Validate() != nil {
			return
		}
		general, err := parseGeneral(b)
		if err != nil {
			t.Fatalf("fast path accepted %q, general path: %v", b, err)
		}
		if !fast.Time.Equal(general.Time) || fast.Time.String() != general.Time.String() {
			t.Fatalf("time: fast %v, general %v", fast.Time, general.Time)
		}
		fast.Time, general.Time = time.Time{}, time.Time{}
		if diff := cmp.Diff(general, fast); diff != "" {
			t.Fatalf("%q: fast path differs (-general +fast):\n%s", b, diff)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	ev := []byte(`{"id":"0b7c9a41","time":"2026-11-29T08:00:00.123Z","actor":{"id":"alice@example.com","type":"user","ip":"10.1.2.3","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0"},"action":"invoice.update","resource":{"type":"invoice","id":"inv-2026-00042"},"outcome":"success","details":{"amount":1250.5,"currency":"EUR","fields":["total","due_date"],"request_id":"7f3e2a1b9c"}}`)
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(ev)))
		for b.Loop() {
			if _, err := Parse(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		b.SetBytes(int64(len(ev)))
		for b.Loop() {
			if _, err := parseGeneral(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	ev, err := Parse([]byte(`{"id":"0b7c9a41","time":"2026-11-29T08:00:00.123Z","actor":{"id":"alice@example.com","type":"user","ip":"10.1.2.3","user_agent":"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0.0.0"},"action":"invoice.update","resource":{"type":"invoice","id":"inv-2026-00042"},"outcome":"success","details":{"amount":1250.5,"currency":"EUR","fields":["total","due_date"],"request_id":"7f3e2a1b9c"}}`))
	if err != nil {
		b.Fatal(err)
	}
	env := Envelope{Received: time.Now(), Source: "producer-1", Via: "json", Event: ev}
	for b.Loop() {
		if _, err := Encode(env); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzEncode checks the hand-written encoder against encoding/json.
func FuzzEncode(f *testing.F) {
	f.Add("e1", "alice\u2028\"\\\x01é", "user", "", "ua\t", "login", "", "id", "reason", `{"a": [1, 2]}`, `"x"`, "k")
	f.Add("", "a", "", "1.2.3.4", "", "x", "t", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, id, actor, atype, ip, ua, action, rtype, rid, reason, details, original, key string) {
		env := Envelope{
			Received: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
			Source:   "producer-1", Via: "json", Key: key,
			Event: Event{ID: id, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)),
				Actor:  Actor{ID: actor, Type: atype, IP: ip, UserAgent: ua},
				Action: action, Resource: Resource{Type: rtype, ID: rid}, Outcome: Success, Reason: reason},
		}
		if details != "" {
			env.Event.Details = json.RawMessage(details)
		}
		if original != "" {
			env.Event.Original = json.RawMessage(original)
		}
		if env.validate() != nil {
			return
		}
		want, err := encodeReflect(env)
		if err != nil {
			return
		}
		got, err := Encode(env)
		if err != nil {
			t.Fatalf("Encode: %v (encoding/json: %s)", err, want)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}

func TestValidVia(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,31}$`)
	for _, s := range []string{"", "json", "k8s", "a.b-c", ".x", "-x", "X", "a_b", strings.Repeat("a", 32), strings.Repeat("a", 33), "é"} {
		if got, want := validVia(s), re.MatchString(s); got != want {
			t.Errorf("validVia(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzSplitArray(f *testing.F) {
	f.Add([]byte(`[{"a":1}, {"b":[2,3]} ,"x",4,null]`))
	f.Add([]byte(` [ ] `))
	f.Fuzz(func(t *testing.T, b []byte) {
		parts, ok := SplitArray(b)
		if !ok {
			return
		}
		var want []json.RawMessage
		if err := json.Unmarshal(b, &want); err != nil {
			// SplitArray does not check the elements: Parse does, so
			// an invalid element is refused either way.
			for _, p := range parts {
				if !json.Valid(p) {
					return
				}
			}
			t.Fatalf("SplitArray(%q) split valid elements of an array encoding/json refuses: %v", b, err)
		}
		if len(parts) != len(want) {
			t.Fatalf("SplitArray(%q) = %d parts, encoding/json %d", b, len(parts), len(want))
		}
		for i := range parts {
			if !bytes.Equal(parts[i], want[i]) {
				t.Fatalf("part %d = %q, encoding/json %q", i, parts[i], want[i])
			}
		}
	})
}

func TestReadLeafKeys(t *testing.T) {
	ev := Event{ID: "e-1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: Actor{ID: "a"}, Action: "x", Outcome: Success,
		Details: json.RawMessage(`{"n":[1,{"m":"s"}]}`)}
	for _, env := range []Envelope{
		{Received: time.Date(2026, 1, 2, 3, 4, 5, 123, time.UTC), Source: "p1", Via: "json", Key: "k-1", Event: ev},
		{Received: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Source: "p1", Via: "k8s", Event: Event{Time: ev.Time, Actor: ev.Actor, Action: "y", Outcome: Unknown}},
	} {
		leaf, err := Encode(env)
		if err != nil {
			t.Fatal(err)
		}
		k, ok := ReadLeafKeys(leaf)
		if !ok {
			t.Fatalf("ReadLeafKeys(%s) failed", leaf)
		}
		want, _ := env.Event.AppendJSON(nil)
		if k.Source != env.Source || k.Key != env.Key || k.EventID != env.Event.ID || !bytes.Equal(k.Event, want) ||
			k.Received != env.Received.UTC().Format(time.RFC3339Nano) {
			t.Errorf("ReadLeafKeys(%s) = %+v", leaf, k)
		}
	}
	for _, bad := range []string{``, `{}`, `{"received":"x","source":"s","via":"v","event":1}`, `{"received":"x","source":"s\"","via":"v","event":{}}`} {
		if _, ok := ReadLeafKeys([]byte(bad)); ok {
			t.Errorf("ReadLeafKeys(%s) succeeded", bad)
		}
	}
}
