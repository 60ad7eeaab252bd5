package client_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailaudit/trail/client"
	"github.com/trailaudit/trail/internal/index"
	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/server"
	"github.com/trailaudit/trail/internal/servertest"
	"github.com/trailaudit/trail/internal/tlsconf"
)

// searchServer starts a real server with a following search index; tamper,
// if not nil, may rewrite each search reply (a decoded JSON object).
// tamperedReply is a search reply, its leaves kept byte for byte.
type tamperedReply struct {
	Checkpoint string                       `json:"checkpoint"`
	Indexed    int64                        `json:"indexed"`
	Results    []map[string]json.RawMessage `json:"results"`
	NextCursor string                       `json:"next_cursor,omitempty"`
}

func searchServer(t *testing.T, tamper func(*tamperedReply)) (*servertest.Server, *client.Client, *index.Index) {
	t.Helper()
	var wrap func(http.Handler) http.Handler
	if tamper != nil {
		wrap = func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/events" {
					h.ServeHTTP(w, r)
					return
				}
				// The server answers another query than the client asked.
				r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "actor=bob", "actor=alice", 1)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				var v tamperedReply
				if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &v) == nil {
					tamper(&v)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(rec.Code)
				enc := json.NewEncoder(w)
				enc.SetEscapeHTML(false)
				enc.Encode(v)
			})
		}
	}
	s := servertest.Start(t, servertest.Options{Wrap: wrap})
	ix, err := index.Open(t.Context(), index.Options{Dir: filepath.Join(s.Dir, index.DirName), Source: s.Log, Poll: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	index.Register(s.Server, s.Log, ix, nil)
	ix.Start()
	t.Cleanup(func() { ix.Close() })
	keys, err := ledger.LoadOrCreateKeys(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{URL: s.URL, HTTPClient: s.Client(t, "auditor-1", tlsconf.RoleAuditor), VerifierKey: keys.VerifierKey, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s, c, ix
}

func appendEvents(t *testing.T, s *servertest.Server, ix *index.Index, events ...string) []int64 {
	t.Helper()
	w, err := client.New(client.Config{URL: s.URL, HTTPClient: s.Client(t, "api-1", tlsconf.RoleWriter)})
	if err != nil {
		t.Fatal(err)
	}
	raws := make([]json.RawMessage, len(events))
	for i, e := range events {
		raws[i] = json.RawMessage(e)
	}
	got, err := w.Append(t.Context(), raws...)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(got))
	for i, a := range got {
		out[i] = a.Index
	}
	for range 1000 {
		if ix.Next() > out[len(out)-1] {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the index did not catch up within 10 s")
	return nil
}

var searchEvents = []string{
	`{"time":"2026-11-02T10:00:00Z","actor":{"id":"alice"},"action":"namespace.delete","resource":{"type":"namespace","id":"prod"},"outcome":"success"}`,
	`{"time":"2026-11-02T11:00:00Z","actor":{"id":"bob"},"action":"user.login","outcome":"failure","reason":"Bad Password"}`,
	`{"time":"2026-11-03T12:00:00Z","actor":{"id":"alice"},"action":"user.login","outcome":"success","details":{"city":"Zürich"}}`,
	`{"time":"2026-11-03T13:00:00Z","actor":{"id":"alice"},"action":"doc.upload","original":{"blob":"` + strings.Repeat("y", 70_000) + `","tag":"xylophone"}}`,
}

func TestSearch(t *testing.T) {
	s, c, ix := searchServer(t, nil)
	idx := appendEvents(t, s, ix, searchEvents...)
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		q    client.SearchQuery
		want []int64
	}{
		{"actor", client.SearchQuery{Actor: "alice"}, []int64{idx[3], idx[2], idx[0]}},
		{"actor oldest", client.SearchQuery{Actor: "alice", Order: client.Oldest}, []int64{idx[0], idx[2], idx[3]}},
		{"action and outcome", client.SearchQuery{Action: "user.login", Outcome: "failure"}, []int64{idx[1]}},
		{"resource", client.SearchQuery{ResourceType: "namespace", ResourceID: "prod"}, []int64{idx[0]}},
		{"one day", client.SearchQuery{Since: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)}, []int64{idx[3], idx[2]}},
		{"until excludes", client.SearchQuery{Actor: "alice", Until: time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)}, []int64{idx[0]}},
		{"source and via", client.SearchQuery{Source: "api-1", Via: "json", Actor: "bob"}, []int64{idx[1]}},
		{"phrase, any case", client.SearchQuery{Text: `"bad password"`, Source: "api-1"}, []int64{idx[1]}},
		{"non-ASCII", client.SearchQuery{Text: "zürich", Source: "api-1"}, []int64{idx[2]}},
		{"prefix", client.SearchQuery{Text: "xylo*", Source: "api-1"}, []int64{idx[3]}},
		{"OR and NOT", client.SearchQuery{Text: "login OR delete -bob", Source: "api-1"}, []int64{idx[2], idx[0]}},
		{"nothing", client.SearchQuery{Actor: "mallory"}, nil},
	} {
		page, err := c.Search(ctx, tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []int64
		for _, r := range page.Results {
			got = append(got, r.Index)
			if r.Checkpoint.Size != page.Checkpoint.Size || r.Index >= page.Checkpoint.Size {
				t.Errorf("%s: result %d proven against size %d, page checkpoint %d", tc.name, r.Index, r.Checkpoint.Size, page.Checkpoint.Size)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: Search(%v) = %v, want %v", tc.name, tc.q.Values(), got, tc.want)
		}
	}
	// The large entry's body comes along, checked against its reference.
	page, err := c.Search(ctx, client.SearchQuery{Text: "xylophone", Source: "api-1"})
	if err != nil {
		t.Fatal(err)
	}
	r := page.Results[0]
	if !bytes.HasPrefix(r.Leaf, []byte(`{"trail_large_entry":`)) || !bytes.Contains(r.Body, []byte("xylophone")) {
		t.Errorf("large result: leaf %.80s, body %.80s", r.Leaf, r.Body)
	}
}

func TestSearchRejectsWhatTheServerMadeUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		q      client.SearchQuery
		tamper func(*tamperedReply)
		want   string
	}{
		{"out of order", client.SearchQuery{Actor: "alice"}, func(v *tamperedReply) {
			v.Results[0], v.Results[1] = v.Results[1], v.Results[0]
		}, "out of order"},
		{"another leaf", client.SearchQuery{Outcome: "failure"}, func(v *tamperedReply) {
			r := v.Results[0]
			r["leaf"] = json.RawMessage(strings.Replace(string(r["leaf"]), "bob", "bo", 1))
		}, "is not in the tree"},
		{"answers another query", client.SearchQuery{Actor: "bob", Order: client.Oldest}, func(v *tamperedReply) {}, "does not satisfy actor"},
		{"another body", client.SearchQuery{Text: "xylophone", Source: "api-1"}, func(v *tamperedReply) {
			r := v.Results[0]
			r["body"] = json.RawMessage(strings.Replace(string(r["body"]), "yyy", "zzz", 1))
		}, "does not match the large-entry reference"},
		{"too many", client.SearchQuery{Actor: "alice", Limit: 1}, func(v *tamperedReply) {
			v.Results = append(v.Results, v.Results[0])
		}, "2 results, 1 were asked for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c, ix := searchServer(t, tc.tamper)
			appendEvents(t, s, ix, searchEvents...)
			_, err := c.Search(t.Context(), tc.q)
			if !errors.Is(err, client.ErrVerification) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Search = %v, want a verification error saying %q", err, tc.want)
			}
		})
	}
}

