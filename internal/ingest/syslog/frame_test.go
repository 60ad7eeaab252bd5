package syslog_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/trailaudit/trail/internal/ingest/syslog"
)

// frames reads every message of stream and the error that ended it.
func frames(stream string, max int) ([]string, syslog.Framing, error) {
	// One byte per read: framing must not depend on how data arrives.
	fr := syslog.NewFramer(iotest.OneByteReader(strings.NewReader(stream)), max)
	var got []string
	for {
		msg, err := fr.Next()
		if err != nil {
			return got, fr.Framing(), err
		}
		got = append(got, string(msg))
	}
}

func TestFramer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stream  string
		want    []string
		framing syslog.Framing
		err     string // "" for io.EOF
	}{
		{"empty", "", nil, syslog.Undetected, ""},
		{"octet counting", "5 <1>1 3 abc11 <2>1 - - x\n", []string{"<1>1 ", "abc", "<2>1 - - x\n"}, syslog.OctetCounting, ""},
		{"octet counting keeps a trailing LF and spaces", "3 a\n 2   ", []string{"a\n ", "  "}, syslog.OctetCounting, ""},
		{"newline", "<1>a\n<2>b\r\n\n\n<3>c", []string{"<1>a", "<2>b", "<3>c"}, syslog.NonTransparent, ""},
		{"newline keeps octet-looking lines", "<1>a\n12 b\n", []string{"<1>a", "12 b"}, syslog.NonTransparent, ""},
		{"garbage first", "hello\n", nil, syslog.Undetected, `bad frame at byte 0: stream starts with 'h': want a digit (octet counting) or '<' (newline framing)`},
		{"leading zero", "05 hello", nil, syslog.OctetCounting, "bad frame at byte 0: MSG-LEN starts with 0"},
		{"no space", "3 abc4xabcd", []string{"abc"}, syslog.OctetCounting, `bad frame at byte 5: MSG-LEN followed by 'x': want a space`},
		{"newline after octet frames", "3 abc<1>x\n", []string{"abc"}, syslog.OctetCounting, `bad frame at byte 5: frame starts with '<': want MSG-LEN (octet counting)`},
		{"too large", "101 " + strings.Repeat("x", 101), nil, syslog.OctetCounting, "bad frame at byte 0: message of 101 bytes exceeds the limit of 100"},
		{"endless digits", strings.Repeat("9", 40), nil, syslog.OctetCounting, "bad frame at byte 0: MSG-LEN of more than 12 digits; the limit is 100 bytes"},
		{"line too long", "<1>" + strings.Repeat("x", 98) + "\n", nil, syslog.NonTransparent, "bad frame at byte 0: line longer than the limit of 100 bytes"},
		{"line at the limit", "<1>" + strings.Repeat("x", 97) + "\r\n", []string{"<1>" + strings.Repeat("x", 97)}, syslog.NonTransparent, ""},
		{"truncated frame", "3 abc10 short", []string{"abc"}, syslog.OctetCounting, syslog.ErrTruncated.Error()},
		{"truncated length", "3 abc10", []string{"abc"}, syslog.OctetCounting, syslog.ErrTruncated.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, framing, err := frames(tc.stream, 100)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if framing != tc.framing {
				t.Errorf("framing = %v, want %v", framing, tc.framing)
			}
			switch {
			case tc.err == "" && err != io.EOF:
				t.Errorf("err = %v, want io.EOF", err)
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Errorf("err = %v, want %s", err, tc.err)
			}
		})
	}
}

func TestFrameErrorTooLarge(t *testing.T) {
	_, _, err := frames("200 x", 100)
	var fe *syslog.FrameError
	if !errors.As(err, &fe) || !fe.TooLarge() || fe.Size != 200 {
		t.Errorf("err = %#v, want a FrameError with TooLarge and Size 200", err)
	}
}

// FuzzFramer checks that the framer never panics or returns more than the
// limit on any stream, and that messages framed by AppendOctetCounted come
// back whole, however the stream is cut into reads.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("5 <1>1 3 abc"), []byte("<1>a\xffb\xff\xffc"))
	f.Add([]byte("<1>a\n<2>b\r\n\n"), []byte("x"))
	f.Add([]byte("99999999999999 x"), []byte(""))
	f.Add([]byte("3 a"), []byte("\xff"))
	f.Fuzz(func(t *testing.T, stream, msgs []byte) {
		const max = 64
		fr := syslog.NewFramer(iotest.HalfReader(bytes.NewReader(stream)), max)
		for {
			msg, err := fr.Next()
			if err != nil {
				break
			}
			if len(msg) > max {
				t.Fatalf("message of %d bytes, limit %d", len(msg), max)
			}
			if fr.Offset() > int64(len(stream)) {
				t.Fatalf("offset %d past the stream's %d bytes", fr.Offset(), len(stream))
			}
		}

		var want [][]byte
		var enc []byte
		for m := range bytes.SplitSeq(msgs, []byte{0xff}) {
			if len(m) == 0 || len(m) > max {
				continue
			}
			want = append(want, m)
			enc = syslog.AppendOctetCounted(enc, m)
		}
		fr = syslog.NewFramer(iotest.OneByteReader(bytes.NewReader(enc)), max)
		var got [][]byte
		for {
			msg, err := fr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("framing %q: %v", enc, err)
			}
			got = append(got, msg)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("round trip of %q (-want +got):\n%s", enc, diff)
		}
	})
}
