package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/trailaudit/trail/event"
)

// encodedEnvelopes returns envelopes as the server writes them.
func encodedEnvelopes(t testing.TB) [][]byte {
	t.Helper()
	at := time.Date(2026, 11, 2, 10, 0, 0, 123456789, time.FixedZone("", 3600))
	var out [][]byte
	for i := range 8 {
		ev := event.Event{
			ID:       fmt.Sprintf("ev-%d", i),
			Time:     at.Add(time.Duration(i) * time.Minute),
			Actor:    event.Actor{ID: fmt.Sprintf("user-%05d", i), Type: "user", IP: "10.0.0.1", UserAgent: "curl/8.5 (Linux; x86_64)"},
			Action:   "user.login",
			Resource: event.Resource{Type: "secret", ID: fmt.Sprintf("sec-%06x", i*7919)},
			Outcome:  event.Outcome([]string{"success", "failure", "unknown"}[i%3]),
		}
		if i%2 == 1 {
			ev.Reason = "MFA ÜBER Zürich"
			ev.Details = json.RawMessage(`{"request_id":"9f2c","path":"/v1/secrets/00ab","status":403,"bytes":1.5e3,"tags":["a","b"]}`)
		}
		if i%4 == 3 {
			ev.Original = json.RawMessage(`{"msg":"x y","n":-0.5,"nested":{"k":"v\u00e9"}}`)
		}
		leaf, err := event.Encode(event.Envelope{Received: at.Add(time.Second), Source: "svc-auth", Via: "json", Event: ev})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, leaf)
	}
	return out
}

// FuzzFastDocOf: DocOf's fast path (searchdoc.Read) reads an entry as its
// encoding/json path does, whenever it does not leave the entry to it.
func FuzzFastDocOf(f *testing.F) {
	for _, leaf := range encodedEnvelopes(f) {
		f.Add(leaf)
	}
	for _, s := range []string{
		`{"source":"a","via":"b","event":{"actor":{"id":"x","ID":"y"}}}`,
		`{"source":"a","via":"b","Source":"c"}`,
		`{"source":"a","via":"b","event":{"details":{"a":"\u00e9t\u00e9","b":[1,2.5e3,-0,true,null]},"original":"x y"}}`,
		`{"source":"a","via":"b","event":{"time":"2026-11-02T10:00:00+01:00","reason":"Zürich ÜBER"}}`,
		`{"source":"a","via":"b","event":{"time":null}}`, `{"source":"a","via":"b","received":"yesterday"}`,
		`{"source":"a","via":"b","event":{"details":null}}`, `{"source":"a","via":"b","event":5}`,
		`{"source":"a","via":"b"} x`, `[1]`, `{"source":"a\"b","via":"c"}`, `{"source":"a","via":"b","x":01}`,
		`{"source":"a","via":"b","event":{"actor":{"id":"x"},"actor":{"type":"y"}}}`, `{"source":"","via":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := fastDocOf(b)
		if !ok {
			return
		}
		want, err := jsonDocOf(b)
		if err != nil {
			t.Fatalf("fastDocOf(%q) read a document, jsonDocOf fails: %v", b, err)
		}
		if fast != want {
			t.Fatalf("fastDocOf(%q) = %+v\njsonDocOf = %+v", b, fast, want)
		}
	})
}

// TestDocOfFastPath: DocOf reads the envelopes the server writes without
// encoding/json, and its document does not change with the entry's bytes.
func TestDocOfFastPath(t *testing.T) {
	for _, leaf := range encodedEnvelopes(t) {
		want, err := jsonDocOf(leaf)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := fastDocOf(leaf)
		if !ok || got != want {
			t.Fatalf("fastDocOf(%s) = %+v, %v, want %+v", leaf, got, ok, want)
		}
		copied := bytes.Clone(leaf)
		got, err = DocOf(copied)
		clear(copied)
		if err != nil || got != want {
			t.Fatalf("DocOf(%s), its entry then cleared = %+v, %v, want %+v", leaf, got, err, want)
		}
	}
}

func BenchmarkDocOf(b *testing.B) {
	leaf := encodedEnvelopes(b)[3]
	for _, bb := range []struct {
		name string
		f    func([]byte) (SearchDoc, error)
	}{{"DocOf", DocOf}, {"json", jsonDocOf}} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(leaf)))
			for b.Loop() {
				if _, err := bb.f(leaf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
