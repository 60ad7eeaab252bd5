package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailaudit/trail/internal/ledger"
	"github.com/trailaudit/trail/internal/witness/cosig"
)

// TestExportWitnesses checks verify -bundle and -receipt against -witness
// keys on a log whose published checkpoint a witness cosigned.
func TestExportWitnesses(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := makeLog([]string{data, "300"}); err != nil {
		t.Fatal(err)
	}
	keys, err := ledger.LoadOrCreateKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	skey, wkey, err := cosig.GenerateKey(rand.Reader, "witness1.example")
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := cosig.GenerateKey(rand.Reader, "witness2.example")
	signer, err := cosig.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cpPath := filepath.Join(data, "log", "checkpoint")
	b, err := os.ReadFile(cpPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(b, note.VerifierList(keys.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	cosigned, err := note.Sign(n, signer)
	if err != nil {
		t.Fatal(err)
	}
	// Kept as trail serve keeps it, beside the ledger's own log/checkpoint.
	if err := os.WriteFile(filepath.Join(data, "state", "cosigned-checkpoint"), cosigned, 0o644); err != nil {
		t.Fatal(err)
	}
	wfile := filepath.Join(dir, "w1.vkey")
	os.WriteFile(wfile, []byte(wkey+"\n"), 0o644)

	trail := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != wantCode {
			t.Fatalf("trail %s: exit %d, want %d; stderr %s", strings.Join(args, " "), code, wantCode, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	bundleFile, receiptFile := filepath.Join(dir, "b.tar"), filepath.Join(dir, "r.tlog-proof")
	trail(0, "export", "-data", data, "-no-record", "-o", bundleFile, "-from", "10", "-to", "20")
	trail(0, "receipt", "-data", data, "-o", receiptFile, "15")

	// Without -witness the cosignature is listed as not checked.
	_, stderr := trail(0, "verify", "-bundle", bundleFile, "-key", keys.VerifierKey)
	if !strings.Contains(stderr, "signature by witness1.example+") || !strings.Contains(stderr, "was not checked") {
		t.Errorf("verify -bundle without -witness: stderr %q, want a note that witness1.example was not checked", stderr)
	}
	// With it, it is checked and shown.
	stdout, stderr := trail(0, "verify", "-bundle", bundleFile, "-key", keys.VerifierKey, "-witness", wfile)
	if !strings.Contains(stdout, "cosigned   by witness witness1.example at ") || stderr != "" {
		t.Errorf("verify -bundle -witness: stdout %q, stderr %q", stdout, stderr)
	}
	_, stderr = trail(0, "verify", "-receipt", receiptFile, "-key", keys.VerifierKey, "-witness", wkey)
	if !strings.Contains(stderr, "cosigned   by witness witness1.example") {
		t.Errorf("verify -receipt -witness: stderr %q", stderr)
	}
	// A quorum it does not meet fails.
	_, stderr = trail(1, "verify", "-bundle", bundleFile, "-key", keys.VerifierKey, "-witness", wkey, "-witness", otherKey)
	if !strings.Contains(stderr, "checkpoint: 1 valid cosignature(s) of the 2 required") {
		t.Errorf("verify -bundle with two witnesses required: stderr %q", stderr)
	}
	trail(0, "verify", "-bundle", bundleFile, "-key", keys.VerifierKey, "-witness", wkey, "-witness", otherKey, "-witness-quorum", "1")
	_, stderr = trail(1, "verify", "-receipt", receiptFile, "-key", keys.VerifierKey, "-witness", otherKey)
	if !strings.Contains(stderr, "receipt's checkpoint: 0 valid cosignature(s) of the 1 required") {
		t.Errorf("verify -receipt with another witness required: stderr %q", stderr)
	}
}
