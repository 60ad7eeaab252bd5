package syslog_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trailaudit/trail/event"
	"github.com/trailaudit/trail/internal/ingest/syslog"
)

var received = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestParse(t *testing.T) {
	minus7 := time.FixedZone("", -7*3600)
	for _, tc := range []struct {
		name string
		in   string
		want syslog.Message
	}{
		{
			name: "RFC 5424 example 1, BOM",
			in:   "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick on /dev/pts/8",
			want: syslog.Message{Format: syslog.RFC5424, HasPRI: true, Facility: 4, Severity: 2, Version: 1,
				Timestamp: time.Date(2003, 10, 11, 22, 14, 15, 3e6, time.UTC), Hostname: "mymachine.example.com", AppName: "su", MsgID: "ID47",
				BOM: true, Msg: []byte("'su root' failed for lonvick on /dev/pts/8")},
		},
		{
			name: "RFC 5424 example 2, offset and microseconds",
			in:   "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
			want: syslog.Message{Format: syslog.RFC5424, HasPRI: true, Facility: 20, Severity: 5, Version: 1,
				Timestamp: time.Date(2003, 8, 24, 5, 14, 15, 3000, minus7), Hostname: "192.0.2.1", AppName: "myproc", ProcID: "8710",
				Msg: []byte("%% It's time to make the do-nuts.")},
		},
		{
			name: "RFC 5424 example 4, two elements and no MSG",
			in:   `<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]`,
			want: syslog.Message{Format: syslog.RFC5424, HasPRI: true, Facility: 20, Severity: 5, Version: 1,
				Timestamp: time.Date(2003, 10, 11, 22, 14, 15, 3e6, time.UTC), Hostname: "mymachine.example.com", AppName: "evntslog", MsgID: "ID47",
				StructuredData: []syslog.SDElement{
					{ID: "exampleSDID@32473", Params: []syslog.SDParam{{"iut", "3"}, {"eventSource", "Application"}, {"eventID", "1011"}}},
					{ID: "examplePriority@32473", Params: []syslog.SDParam{{"class", "high"}}},
				}},
		},
		{
			name: "escapes, and a backslash before another character is literal",
			in:   `<14>1 2026-01-02T03:04:05Z h a p m [x@1 v="q\"b\\c\]d\e" w=""][meta sequenceId="7"] text` + "\n",
			want: syslog.Message{Format: syslog.RFC5424, HasPRI: true, Facility: 1, Severity: 6, Version: 1,
				Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Hostname: "h", AppName: "a", ProcID: "p", MsgID: "m",
				StructuredData: []syslog.SDElement{
					{ID: "x@1", Params: []syslog.SDParam{{"v", `q"b\c]d\e`}, {"w", ""}}},
					{ID: "meta", Params: []syslog.SDParam{{"sequenceId", "7"}}},
				},
				Msg: []byte("text")},
		},
		{
			name: "all NILVALUE",
			in:   "<0>1 - - - - - -",
			want: syslog.Message{Format: syslog.RFC5424, HasPRI: true, Version: 1},
		},
		{
			name: "unclosed SD-ELEMENT",
			in:   `<34>1 2003-10-11T22:14:15.003Z host app - - [x a="b"`,
			want: syslog.Message{Format: syslog.Invalid5424, HasPRI: true, Facility: 4, Severity: 2, Version: 1,
				Problem: `at byte 46 after VERSION: SD-ELEMENT "x" not closed with ']'`,
				Msg:     []byte(`1 2003-10-11T22:14:15.003Z host app - - [x a="b"`)},
		},
		{
			name: "leap second",
			in:   "<34>1 2016-12-31T23:59:60Z host app - - - bye",
			want: syslog.Message{Format: syslog.Invalid5424, HasPRI: true, Facility: 4, Severity: 2, Version: 1,
				Problem: `at byte 20 after VERSION: TIMESTAMP "2016-12-31T23:59:60Z": bad time of day`,
				Msg:     []byte("1 2016-12-31T23:59:60Z host app - - - bye")},
		},
		{
			name: "seven digits of fraction",
			in:   "<34>1 2016-12-31T23:59:59.1234567Z host app - - - x",
			want: syslog.Message{Format: syslog.Invalid5424, HasPRI: true, Facility: 4, Severity: 2, Version: 1,
				Problem: `at byte 28 after VERSION: TIMESTAMP "2016-12-31T23:59:59.1234567Z": bad fraction: want 1 to 6 digits`,
				Msg:     []byte("1 2016-12-31T23:59:59.1234567Z host app - - - x")},
		},
		{
			name: "APP-NAME too long",
			in:   "<34>1 - host aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa - - - x",
			want: syslog.Message{Format: syslog.Invalid5424, HasPRI: true, Facility: 4, Severity: 2, Version: 1,
				Problem: "at byte 56 after VERSION: APP-NAME: longer than 48 characters",
				Msg:     []byte("1 - host aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa - - - x")},
		},
		{
			name: "RFC 3164 example",
			in:   "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
			want: syslog.Message{Format: syslog.RFC3164, HasPRI: true, Facility: 4, Severity: 2,
				Timestamp: time.Date(2025, 10, 11, 22, 14, 15, 0, time.UTC), TimestampText: "Oct 11 22:14:15",
				Hostname: "mymachine", AppName: "su", Msg: []byte("'su root' failed for lonvick on /dev/pts/8")},
		},
		{
			name: "RFC 3164 without a tag",
			in:   "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
			want: syslog.Message{Format: syslog.RFC3164, HasPRI: true, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 2, 5, 17, 32, 18, 0, time.UTC), TimestampText: "Feb  5 17:32:18",
				Hostname: "10.0.0.99", Msg: []byte("Use the BFG!")},
		},
		{
			name: "RFC 3164 from a local logger: no host name",
			in:   "<13>Mar  4 05:06:00 backup[4711]: done",
			want: syslog.Message{Format: syslog.RFC3164, HasPRI: true, Facility: 1, Severity: 5,
				Timestamp: time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC), TimestampText: "Mar  4 05:06:00",
				AppName: "backup", ProcID: "4711", Msg: []byte("done")},
		},
		{
			name: "RFC 3164 with an RFC 3339 time (rsyslog's forward format)",
			in:   "<86>2026-01-02T03:04:05.123456+01:00 web1 sshd[77]: Accepted publickey for alice",
			want: syslog.Message{Format: syslog.RFC3164, HasPRI: true, Facility: 10, Severity: 6,
				Timestamp: time.Date(2026, 1, 2, 2, 4, 5, 123456000, time.UTC), TimestampText: "2026-01-02T03:04:05.123456+01:00",
				Hostname: "web1", AppName: "sshd", ProcID: "77", Msg: []byte("Accepted publickey for alice")},
		},
		{
			name: "no PRI",
			in:   "hello world\r\n",
			want: syslog.Message{Format: syslog.RFC3164, Facility: 1, Severity: 5, Msg: []byte("hello world")},
		},
		{
			name: "PRI out of range",
			in:   "<192>1 - - - - - -",
			want: syslog.Message{Format: syslog.RFC3164, Facility: 1, Severity: 5, Msg: []byte("<192>1 - - - - - -")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := syslog.Parse([]byte(tc.in), received)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Parse(%q) mismatch (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// TestBSDYear checks that a December time arriving in January is last
// year's.
func TestBSDYear(t *testing.T) {
	got := syslog.Parse([]byte("<13>Dec 31 23:59:59 h t: x"), time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC))
	if want := time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC); !got.Timestamp.Equal(want) {
		t.Errorf("Timestamp = %v, want %v", got.Timestamp, want)
	}
}

// FuzzParse checks that Parse never panics, that every RFC 5424 message it
// accepts survives AppendRFC5424 and Parse unchanged, and that every message
// maps to a valid event that encodes as a leaf.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed",
		`<165>1 2003-10-11T22:14:15.003Z host evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="App"][meta sequenceId="9"] x`,
		`<14>1 2026-01-02T03:04:05+05:30 h a p m [x v="q\"b\\c\]d\e"] text` + "\n",
		"<0>1 - - - - - -",
		"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
		"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!",
		"<86>2026-01-02T03:04:05.123456+01:00 web1 sshd[77]: ok",
		"\xff\xfe<1>",
		"",
		// As rsyslog 8.2302 and syslog-ng 3.38 sent them in the tests.
		"<85>1 2026-11-29T09:14:16.061316+00:00 vm trailtest-gtls - - -  message 0 via gtls\n",
		"<13>1 2026-11-29T08:52:43+00:00 vm trailtest-ng - - [meta sequenceId=\"1\"] message 0 via syslog-ng\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := syslog.Parse(b, received)
		if m.Format == syslog.RFC5424 {
			out := syslog.AppendRFC5424(nil, &m)
			again := syslog.Parse(append(out, 0), received) // a NUL trailer, which Parse drops
			if diff := cmp.Diff(m, again, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("Parse(%q) and Parse(AppendRFC5424) = %q differ (-first +second):\n%s", b, out, diff)
			}
		}
		ev := syslog.MapEvent(&m, b, "sender-1", received)
		if err := ev.Validate(); err != nil {
			t.Fatalf("MapEvent(%q) is invalid: %v\n%+v", b, err, ev)
		}
		if _, err := event.Encode(event.Envelope{Received: received, Source: "sender-1", Via: syslog.Via, Event: ev}); err != nil {
			t.Fatalf("Encode(MapEvent(%q)): %v", b, err)
		}
		var o struct {
			Raw       *string `json:"raw"`
			RawBase64 []byte  `json:"raw_base64"`
		}
		if err := json.Unmarshal(ev.Original, &o); err != nil {
			t.Fatal(err)
		}
		var got []byte
		if o.Raw != nil {
			got = []byte(*o.Raw)
		} else {
			got = o.RawBase64
			if utf8.Valid(b) {
				t.Errorf("UTF-8 message %q kept in base64", b)
			}
		}
		if !bytes.Equal(got, b) {
			t.Errorf("original = %q, want %q", got, b)
		}
	})
}