// The endpoint is for auditors; the server's role sets say so.
var _ = server.Auditors

func TestParseText(t *testing.T) {
	for _, tc := range []struct{ q, fts5, err string }{
		{"quartz", `(("quartz"))`, ""},
		{"Quartz zebra", `(("quartz") AND ("zebra"))`, ""},
		{"user.login", `(("user login"))`, ""},
		{`"bad password"*`, `(("bad password" *))`, ""},
		{"roll*", `(("roll" *))`, ""},
		{"a OR b c", `(("a" OR "b") AND ("c"))`, ""},
		{"a -b NOT c", `(("a")) NOT ("b" OR "c")`, ""},
		{`a "NEAR(b c)" col:x`, `(("a") AND ("near b c") AND ("col x"))`, ""},
		{`"unbalanced`, "", "unbalanced quote"},
		{"-only", "", "at least one word"},
		{"OR a", "", "OR must stand between"},
		{"a OR", "", "OR must stand between"},
		{"a OR -b", "", "OR cannot join"},
		{"a NOT", "", "NOT must come before"},
		{"...", "", "no letters or digits"},
		{strings.Repeat("a ", 33), "", "more than 32 terms"},
	} {
		tq, err := client.ParseText(tc.q)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseText(%q) = %v, want error %q", tc.q, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseText(%q): %v", tc.q, err)
		case tq.FTS5() != tc.fts5:
			t.Errorf("ParseText(%q).FTS5() = %s, want %s", tc.q, tq.FTS5(), tc.fts5)
		}
	}
}

