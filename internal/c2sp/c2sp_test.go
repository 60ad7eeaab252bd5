package c2sp

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/mod/sumdb/tlog"
)

func TestTilePath(t *testing.T) {
	for _, tc := range []struct {
		tile Tile
		path string
	}{
		{Tile{0, 0, 256}, "tile/0/000"},
		{Tile{0, 1234067, 256}, "tile/0/x001/x234/067"},
		{Tile{1, 999, 3}, "tile/1/999.p/3"},
		{Tile{EntriesLevel, 1000, 255}, "tile/entries/x001/000.p/255"},
		{Tile{EntriesLevel, 5, 256}, "tile/entries/005"},
	} {
		if got := tc.tile.Path(); got != tc.path {
			t.Errorf("%+v.Path() = %q, want %q", tc.tile, got, tc.path)
		}
		got, err := ParsePath(tc.path)
		if err != nil || got != tc.tile {
			t.Errorf("ParsePath(%q) = %+v, %v, want %+v", tc.path, got, err, tc.tile)
		}
	}
	for _, bad := range []string{
		"tile/0/1", "tile/0/x000/001", "tile/00/001", "tile/0/001.p/0", "tile/0/001.p/256",
		"tile/0/001.p/07", "tile/-1/001", "tile/data/001", "0/001", "tile/0/001/", "tile/0/x001",
		"tile/0/0a1", "tile/entries/",
	} {
		if tl, err := ParsePath(bad); err == nil {
			t.Errorf("ParsePath(%q) = %+v, want error", bad, tl)
		}
	}
}

func TestBundle(t *testing.T) {
	var b []byte
	want := [][]byte{[]byte("a"), bytes.Repeat([]byte("x"), MaxEntrySize), []byte(`{"k":1}`)}
	for _, e := range want {
		b = AppendEntry(b, e)
	}
	got, n, err := ParseBundle(b)
	if err != nil || n != len(b) {
		t.Fatalf("ParseBundle = %d, %v", n, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseBundle mismatch (-want +got):\n%s", diff)
	}
	for cut := 1; cut < 5; cut++ {
		got, n, err := ParseBundle(b[:len(b)-cut])
		if err != ErrTornBundle || len(got) != 2 || n != len(b)-2-7 {
			t.Errorf("ParseBundle(cut %d) = %d entries, %d, %v; want 2 entries, ErrTornBundle", cut, len(got), n, err)
		}
	}
	got, n, err = ParseBundle(append(AppendEntry(nil, []byte("z")), 0, 0, 0))
	if err != ErrTornBundle || len(got) != 1 || n != 3 {
		t.Errorf("ParseBundle(zero tail) = %d entries, %d, %v", len(got), n, err)
	}
}

func TestCheckpoint(t *testing.T) {
	c := Checkpoint{Origin: "example.com/log", Size: 42, Extensions: []string{"ext one"}}
	c.Hash[0] = 7
	text := c.Format()
	got, err := ParseCheckpoint(text)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"o\n1\n", "o\n01\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", "o\n-1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"o\n1\nAAAA\n", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
	} {
		if _, err := ParseCheckpoint([]byte(bad)); err == nil {
			t.Errorf("ParseCheckpoint(%q) succeeded, want error", bad)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"tile/0/000", "tile/entries/x001/x234/067.p/9", "tile/3/999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tl, err := ParsePath(s)
		if err != nil {
			return
		}
		if p := tl.Path(); p != s {
			t.Fatalf("ParsePath(%q) = %+v, whose Path() is %q", s, tl, p)
		}
	})
}

func FuzzParseBundle(f *testing.F) {
	f.Add(AppendEntry(AppendEntry(nil, []byte("hello")), []byte("{}")))
	f.Add([]byte{0, 5, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, n, err := ParseBundle(b)
		if (err == nil) != (n == len(b)) {
			t.Fatalf("ParseBundle: n=%d len=%d err=%v", n, len(b), err)
		}
		var re []byte
		for _, e := range entries {
			re = AppendEntry(re, e)
		}
		if !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding %d entries does not give the parsed prefix", len(entries))
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nx\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		if got := c.Format(); !bytes.Equal(got, b) {
			t.Fatalf("ParseCheckpoint(%q).Format() = %q", b, got)
		}
	})
}

func TestProofRoundTrip(t *testing.T) {
	cp := []byte("example.com/log\n10\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n— example.com/log hI2DJw==\n")
	for _, p := range []Proof{
		{Index: 0, Checkpoint: cp},
		{Index: 7, Extra: []byte("trail"), Hashes: tlog.RecordProof{{1}, {2}, {3}}, Checkpoint: cp},
	} {
		b := p.Format()
		got, err := ParseProof(b)
		if err != nil {
			t.Fatalf("ParseProof(%q): %v", b, err)
		}
		if diff := cmp.Diff(p, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		if !bytes.Equal(got.Format(), b) {
			t.Errorf("Format after ParseProof changed the bytes")
		}
	}
}

func TestParseProofErrors(t *testing.T) {
	cp := "o\n1\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n— o x\n"
	for _, tc := range []struct{ in, want string }{
		{"c2sp.org/tlog-proof@v1\nindex 1\n", "no empty line"},
		{"c2sp.org/tlog-proof@v2\nindex 1\n\n" + cp, "first line"},
		{"c2sp.org/tlog-proof@v1\n\n" + cp, "missing index"},
		{"c2sp.org/tlog-proof@v1\nindex 01\n\n" + cp, "bad index"},
		{"c2sp.org/tlog-proof@v1\nindex -1\n\n" + cp, "bad index"},
		{"c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\n" + cp, "bad extra"},
		{"c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\n" + cp, "bad hash"},
		{"c2sp.org/tlog-proof@v1\nindex 1\n\n", "no checkpoint"},
	} {
		_, err := ParseProof([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseProof(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseProof(f *testing.F) {
	f.Add([]byte("c2sp.org/tlog-proof@v1\nextra dHJhaWw=\nindex 3\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\no\n4\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n— o x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseProof(b)
		if err != nil {
			return
		}
		q, err := ParseProof(p.Format())
		if err != nil {
			t.Fatalf("ParseProof(Format()) failed: %v", err)
		}
		if !bytes.Equal(q.Format(), p.Format()) {
			t.Fatalf("Format is not stable")
		}
	})
}
