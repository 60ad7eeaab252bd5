package tsa_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/trailaudit/trail/internal/tsa"
	"github.com/trailaudit/trail/internal/tsa/tsatest"
)

var update = flag.Bool("update", false, "regenerate testdata/openssl.tsr with openssl ts")

// seedFile is a response of openssl ts to a request for SHA-256 of note,
// the fuzz target's seed: "go test ./internal/tsa -run TestSeed -update"
// regenerates it.
var seedFile = filepath.Join("testdata", "openssl.tsr")

func TestSeed(t *testing.T) {
	if !*update {
		b, err := os.ReadFile(seedFile)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := tsa.ParseResponse(b)
		if err != nil {
			t.Fatalf("ParseResponse(%s) = %v", seedFile, err)
		}
		// No roots: the test CA that made it is gone.
		if err := tok.Verify(note, tsa.VerifyOptions{}); err != nil {
			t.Fatalf("Verify(%s) = %v", seedFile, err)
		}
		return
	}
	a := tsatest.New(t, tsatest.Options{})
	_, der, err := (&tsa.Client{URL: a.URL, Roots: a.CA, HTTPClient: a.Client}).Stamp(t.Context(), note)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seedFile, der, 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzParseResponse feeds the parser mutations of a real openssl response:
// it must never panic, and whatever parses must survive Verify.
func FuzzParseResponse(f *testing.F) {
	der, err := os.ReadFile(seedFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(der[:len(der)/2])
	f.Add([]byte{0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02}) // status rejection, no token
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := tsa.ParseResponse(b)
		if err != nil {
			return
		}
		_ = tok.Verify(note, tsa.VerifyOptions{})
		_ = tok.Verify(nil, tsa.VerifyOptions{})
	})
}