func TestDocOf(t *testing.T) {
	leaf := `{"received":"2026-11-02T10:00:01Z","source":"api-1","via":"json","event":{"id":"e-1","time":"2026-11-02T10:00:00+01:00","actor":{"id":"Alice","ip":"10.0.0.1"},"action":"user.login","outcome":"failure","reason":"Bad\npassword","details":{"n":42,"list":["Zürich","x\"y"],"nested":{"k":true}}}}`
	d, err := client.DocOf([]byte(leaf))
	if err != nil {
		t.Fatal(err)
	}
	want := "api 1 json e 1 alice 10 0 0 1 user login failure bad password 42 zürich x y"
	if d.Text != want {
		t.Errorf("Text = %q, want %q", d.Text, want)
	}
	if d.Actor != "Alice" || d.Outcome != "failure" || !d.Time.Equal(time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("DocOf = %+v", d)
	}
}

func FuzzParseText(f *testing.F) {
	for _, s := range []string{"a", `"a b"*`, "a OR b -c", "NOT x", `x"y`, "日本語*", "-"} {
		f.Add(s, "a b c")
	}
	f.Fuzz(func(t *testing.T, q, text string) {
		tq, err := client.ParseText(q)
		if err != nil {
			return
		}
		fts := tq.FTS5()
		// Only quoted words, parentheses and the operators reach FTS5.
		rest := fts
		for _, op := range []string{" AND ", " OR ", " NOT ", " *", "(", ")"} {
			rest = strings.ReplaceAll(rest, op, "")
		}
		for _, part := range strings.Split(rest, `""`) {
			part = strings.Trim(part, `"`)
			for _, r := range part {
				if r == '"' || r == '*' || r == ':' || r == '^' || r == '(' || r == ')' {
					t.Fatalf("ParseText(%q).FTS5() = %s: syntax inside a term", q, fts)
				}
			}
		}
		tq.Match(text)
	})
}

func FuzzDocOf(f *testing.F) {
	f.Add([]byte(`{"received":"2026-11-02T10:00:01Z","source":"a","via":"json","event":{"time":"2026-11-02T10:00:00Z","actor":{"id":"x"},"action":"y","outcome":"unknown","details":{"a":["b",1,{"c":"d\u00e9"}]}}}`))
	f.Fuzz(func(t *testing.T, leaf []byte) {
		d, err := client.DocOf(leaf)
		if err != nil {
			return
		}
		if strings.Contains(d.Text, "  ") || strings.HasSuffix(d.Text, " ") || strings.HasPrefix(d.Text, " ") {
			t.Fatalf("DocOf(%q).Text = %q: words must be separated by one space", leaf, d.Text)
		}
	})
}
