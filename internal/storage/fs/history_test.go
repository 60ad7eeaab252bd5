package fs

import (
	"bytes"
	"testing"
)

func TestRecords(t *testing.T) {
	var b []byte
	b = appendRecord(b, []byte("one"))
	b = appendRecord(b, []byte("two two"))
	bodies, n, err := parseRecords(b)
	if err != nil || n != len(b) || len(bodies) != 2 || string(bodies[1]) != "two two" {
		t.Fatalf("parseRecords = %q, %d, %v", bodies, n, err)
	}
	for cut := 1; cut < 15; cut++ {
		bodies, n, err := parseRecords(b[:len(b)-cut])
		if err == nil || len(bodies) != 1 || n != recordHeader+3 {
			t.Errorf("parseRecords(cut %d) = %d bodies, %d, %v", cut, len(bodies), n, err)
		}
	}
	bad := bytes.Clone(b)
	bad[recordHeader+1] ^= 1
	if _, n, err := parseRecords(bad); err != errCorruptRecord || n != 0 {
		t.Errorf("parseRecords(flipped) = %d, %v; want 0, errCorruptRecord", n, err)
	}
}

func FuzzParseRecords(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, []byte("a")), []byte("checkpoint\n")))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		bodies, n, err := parseRecords(b)
		if (err == nil) != (n == len(b)) {
			t.Fatalf("n=%d len=%d err=%v", n, len(b), err)
		}
		var re []byte
		for _, body := range bodies {
			re = appendRecord(re, body)
		}
		if !bytes.Equal(re, b[:n]) {
			t.Fatal("re-encoding the parsed records does not give the parsed prefix")
		}
	})
}
