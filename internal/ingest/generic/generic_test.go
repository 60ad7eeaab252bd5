package generic_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/generic"
	"github.com/trailaudit/trail/internal/tlsconf"
)

var sampleFile = filepath.Join("..", "..", "..", "testdata", "samples", "teleport", "app.access.json")

func readSample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(sampleFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// documentedURLs returns the url and session-url of the event handler's
// configuration in docs/producers/teleport.md.
func documentedURLs(t *testing.T) (audit, session string) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "producers", "teleport.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^(url|session-url) = "([^"]+)"$`)
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		if m[1] == "url" {
			audit = m[2]
		} else {
			session = m[2]
		}
	}
	if audit == "" || session == "" {
		t.Fatal("docs/producers/teleport.md lacks url or session-url")
	}
	return audit, session
}

func TestTeleportEventHandler(t *testing.T) {
	ts := startServer(t)
	c := ts.client(t, "teleport", tlsconf.RoleWriter)
	audit, session := documentedURLs(t)
	local := strings.NewReplacer("https://trail.example.com:8443", ts.url)
	sample := readSample(t)

	// As is, to the native API: refused, as the page says.
	status, body := post(t, c, ts.url+"/v1/events", sample)
	if status != http.StatusBadRequest || !strings.Contains(body, `"error":"addr.remote: unknown field"`) {
		t.Errorf("POST /v1/events = %d %s, want the 400 the page shows", status, body)
	}

	for range 2 { // the handler's retry appends nothing
		if status, body := post(t, c, local.Replace(audit), sample); status != http.StatusOK {
			t.Fatalf("POST = %d %s, want exactly 200", status, body)
		}
	}
	// A session event: the handler appends .<session id>.log to session-url.
	sessionEvent := bytes.Replace(sample, []byte(`"uid":"7c9e2b14`), []byte(`"uid":"00000000`), 1)
	sessionEvent = bytes.Replace(sessionEvent, []byte(`"event":"app.access"`), []byte(`"event":"session.start"`), 1)
	if status, body := post(t, c, local.Replace(session)+".9f3e.log", sessionEvent); status != http.StatusOK {
		t.Fatalf("POST session = %d %s, want exactly 200", status, body)
	}

	envs := ts.entries(t)
	if len(envs) != 2 {
		t.Fatalf("log holds %d entries, want 2", len(envs))
	}
	want := event.Event{
		ID:       "7c9e2b14-3a5d-4f6e-8b1c-2d4f6a8e0c13",
		Time:     time.Date(2022, 8, 10, 19, 54, 43, 444e6, time.UTC),
		Actor:    event.Actor{ID: "alice", IP: "203.0.113.10:51234"},
		Action:   "app.access",
		Resource: event.Resource{ID: "grafana"},
		Outcome:  event.Unknown,
		Details:  json.RawMessage(`{"tag":"audit"}`),
		Original: json.RawMessage(bytes.TrimSpace(sample)),
	}
	if diff := cmp.Diff(want, envs[0].Event); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}
	if envs[0].Source != "teleport" || envs[0].Via != "generic" {
		t.Errorf("source %q via %q, want teleport via generic", envs[0].Source, envs[0].Via)
	}
	if got := string(envs[1].Event.Details); got != `{"tag":"session.9f3e.log"}` || envs[1].Event.Action != "session.start" {
		t.Errorf("session event: action %q details %s", envs[1].Event.Action, got)
	}
}

func mapping(t *testing.T, query string) *generic.Mapping {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	m, err := generic.ParseMapping(q)
	if err != nil {
		t.Fatalf("ParseMapping(%q): %v", query, err)
	}
	return m
}

func TestMap(t *testing.T) {
	base := "time=/t&actor=/who,nobody&action=/what"
	tests := []struct {
		name, query, record string
		want                event.Event
	}{
		{"literal fallback", base, `{"t":"2026-01-02T03:04:05Z","what":"x"}`,
			event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: event.Actor{ID: "nobody"}, Action: "x", Outcome: event.Unknown}},
		{"empty and null fall through", base, `{"t":"2026-01-02T03:04:05Z","who":"","what":"x"}`,
			event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: event.Actor{ID: "nobody"}, Action: "x", Outcome: event.Unknown}},
		{"unix seconds and numbers", base + "&id=/n", `{"t":1700000000.5,"who":42,"what":"x","n":7}`,
			event.Event{ID: "7", Time: time.Unix(1700000000, 5e8).UTC(), Actor: event.Actor{ID: "42"}, Action: "x", Outcome: event.Unknown}},
		{"nested pointers and escapes", "time=/a~1b/0&actor=/m~0n/x&action=/ev/name&outcome=/ok&resource_type=file&resource_id=/path", `{"a/b":["2026-01-02T03:04:05+01:00"],"m~n":{"x":"carol"},"ev":{"name":"read"},"ok":false,"path":"/etc/passwd"}`,
			event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("", 3600)), Actor: event.Actor{ID: "carol"}, Action: "read", Resource: event.Resource{Type: "file", ID: "/etc/passwd"}, Outcome: event.Failure}},
		{"outcome strings", base + "&outcome=/o", `{"t":"2026-01-02T03:04:05Z","what":"x","o":"SUCCESS"}`,
			event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: event.Actor{ID: "nobody"}, Action: "x", Outcome: event.Success}},
		{"long values cut", base + "&actor_ip=/ip", `{"t":"2026-01-02T03:04:05Z","what":"x","ip":"` + strings.Repeat("1", 100) + `"}`,
			event.Event{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: event.Actor{ID: "nobody", IP: strings.Repeat("1", event.MaxIPLen)}, Action: "x", Outcome: event.Unknown}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mapping(t, tt.query).Map([]byte(tt.record))
			if err != nil {
				t.Fatalf("Map: %v", err)
			}
			tt.want.Original = json.RawMessage(tt.record)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Map mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMapErrors(t *testing.T) {
	m := mapping(t, "time=/t&actor=/who&action=/what")
	tests := []struct{ record, want string }{
		{`{"who":"a","what":"x"}`, "time: none of /t found in the record"},
		{`{"t":"yesterday","who":"a","what":"x"}`, `time: "yesterday" is not an RFC 3339 time`},
		{`{"t":true,"who":"a","what":"x"}`, "time: want an RFC 3339 string or Unix seconds, not true"},
		{`{"t":-1,"who":"a","what":"x"}`, "time: -1 is not a time in Unix seconds"},
		{`{"t":"2026-01-02T03:04:05Z","what":"x"}`, "actor: none of /who found in the record"},
		{`{"t":"2026-01-02T03:04:05Z","who":{"o":1},"what":"x"}`, "actor: none of /who found in the record"},
		{`{"t":"2026-01-02T03:04:05Z","who":"a"}`, "action: none of /what found in the record"},
		{`[1]`, "want a JSON object"},
	}
	for _, tt := range tests {
		if _, err := m.Map([]byte(tt.record)); err == nil || err.Error() != tt.want {
			t.Errorf("Map(%s) = %v, want %q", tt.record, err, tt.want)
		}
	}
}

func TestParseMappingErrors(t *testing.T) {
	for query, want := range map[string]string{
		"time=/t&actor=/a":                   `query parameter "action" is required`,
		"time=/t&actor=/a&action=/x&color=1": `unknown query parameter "color"`,
		"time=/t&time=/u&actor=/a&action=/x": `query parameter "time" given 2 times`,
		"time=,&actor=/a&action=/x":          `query parameter "time" is required`,
	} {
		q, _ := url.ParseQuery(query)
		if _, err := generic.ParseMapping(q); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParseMapping(%q) = %v, want %q...", query, err, want)
		}
	}
}

func TestEndpointErrors(t *testing.T) {
	ts := startServer(t)
	c := ts.client(t, "sender", tlsconf.RoleWriter)
	u := ts.url + generic.Path + "?time=/t&actor=/a&action=/x"
	for _, tt := range []struct {
		url, body string
		status    int
		want      string
	}{
		{u, `{"t":"2026-01-02T03:04:05Z","a":"u","x":"y"}x`, 400, `{"error":"body: malformed JSON: invalid character 'x' after top-level value"}`},
		{u, `[{"t":"2026-01-02T03:04:05Z","a":"u","x":"y"},{"a":"u","x":"y"}]`, 400, `{"error":"[1] time: none of /t found in the record"}`},
		{u, `"text"`, 400, `{"error":"body: want a JSON object or an array of objects"}`},
		{u, "[" + strings.Repeat(`{},`, generic.MaxRecords) + "{}]", 413, `{"error":"10001 records in one request, at most 10000"}`},
		{ts.url + generic.Path + "?time=/t", `{}`, 400, `{"error":"query parameter \"actor\" is required: a JSON Pointer such as actor=/actor, or a literal"}`},
	} {
		status, body := post(t, c, tt.url, []byte(tt.body))
		if status != tt.status || strings.TrimSpace(body) != tt.want {
			t.Errorf("POST %.100s = %d %s, want %d %s", tt.body, status, body, tt.status, tt.want)
		}
	}
	if n := ts.log.Size(); n != 0 {
		t.Errorf("log holds %d entries, want 0", n)
	}
	// An array is one commit.
	status, body := post(t, c, u, []byte(`[{"t":"2026-01-02T03:04:05Z","a":"u","x":"y"},{"t":"2026-01-02T03:04:06Z","a":"u","x":"z"}]`))
	if status != http.StatusOK || body != `{"entries":[{"index":0},{"index":1}]}`+"\n" {
		t.Errorf("POST array = %d %s", status, body)
	}
}

// FuzzMap maps arbitrary records by arbitrary queries: no panic, and
// every event made is valid and keeps the record.
func FuzzMap(f *testing.F) {
	f.Add("id=/uid&time=/time&action=/event&actor=/user,teleport&actor_ip=/addr.remote&outcome=/success&tag=audit", []byte(`{"uid":"u","time":"2022-08-10T19:54:43.444Z","event":"app.access","user":"alice","success":true}`))
	f.Add("time=/t/0&actor=/a~1b&action=x", []byte(`[{"t":[1700000000],"a/b":7}]`))
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		m, err := generic.ParseMapping(q)
		if err != nil {
			return
		}
		records, err := generic.Records(body)
		if err != nil {
			return
		}
		for _, rec := range records {
			ev, err := m.Map(rec)
			if err != nil {
				continue
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("Map(%s) = invalid event: %v", rec, err)
			}
			if !bytes.Equal(ev.Original, rec) {
				t.Fatalf("Original = %s, want %s", ev.Original, rec)
			}
		}
	})
}
