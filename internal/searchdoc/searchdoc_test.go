package searchdoc

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAppendTokens(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"user.login", "user login "},
		{"  Zürich-ÜBER 42 ", "zürich über 42 "},
		{"ΣΊΣΥΦΟΣ", "σίσυφοσ "},
		{"a\u00a0b\ue000c", "a b\ue000c "},
		{"10.0.0.1:443", "10 0 0 1 443 "},
		{"\xff", ""},
	} {
		if got := string(AppendTokens(nil, tt.in)); got != tt.want {
			t.Errorf("AppendTokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAppendText(t *testing.T) {
	for _, tt := range []struct {
		strs              [NumStrs]string
		details, original string
		want              string
	}{
		{want: ""},
		{strs: [NumStrs]string{"Svc", "json", 11: "bad password"}, want: "svc json bad password"},
		{
			strs:     [NumStrs]string{"a"},
			details:  `{"k":"V w","n":[1.5e3,-2,true,null],"o":{"key" : "x\u00e9"}}`,
			original: `"orig"`,
			want:     "a v w 1 5e3 2 xé orig",
		},
		{details: `{"only":"keys"}`, want: "keys"},
		{details: `{"k":{}}`, want: ""},
	} {
		got := string(AppendText([]byte("x"), &tt.strs, []byte(tt.details), []byte(tt.original)))
		if got != "x"+tt.want {
			t.Errorf("AppendText(%q, %s, %s) = %q, want %q", tt.strs, tt.details, tt.original, got, "x"+tt.want)
		}
	}
}

// FuzzRead: what Read reads is consistent: details and original are
// valid JSON values, the strings are the entry's, and the text is words
// separated by one space. (client's FuzzFastDocOf compares Read with
// encoding/json.)
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		`{"received":"2026-11-02T10:00:01Z","source":"a","via":"json","event":{"time":"2026-11-02T10:00:00Z","actor":{"id":"x","type":"user","ip":"10.0.0.1","user_agent":"curl/8"},"action":"y","resource":{"type":"secret","id":"s1"},"outcome":"failure","reason":"no","details":{"a":["b",1,{"c":"d\u00e9"}]},"original":{"m":"x y"}}}`,
		`{"source":"a","via":"b","event":{"details":[1, 2 ,{"k" : "v"}],"original":"x"}}`,
		`{"source":"a","via":"b","x":{"y":[true,false,null,-0.5e+3]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := Read(b)
		if !ok {
			return
		}
		for _, raw := range [][]byte{d.Details, d.Original} {
			if len(raw) > 0 && !json.Valid(raw) {
				t.Fatalf("Read(%q): %q is not valid JSON", b, raw)
			}
		}
		for _, s := range append(d.Strs[:], d.Actor, d.Action, d.ResourceType, d.ResourceID, d.Outcome, d.Source, d.Via) {
			if !strings.Contains(string(b), `"`+s+`"`) && s != "" {
				t.Fatalf("Read(%q) read %q, not a string of it", b, s)
			}
		}
		text := string(AppendText(nil, &d.Strs, d.Details, d.Original))
		if strings.Contains(text, "  ") || strings.HasPrefix(text, " ") || strings.HasSuffix(text, " ") {
			t.Fatalf("Read(%q): text %q: words must be separated by one space", b, text)
		}
	})
}
